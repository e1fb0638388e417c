//! The kubernetes backend against a scripted API server behind `kube::Client`: the exact
//! requests it sends, and what it makes of the answers (objects, errors, failing pods).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::{Access, AutoscalingMetricSpec, METRIC_CPU};
use bytes::Bytes;
use control_plane::backend::{Backend, BackendError, Kubernetes, ReplicaState};
use control_plane::machine::Catalog;
use control_plane::manifests::{
    EndpointInput, ModelContainerSpec, RenderConfig, RenderInput, Rendered, render, render_endpoint,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// One request the backend sent.
#[derive(Debug, Clone, PartialEq)]
struct Sent {
    method: Method,
    /// Path and query, as sent.
    uri: String,
    body: Option<Value>,
}

type Script = dyn Fn(&Method, &str) -> (StatusCode, Value) + Send + Sync;
/// The open watch streams, by collection path: the newest one of each path gets the events.
type Streams = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Bytes>>>>;

/// A fake API server: records every request and answers with `script(method, uri)`. A watch
/// request (`watch=true`) that the script answers with 200 opens a stream that stays open and
/// carries what [`FakeApi::event`] sends.
struct FakeApi {
    sent: Arc<Mutex<Vec<Sent>>>,
    streams: Streams,
}

/// Whether a request is the backend's watcher (its paged list or its watch), not a call of a
/// backend method.
fn is_watcher(uri: &str) -> bool {
    uri.contains("watch=true") || uri.contains("limit=500")
}

impl FakeApi {
    fn start(
        script: impl Fn(&Method, &str) -> (StatusCode, Value) + Send + Sync + 'static,
    ) -> (FakeApi, Kubernetes) {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let streams: Streams = Arc::default();
        let script: Arc<Script> = Arc::new(script);
        let recorder = sent.clone();
        let open = streams.clone();
        let service = tower::service_fn(move |req: Request<Body>| {
            let sent = recorder.clone();
            let script = script.clone();
            let open = open.clone();
            async move {
                let (parts, body) = req.into_parts();
                let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                let uri = parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
                let body = if bytes.is_empty() { None } else { serde_json::from_slice(&bytes).ok() };
                sent.lock().unwrap().push(Sent { method: parts.method.clone(), uri: uri.clone(), body });
                let (status, reply) = script(&parts.method, &uri);
                let response = Response::builder().status(status);
                if status == StatusCode::OK && uri.contains("watch=true") {
                    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
                    open.lock().unwrap().insert(uri.split('?').next().unwrap_or_default().to_string(), tx);
                    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
                        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
                    });
                    let body = axum::body::Body::from_stream(frames);
                    return Ok::<_, Infallible>(
                        response.header("content-type", "application/json").body(body).unwrap(),
                    );
                }
                // A bare string is a text answer (pod logs), anything else JSON.
                let (content_type, bytes) = match reply {
                    Value::String(text) => ("text/plain", text.into_bytes()),
                    json => ("application/json", serde_json::to_vec(&json).unwrap()),
                };
                let body = axum::body::Body::from(bytes);
                Ok::<_, Infallible>(response.header("content-type", content_type).body(body).unwrap())
            }
        });
        let client = kube::Client::new(service, "models");
        let cfg = RenderConfig { namespace: "models".into(), ..RenderConfig::default() };
        (FakeApi { sent, streams }, Kubernetes::new(client, cfg))
    }

    fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().iter().filter(|s| !is_watcher(&s.uri)).cloned().collect()
    }

    /// The requests of the backend's methods (not of its watches).
    fn requests(&self) -> Vec<String> {
        self.sent().iter().map(|s| format!("{} {}", s.method, s.uri)).collect()
    }

    /// Every request, the watches' included.
    fn all_requests(&self) -> Vec<String> {
        self.sent.lock().unwrap().iter().map(|s| format!("{} {}", s.method, s.uri)).collect()
    }

    /// The watches' requests.
    fn watch_requests(&self) -> Vec<String> {
        self.all_requests().into_iter().filter(|r| is_watcher(r)).collect()
    }

    /// Ends the open watch of `path`, as the API server does after its timeout.
    fn close(&self, path: &str) {
        self.streams.lock().unwrap().remove(path);
    }

    /// Sends one watch event (`{"type": .., "object": ..}`) on the open watch of `path`.
    fn event(&self, path: &str, kind: &str, object: Value) {
        let line = format!("{}\n", json!({"type": kind, "object": object}));
        let streams = self.streams.lock().unwrap();
        let stream = streams.get(path).unwrap_or_else(|| panic!("no watch of {path} is open"));
        stream.send(Bytes::from(line)).unwrap();
    }
}

fn status(code: u16, reason: &str, message: &str) -> (StatusCode, Value) {
    (
        StatusCode::from_u16(code).unwrap(),
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": message}),
    )
}

fn ok(v: Value) -> (StatusCode, Value) {
    (StatusCode::OK, v)
}

fn list(kind: &str, items: Value) -> (StatusCode, Value) {
    ok(json!({"kind": format!("{kind}List"), "apiVersion": "v1", "metadata": {}, "items": items}))
}

fn rendered(min_replicas: u32, cpu: bool) -> Rendered {
    let input = RenderInput {
        project: "p".into(),
        location: "l".into(),
        endpoint_id: "fraud".into(),
        deployed_model_id: "42".into(),
        model_id: "mlp".into(),
        model_version_id: "1".into(),
        display_name: "mlp".into(),
        container: ModelContainerSpec::default(),
        artifact_uri: None,
        machine: Catalog::builtin().get("e2-small").unwrap().clone(),
        min_replicas,
        max_replicas: 4,
        autoscaling: if cpu {
            vec![AutoscalingMetricSpec { metric_name: METRIC_CPU.into(), target: 60 }]
        } else {
            vec![]
        },
        spot: false,
        service_account: None,
        disable_container_logging: false,
    };
    render(&input, &RenderConfig { namespace: "models".into(), ..RenderConfig::default() })
}

const APPLY: &str = "?&force=true&fieldManager=platform";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/models/deployments";
const SERVICES: &str = "/api/v1/namespaces/models/services";
const HPAS: &str = "/apis/autoscaling/v2/namespaces/models/horizontalpodautoscalers";
const PDBS: &str = "/apis/policy/v1/namespaces/models/poddisruptionbudgets";

/// Echoes an applied object back, as the API server does.
fn echo_applies(method: &Method, _uri: &str) -> (StatusCode, Value) {
    match *method {
        Method::PATCH => ok(json!({"metadata": {"name": "x"}})),
        Method::DELETE => status(404, "NotFound", "not found"),
        _ => status(500, "InternalError", "unexpected"),
    }
}

#[tokio::test]
async fn apply_sends_every_object_with_server_side_apply() {
    let (api, backend) = FakeApi::start(echo_applies);
    let r = rendered(2, true);
    assert_eq!(backend.apply_rendered(&r).await.unwrap(), Vec::<String>::new());
    let name = "ep-fraud-dm-42";
    assert_eq!(
        api.requests(),
        vec![
            format!("PATCH {DEPLOYMENTS}/{name}{APPLY}"),
            format!("PATCH {SERVICES}/{name}{APPLY}"),
            format!("PATCH {HPAS}/{name}{APPLY}"),
            format!("PATCH {PDBS}/{name}{APPLY}"),
        ]
    );
    let sent = api.sent();
    let deployment = sent[0].body.as_ref().unwrap();
    assert_eq!(deployment["apiVersion"], "apps/v1");
    assert_eq!(deployment["kind"], "Deployment");
    assert_eq!(deployment["metadata"]["name"], name);
    assert!(
        deployment["spec"].get("replicas").is_none(),
        "with an HPA the replicas are the HPA's: {deployment}"
    );
    let mut expected = serde_json::to_value(&r.deployment).unwrap();
    expected["spec"].as_object_mut().unwrap().remove("replicas");
    assert_eq!(deployment, &expected);
    assert_eq!(sent[1].body.as_ref().unwrap(), &serde_json::to_value(&r.service).unwrap());
    assert_eq!(sent[2].body.as_ref().unwrap(), &serde_json::to_value(r.hpa.as_ref().unwrap()).unwrap());
    assert_eq!(sent[3].body.as_ref().unwrap(), &serde_json::to_value(r.pdb.as_ref().unwrap()).unwrap());
}

#[tokio::test]
async fn apply_without_hpa_keeps_replicas_and_prunes_the_old_hpa_and_pdb() {
    let (api, backend) = FakeApi::start(echo_applies);
    backend.apply_rendered(&rendered(1, false)).await.unwrap();
    let name = "ep-fraud-dm-42";
    assert_eq!(
        api.requests(),
        vec![
            format!("PATCH {DEPLOYMENTS}/{name}{APPLY}"),
            format!("PATCH {SERVICES}/{name}{APPLY}"),
            format!("DELETE {HPAS}/{name}?"),
            format!("DELETE {PDBS}/{name}?"),
        ]
    );
    assert_eq!(api.sent()[0].body.as_ref().unwrap()["spec"]["replicas"], 1);
    assert_eq!(api.sent()[2].body.as_ref().unwrap()["propagationPolicy"], "Background");
}

#[tokio::test]
async fn endpoint_objects_are_applied_and_deleted() {
    let (api, backend) = FakeApi::start(echo_applies);
    let input = EndpointInput {
        project: "p".into(),
        location: "l".into(),
        endpoint_id: "fraud".into(),
        access: Access::Public,
    };
    let cfg = RenderConfig { namespace: "models".into(), ..RenderConfig::default() };
    backend.apply_endpoint(&render_endpoint(&input, &cfg)).await.unwrap();
    backend
        .apply_endpoint(&render_endpoint(&EndpointInput { access: Access::Private, ..input }, &cfg))
        .await
        .unwrap();
    backend.delete_endpoint("fraud").await.unwrap();
    assert_eq!(
        api.requests(),
        vec![
            format!("PATCH /apis/networking.k8s.io/v1/namespaces/models/ingresses/ep-fraud{APPLY}"),
            format!("PATCH /apis/networking.k8s.io/v1/namespaces/models/networkpolicies/ep-fraud{APPLY}"),
            "DELETE /apis/networking.k8s.io/v1/namespaces/models/ingresses/ep-fraud?".to_string(),
            "DELETE /apis/networking.k8s.io/v1/namespaces/models/networkpolicies/ep-fraud?".to_string(),
        ]
    );
}

#[tokio::test]
async fn api_errors_become_clear_backend_errors() {
    for (code, reason, check) in [
        (
            409,
            "Conflict",
            (|e: &BackendError| matches!(e, BackendError::Conflict(_))) as fn(&BackendError) -> bool,
        ),
        (422, "Invalid", |e| matches!(e, BackendError::Invalid(_))),
        (403, "Forbidden", |e| matches!(e, BackendError::Forbidden(_))),
        (500, "InternalError", |e| matches!(e, BackendError::Api { code: 500, .. })),
    ] {
        let message = format!("the server says {reason}");
        let (api, backend) = FakeApi::start(move |_, _| status(code, reason, &message));
        let e = backend.apply_rendered(&rendered(1, false)).await.unwrap_err();
        assert!(check(&e), "{code}: {e:?}");
        let text = e.to_string();
        assert!(
            text.contains("apply Deployment ep-fraud-dm-42")
                && text.contains(&format!("the server says {reason}")),
            "{code}: {text}"
        );
        assert_eq!(api.requests().len(), 1, "stops at the first failure");
    }
}

#[tokio::test]
async fn delete_removes_what_carries_the_deployed_models_labels() {
    let (api, backend) = FakeApi::start(|method, uri| match (method.clone(), uri) {
        (Method::GET, u) if u.starts_with(DEPLOYMENTS) => {
            list("Deployment", json!([{"metadata": {"name": "ep-fraud-dm-42"}}]))
        }
        (Method::GET, u) if u.starts_with(SERVICES) => {
            list("Service", json!([{"metadata": {"name": "ep-fraud-dm-42"}}]))
        }
        (Method::GET, _) => list("X", json!([])),
        // Already gone: fine.
        (Method::DELETE, u) if u.starts_with(SERVICES) => status(404, "NotFound", "gone"),
        (Method::DELETE, _) => ok(json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})),
        _ => status(500, "InternalError", "unexpected"),
    });
    backend.delete("ep-fraud-dm-42").await.unwrap();
    let selector = "labelSelector=app.kubernetes.io%2Finstance%3Dep-fraud-dm-42%2Capp.kubernetes.io%2Fmanaged-by%3Dplatform";
    assert_eq!(
        api.requests(),
        vec![
            format!("GET {DEPLOYMENTS}?&{selector}"),
            format!("DELETE {DEPLOYMENTS}/ep-fraud-dm-42?"),
            format!("GET {SERVICES}?&{selector}"),
            format!("DELETE {SERVICES}/ep-fraud-dm-42?"),
            format!("GET {HPAS}?&{selector}"),
            format!("GET {PDBS}?&{selector}"),
        ]
    );
}

#[tokio::test]
async fn delete_reports_a_failing_api() {
    let (_api, backend) = FakeApi::start(|_, _| status(500, "InternalError", "etcd is down"));
    let e = backend.delete("ep-fraud-dm-42").await.unwrap_err();
    assert!(e.to_string().contains("etcd is down"), "{e}");
}

#[tokio::test]
async fn scale_goes_through_the_scale_subresource() {
    let (api, backend) = FakeApi::start(|_, uri| {
        if uri.contains("missing") {
            status(404, "NotFound", "deployments.apps \"missing\" not found")
        } else {
            ok(
                json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {"name": "ep-fraud-dm-42"}, "spec": {"replicas": 3}}),
            )
        }
    });
    backend.scale("ep-fraud-dm-42", 3).await.unwrap();
    assert!(matches!(backend.scale("missing", 1).await, Err(BackendError::NotFound(_))));
    let sent = api.sent();
    assert_eq!(sent[0].method, Method::PATCH);
    assert_eq!(sent[0].uri, format!("{DEPLOYMENTS}/ep-fraud-dm-42/scale?&fieldManager=platform"));
    assert_eq!(sent[0].body, Some(json!({"spec": {"replicas": 3}})));
}

#[tokio::test]
async fn list_finds_the_platforms_deployments() {
    let (api, backend) = FakeApi::start(|_, _| {
        list("Deployment", json!([{"metadata": {"name": "ep-b-dm-2"}}, {"metadata": {"name": "ep-a-dm-1"}}]))
    });
    assert_eq!(backend.list().await.unwrap(), vec!["ep-a-dm-1", "ep-b-dm-2"]);
    assert_eq!(
        api.requests(),
        vec![format!("GET {DEPLOYMENTS}?&labelSelector=app.kubernetes.io%2Fmanaged-by%3Dplatform")]
    );
}

/// A pod of the deployment with a container status.
fn pod(name: &str, hash: &str, ip: &str, ready: bool, container_status: Value, conditions: Value) -> Value {
    let mut conditions = conditions.as_array().cloned().unwrap_or_default();
    conditions.push(json!({"type": "Ready", "status": if ready { "True" } else { "False" }}));
    json!({
        "metadata": {"name": name, "labels": {"pod-template-hash": hash}},
        "spec": {"containers": [{"name": "model", "ports": [{"containerPort": 8080}]}]},
        "status": {"podIP": ip, "phase": "Running", "conditions": conditions, "containerStatuses": [container_status]}
    })
}

fn container(ready: bool, restarts: i32, state: Value, last_state: Value) -> Value {
    json!({"name": "model", "ready": ready, "restartCount": restarts, "image": "i", "imageID": "",
           "state": state, "lastState": last_state})
}

/// The cluster of the status tests: a deployment at revision 2 with pods in every condition. Its
/// lists carry no resourceVersion, so the watches never sync and `status` lists (its fallback).
fn cluster(method: &Method, uri: &str) -> (StatusCode, Value) {
    if *method != Method::GET {
        return status(500, "InternalError", "unexpected");
    }
    let path = uri.split('?').next().unwrap_or_default();
    match path {
        "/apis/apps/v1/namespaces/models/deployments/ep-fraud-dm-42" => ok(json!({
            "metadata": {"name": "ep-fraud-dm-42", "annotations": {"deployment.kubernetes.io/revision": "2"}},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"platform.dev/deployed-model": "42", "platform.dev/endpoint": "fraud"}},
                     "template": {"spec": {"containers": []}}}
        })),
        "/apis/apps/v1/namespaces/models/deployments/missing" => status(404, "NotFound", "not found"),
        "/apis/apps/v1/namespaces/models/replicasets" => list(
            "ReplicaSet",
            json!([
                {"metadata": {"name": "rs-old", "labels": {"pod-template-hash": "old"}, "annotations": {"deployment.kubernetes.io/revision": "1"}}},
                {"metadata": {"name": "rs-new", "labels": {"pod-template-hash": "new"}, "annotations": {"deployment.kubernetes.io/revision": "2"}}},
            ]),
        ),
        "/api/v1/namespaces/models/pods" => list(
            "Pod",
            json!([
                pod("a-serving", "new", "10.0.0.1", true, container(true, 0, json!({"running": {}}), json!({})), json!([])),
                pod("b-old", "old", "10.0.0.2", true, container(true, 0, json!({"running": {}}), json!({})), json!([])),
                // Passes its readiness probe between crashes: still crash-looping.
                pod("c-crashing", "new", "10.0.0.3", true,
                    container(true, 5, json!({"running": {}}),
                              json!({"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": k8s_openapi::jiff::Timestamp::now().to_string()}})),
                    json!([])),
                pod("d-pull", "new", "", false,
                    container(false, 0, json!({"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"nope:1\""}}), json!({})),
                    json!([])),
                {"metadata": {"name": "e-pending", "labels": {"pod-template-hash": "new"}},
                 "spec": {"containers": [{"name": "model"}]},
                 "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                            "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]}},
                pod("f-backoff", "new", "10.0.0.6", false,
                    container(false, 7, json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}}),
                              json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}})),
                    json!([])),
            ]),
        ),
        "/apis/discovery.k8s.io/v1/namespaces/models/endpointslices" => list(
            "EndpointSlice",
            json!([{
                "metadata": {"name": "ep-fraud-dm-42-abc"}, "addressType": "IPv4",
                "endpoints": [
                    {"addresses": ["10.0.0.1"], "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "name": "a-serving"}},
                    {"addresses": ["10.0.0.2"], "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "name": "b-old"}},
                    {"addresses": ["10.0.0.3"], "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "name": "c-crashing"}},
                ]
            }]),
        ),
        "/api/v1/namespaces/models/pods/c-crashing/log" => ok(json!("unused")),
        "/api/v1/namespaces/models/pods/f-backoff/log" => {
            (StatusCode::OK, Value::String("loading model\nKilled".into()))
        }
        _ => status(404, "NotFound", "no such path"),
    }
}

#[tokio::test]
async fn status_reads_pods_and_endpoint_slices() {
    let (api, backend) = FakeApi::start(cluster);
    let s = backend.status("ep-fraud-dm-42").await.unwrap();
    let selector = "labelSelector=platform.dev%2Fdeployed-model%3D42%2Cplatform.dev%2Fendpoint%3Dfraud";
    assert_eq!(
        api.requests(),
        vec![
            format!("GET {DEPLOYMENTS}/ep-fraud-dm-42"),
            format!("GET /apis/apps/v1/namespaces/models/replicasets?&{selector}"),
            format!("GET /api/v1/namespaces/models/pods?&{selector}"),
            "GET /apis/discovery.k8s.io/v1/namespaces/models/endpointslices?&labelSelector=kubernetes.io%2Fservice-name%3Dep-fraud-dm-42".to_string(),
            "GET /api/v1/namespaces/models/pods/c-crashing/log?&container=model&previous=true&tailLines=20".to_string(),
            "GET /api/v1/namespaces/models/pods/f-backoff/log?&container=model&previous=true&tailLines=20".to_string(),
        ]
    );
    assert_eq!(s.desired, 4);
    let by_id = |id: &str| s.replicas.iter().find(|r| r.id == id).unwrap_or_else(|| panic!("{id} in {s:#?}"));

    let serving = by_id("a-serving");
    assert!(serving.ready && serving.current);
    assert_eq!(serving.address, "10.0.0.1:8080".parse().unwrap());
    assert!(
        by_id("b-old").ready && !by_id("b-old").current,
        "the old template still serves during a rollout"
    );

    let crashing = by_id("c-crashing");
    assert!(!crashing.ready, "never ready while crash-looping");
    assert_eq!(crashing.state, ReplicaState::CrashLoop);
    assert_eq!(crashing.restarts, 5);

    let pull = by_id("d-pull");
    assert_eq!(pull.state, ReplicaState::Failed);
    assert_eq!(pull.last_error.as_deref(), Some("ImagePullBackOff: Back-off pulling image \"nope:1\""));

    let pending = by_id("e-pending");
    assert_eq!(pending.state, ReplicaState::Failed);
    assert_eq!(
        pending.last_error.as_deref(),
        Some("Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu.")
    );

    let backoff = by_id("f-backoff");
    assert_eq!(backoff.state, ReplicaState::CrashLoop);
    let why = backoff.last_error.as_deref().unwrap();
    assert!(
        why.starts_with("CrashLoopBackOff: exited with code 137 (OOMKilled), restarted 7 times; last log lines:\nloading model\nKilled"),
        "{why}"
    );

    assert_eq!(s.ready_addresses(), vec!["10.0.0.1:8080".parse().unwrap(), "10.0.0.2:8080".parse().unwrap()]);
    assert_eq!(s.ready_current(), 1);
    assert!(!s.is_settled());
}

#[tokio::test]
async fn status_of_an_unknown_deployment_is_not_found() {
    let (_api, backend) = FakeApi::start(cluster);
    assert!(matches!(backend.status("missing").await, Err(BackendError::NotFound(n)) if n == "missing"));
}

// --- Watches -----------------------------------------------------------------------------------

const REPLICASETS: &str = "/apis/apps/v1/namespaces/models/replicasets";
const PODS: &str = "/api/v1/namespaces/models/pods";
const SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/models/endpointslices";
const MANAGED: &str = "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dplatform";

/// What the fake cluster holds, per collection path (the watches' initial lists read it), and
/// failures to answer the next requests with.
#[derive(Default)]
struct Cluster {
    objects: HashMap<&'static str, Vec<Value>>,
    resource_version: u64,
    /// `(path prefix, code)`: the next request starting with the prefix fails with the code.
    failures: Vec<(String, u16)>,
}

type Shared = Arc<Mutex<Cluster>>;

impl Cluster {
    fn answer(&mut self, method: &Method, uri: &str) -> (StatusCode, Value) {
        if let Some(i) = self.failures.iter().position(|(prefix, _)| uri.starts_with(prefix.as_str())) {
            let (_, code) = self.failures.remove(i);
            return status(code, "InternalError", "etcd is slow");
        }
        if *method != Method::GET {
            return status(500, "InternalError", "unexpected");
        }
        let path = uri.split('?').next().unwrap_or_default();
        if uri.contains("watch=true") {
            return ok(json!(null));
        }
        if let Some(logs) = path.strip_prefix(&format!("{PODS}/")).and_then(|p| p.strip_suffix("/log")) {
            return (StatusCode::OK, Value::String(format!("{logs}: loading model\ncannot allocate memory")));
        }
        match self.objects.get(path) {
            Some(items) => ok(json!({
                "kind": "List", "apiVersion": "v1",
                "metadata": {"resourceVersion": self.resource_version.to_string()},
                "items": items,
            })),
            None => status(404, "NotFound", "no such path"),
        }
    }

    /// Applies a watch event to the stored state and returns the object with a new
    /// resourceVersion.
    fn change(&mut self, path: &'static str, kind: &str, mut object: Value) -> Value {
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        let name = object["metadata"]["name"].clone();
        let items = self.objects.entry(path).or_default();
        items.retain(|o| o["metadata"]["name"] != name);
        if kind != "DELETED" {
            items.push(object.clone());
        }
        object
    }
}

const DEPLOYED: &str = "ep-fraud-dm-42";

fn managed_labels(extra: Value) -> Value {
    let mut labels = json!({
        "app.kubernetes.io/managed-by": "platform", "app.kubernetes.io/instance": DEPLOYED,
        "platform.dev/endpoint": "fraud", "platform.dev/deployed-model": "42",
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        labels[k] = v;
    }
    labels
}

fn watched_deployment() -> Value {
    json!({
        "metadata": {"name": DEPLOYED, "resourceVersion": "1", "labels": managed_labels(json!({})),
                     "annotations": {"deployment.kubernetes.io/revision": "1"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"platform.dev/deployed-model": "42", "platform.dev/endpoint": "fraud"}},
                 "template": {"spec": {"containers": []}}}
    })
}

fn watched_replica_set() -> Value {
    json!({"metadata": {"name": "rs-1", "resourceVersion": "1",
                        "labels": managed_labels(json!({"pod-template-hash": "h1"})),
                        "annotations": {"deployment.kubernetes.io/revision": "1"}},
           "spec": {"selector": {}}})
}

/// A pod of the deployed model; `container` is its container status.
fn watched_pod(name: &str, ip: &str, ready: bool, container: Value) -> Value {
    json!({
        "metadata": {"name": name, "resourceVersion": "1", "labels": managed_labels(json!({"pod-template-hash": "h1"}))},
        "spec": {"containers": [{"name": "model", "ports": [{"containerPort": 8080}]}]},
        "status": {"podIP": ip, "phase": "Running",
                   "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                   "containerStatuses": [container]}
    })
}

fn running(ready: bool) -> Value {
    container(ready, 0, json!({"running": {}}), json!({}))
}

/// The Service's EndpointSlice with `(pod, ip, ready)` endpoints.
fn watched_slice(endpoints: &[(&str, &str, bool)]) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(pod, ip, ready)| json!({"addresses": [ip], "conditions": {"ready": ready}, "targetRef": {"kind": "Pod", "name": pod}}))
        .collect();
    json!({"metadata": {"name": format!("{DEPLOYED}-abc"), "resourceVersion": "1",
                        "labels": managed_labels(json!({"kubernetes.io/service-name": DEPLOYED}))},
           "addressType": "IPv4", "endpoints": endpoints})
}

/// A fake cluster with one deployed model whose pod `a` is starting, and the backend watching it.
fn watched_cluster() -> (FakeApi, Kubernetes, Shared) {
    let mut cluster = Cluster { resource_version: 100, ..Cluster::default() };
    cluster.objects.insert(DEPLOYMENTS, vec![watched_deployment()]);
    cluster.objects.insert(REPLICASETS, vec![watched_replica_set()]);
    cluster.objects.insert(PODS, vec![watched_pod("a", "10.0.0.1", false, running(false))]);
    cluster.objects.insert(SLICES, vec![watched_slice(&[("a", "10.0.0.1", false)])]);
    let shared: Shared = Arc::new(Mutex::new(cluster));
    let answer = shared.clone();
    let (api, backend) = FakeApi::start(move |method, uri| answer.lock().unwrap().answer(method, uri));
    (api, backend, shared)
}

impl FakeApi {
    /// Changes the cluster and sends the event on the path's watch.
    fn change(&self, cluster: &Shared, path: &'static str, kind: &str, object: Value) {
        let object = cluster.lock().unwrap().change(path, kind, object);
        self.event(path, kind, object);
    }
}

/// Polls `check` until it holds; panics with the last state after a few seconds.
async fn eventually<T: std::fmt::Debug>(
    what: &str,
    mut probe: impl AsyncFnMut() -> T,
    check: impl Fn(&T) -> bool,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let value = probe().await;
        if check(&value) {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{what}: still {value:#?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The four watches' requests once they are all open.
async fn watches_open(api: &FakeApi) -> Vec<String> {
    eventually(
        "four watches open",
        async || {
            let mut watches: Vec<String> =
                api.watch_requests().into_iter().filter(|r| r.contains("watch=true")).collect();
            watches.sort();
            watches
        },
        |w| w.len() >= 4 && api.streams.lock().unwrap().len() == 4,
    )
    .await
}

fn watch_request(path: &str, resource_version: u64) -> String {
    format!(
        "GET {path}?&watch=true&timeoutSeconds=290&{MANAGED}&allowWatchBookmarks=true&resourceVersion={resource_version}"
    )
}

fn list_request(path: &str) -> String {
    format!("GET {path}?&{MANAGED}&limit=500")
}

#[tokio::test]
async fn status_follows_watch_events_without_asking_the_api_server() {
    let (api, backend, cluster) = watched_cluster();
    let watches = watches_open(&api).await;
    let mut lists: Vec<String> =
        api.watch_requests().into_iter().filter(|r| !r.contains("watch=true")).collect();
    lists.sort();
    assert_eq!(
        lists,
        vec![list_request(PODS), list_request(DEPLOYMENTS), list_request(REPLICASETS), list_request(SLICES)]
    );
    assert_eq!(
        watches,
        vec![
            watch_request(PODS, 100),
            watch_request(DEPLOYMENTS, 100),
            watch_request(REPLICASETS, 100),
            watch_request(SLICES, 100)
        ]
    );
    assert!(backend.watching());

    let s = backend.status(DEPLOYED).await.unwrap();
    assert_eq!(s.replicas.len(), 1);
    assert!(!s.replicas[0].ready);
    assert_eq!(s.replicas[0].state, ReplicaState::Starting);

    // The pod turns ready, then its endpoint does.
    api.change(&cluster, PODS, "MODIFIED", watched_pod("a", "10.0.0.1", true, running(true)));
    api.change(&cluster, SLICES, "MODIFIED", watched_slice(&[("a", "10.0.0.1", true)]));
    let s = eventually(
        "a ready",
        async || backend.status(DEPLOYED).await.unwrap(),
        |s| s.ready_addresses().len() == 1,
    )
    .await;
    assert_eq!(s.ready_addresses(), vec!["10.0.0.1:8080".parse().unwrap()]);
    assert_eq!(s.replicas[0].state, ReplicaState::Ready);
    assert!(s.replicas[0].current);

    // It crash-loops: not ready although its endpoint still says so, with the cause and logs.
    let crashing = container(
        false,
        3,
        json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}}),
        json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}),
    );
    api.change(&cluster, PODS, "MODIFIED", watched_pod("a", "10.0.0.1", false, crashing));
    let s = eventually(
        "a crash-looping",
        async || backend.status(DEPLOYED).await.unwrap(),
        |s| s.replicas[0].state == ReplicaState::CrashLoop,
    )
    .await;
    assert!(s.ready_addresses().is_empty(), "never routed to while crash-looping: {s:#?}");
    let why = s.replicas[0].last_error.clone().unwrap();
    assert_eq!(
        why,
        "CrashLoopBackOff: exited with code 137 (OOMKilled), restarted 3 times; last log lines:\na: loading model\ncannot allocate memory"
    );
    // The logs of that crash are fetched once, however often the status is asked for.
    backend.status(DEPLOYED).await.unwrap();
    backend.status(DEPLOYED).await.unwrap();

    // A new pod replaces it.
    api.change(&cluster, PODS, "ADDED", watched_pod("b", "10.0.0.2", true, running(true)));
    api.change(&cluster, SLICES, "MODIFIED", watched_slice(&[("b", "10.0.0.2", true)]));
    api.change(&cluster, PODS, "DELETED", watched_pod("a", "10.0.0.1", false, running(false)));
    let s = eventually(
        "a replaced by b",
        async || backend.status(DEPLOYED).await.unwrap(),
        |s| s.replicas.iter().map(|r| r.id.as_str()).collect::<Vec<_>>() == ["b"],
    )
    .await;
    assert_eq!(s.ready_addresses(), vec!["10.0.0.2:8080".parse().unwrap()]);

    assert_eq!(
        api.requests(),
        vec![
            "GET /api/v1/namespaces/models/pods/a/log?&container=model&previous=true&tailLines=20"
                .to_string()
        ],
        "status reads the caches; only a crash's logs are asked for, once"
    );
    assert_eq!(api.watch_requests().len(), 8, "no re-list, no re-watch: {:#?}", api.watch_requests());
}

#[tokio::test]
async fn watch_errors_are_retried_without_losing_the_state() {
    let (api, backend, cluster) = watched_cluster();
    watches_open(&api).await;
    api.change(&cluster, PODS, "MODIFIED", watched_pod("a", "10.0.0.1", true, running(true)));
    api.change(&cluster, SLICES, "MODIFIED", watched_slice(&[("a", "10.0.0.1", true)]));
    eventually(
        "a ready",
        async || backend.status(DEPLOYED).await.unwrap(),
        |s| s.ready_addresses().len() == 1,
    )
    .await;

    // The API server forgot the pods' resourceVersion (410 Gone), and the re-list fails once;
    // meanwhile pod b started without an event reaching the backend.
    cluster.lock().unwrap().failures.push((PODS.to_string(), 500));
    cluster.lock().unwrap().change(PODS, "ADDED", watched_pod("b", "10.0.0.2", false, running(false)));
    let rv = cluster.lock().unwrap().resource_version;
    api.event(
        PODS,
        "ERROR",
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410, "reason": "Expired",
               "message": "too old resource version"}),
    );
    let relisted = || api.watch_requests().iter().filter(|r| **r == watch_request(PODS, rv)).count() == 1;
    // Until the re-list succeeds the cache keeps what it knew.
    while !relisted() {
        let s = backend.status(DEPLOYED).await.unwrap();
        assert_eq!(s.ready_addresses(), vec!["10.0.0.1:8080".parse().unwrap()], "{s:#?}");
        assert!(backend.watching());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = backend.status(DEPLOYED).await.unwrap();
    assert_eq!(s.replicas.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(s.ready_addresses(), vec!["10.0.0.1:8080".parse().unwrap()]);
    let pods: Vec<String> =
        api.watch_requests().into_iter().filter(|r| r.starts_with(&format!("GET {PODS}?"))).collect();
    assert_eq!(
        pods,
        vec![
            list_request(PODS),
            watch_request(PODS, 100),
            list_request(PODS),
            list_request(PODS),
            watch_request(PODS, rv)
        ],
        "410 Gone: re-list (a failing list is retried), then watch from the new list"
    );

    // The slices' watch ends (as watches do) and the API server fails the next watch request:
    // the watcher resumes from where it was, without re-listing.
    cluster.lock().unwrap().failures.push((format!("{SLICES}?&watch=true"), 500));
    api.close(SLICES);
    let slice_watches = || {
        api.watch_requests()
            .into_iter()
            .filter(|r| r.starts_with(&format!("GET {SLICES}?")))
            .collect::<Vec<_>>()
    };
    eventually(
        "the slices watched again",
        async || slice_watches(),
        |w| w.len() == 4 && api.streams.lock().unwrap().contains_key(SLICES),
    )
    .await;
    assert_eq!(
        slice_watches(),
        vec![
            list_request(SLICES),
            watch_request(SLICES, 100),
            watch_request(SLICES, 102),
            watch_request(SLICES, 102)
        ]
    );
    api.change(&cluster, PODS, "MODIFIED", watched_pod("b", "10.0.0.2", true, running(true)));
    api.change(
        &cluster,
        SLICES,
        "MODIFIED",
        watched_slice(&[("a", "10.0.0.1", true), ("b", "10.0.0.2", true)]),
    );
    eventually(
        "b ready",
        async || backend.status(DEPLOYED).await.unwrap(),
        |s| s.ready_addresses().len() == 2,
    )
    .await;
    assert!(api.requests().is_empty(), "status reads the caches: {:#?}", api.requests());
}

#[tokio::test]
async fn status_before_the_caches_sync_asks_the_api_server() {
    // Lists without a resourceVersion cannot be watched from: the caches never sync.
    let (api, backend) = FakeApi::start(cluster);
    assert!(!backend.watching());
    backend.status("ep-fraud-dm-42").await.unwrap();
    assert!(api.requests().iter().any(|r| r == &format!("GET {DEPLOYMENTS}/ep-fraud-dm-42")));
}
