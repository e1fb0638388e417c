//! The controller in-process: the real services on an in-memory SQLite store, a scripted
//! backend in place of processes or a cluster, and `Controller::reconcile` called pass by pass.
//! Each test is a story of a deployed model: a deploy that succeeds, one that crashes, a
//! restart of the platform, an undeploy while deploying, an edited revision and a rollback.

#[allow(dead_code)] // the fake serves other tests too
mod fake_kube;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::{Access, Code, Role};
use async_trait::async_trait;
use control_plane::auth::Caller;
use control_plane::backend::kubernetes::lease::LeaseLock;
use control_plane::backend::{Backend, BackendError, DeploymentStatus, ReplicaState, ReplicaStatus};
use control_plane::controller::autoscale::Tuning;
use control_plane::controller::leader::{self, LEASE_NAME, Lead, Leadership};
use control_plane::controller::{Controller, ControllerConfig, Mode, Wake};
use control_plane::endpoints::Endpoints;
use control_plane::gateway::{Gateway, GatewayConfig};
use control_plane::machine::Catalog;
use control_plane::manifests::RenderConfig;
use control_plane::registry::{ArtifactStore, Registry};
use control_plane::store::{self, DesiredState, EndpointKey, RevisionSource, Store};
use control_plane::telemetry::Metrics;
use k8s_openapi::api::apps::v1::Deployment;

/// How the scripted backend's replicas behave.
#[derive(Debug, Clone, PartialEq)]
enum Behaviour {
    Ready,
    Starting,
    Crashing(String),
}

/// A backend that runs nothing: it records what it was asked to run and reports replicas in
/// the state the test sets.
#[derive(Default)]
struct ScriptedBackend {
    deployments: Mutex<HashMap<String, Deployment>>,
    behaviour: Mutex<Option<Behaviour>>,
}

impl ScriptedBackend {
    fn behave(&self, b: Behaviour) {
        *self.behaviour.lock().unwrap() = Some(b);
    }

    fn replicas_of(&self, name: &str) -> Option<i32> {
        self.deployments.lock().unwrap().get(name).and_then(|d| d.spec.as_ref()?.replicas)
    }

    fn names(&self) -> Vec<String> {
        self.deployments.lock().unwrap().keys().cloned().collect()
    }

    /// Forgets everything, as a machine that rebooted.
    fn reboot(&self) {
        self.deployments.lock().unwrap().clear();
    }
}

#[async_trait]
impl Backend for ScriptedBackend {
    async fn apply(&self, deployment: &Deployment) -> Result<Vec<String>, BackendError> {
        let name = deployment.metadata.name.clone().unwrap_or_default();
        self.deployments.lock().unwrap().insert(name, deployment.clone());
        Ok(vec![])
    }

    async fn delete(&self, name: &str) -> Result<(), BackendError> {
        self.deployments.lock().unwrap().remove(name);
        Ok(())
    }

    async fn status(&self, name: &str) -> Result<DeploymentStatus, BackendError> {
        let replicas = self.replicas_of(name).ok_or_else(|| BackendError::NotFound(name.to_string()))?;
        let behaviour = self.behaviour.lock().unwrap().clone().unwrap_or(Behaviour::Ready);
        let replicas = (0..replicas.max(0) as u16)
            .map(|i| {
                let (state, error) = match &behaviour {
                    Behaviour::Ready => (ReplicaState::Ready, None),
                    Behaviour::Starting => (ReplicaState::Starting, None),
                    Behaviour::Crashing(e) => (ReplicaState::CrashLoop, Some(e.clone())),
                };
                ReplicaStatus {
                    id: format!("r{i}"),
                    address: SocketAddr::from(([127, 0, 0, 1], 20_000 + i)),
                    ready: state == ReplicaState::Ready,
                    restarts: 0,
                    last_error: error,
                    state,
                    current: true,
                }
            })
            .collect::<Vec<_>>();
        Ok(DeploymentStatus { desired: replicas.len() as u32, replicas, ..Default::default() })
    }

    async fn scale(&self, _name: &str, _replicas: u32) -> Result<(), BackendError> {
        Ok(())
    }

    async fn list(&self) -> Result<Vec<String>, BackendError> {
        Ok(self.names())
    }
}

/// The services and the controller of one platform, on a shared store and backend.
struct Platform {
    store: Arc<dyn Store>,
    backend: Arc<ScriptedBackend>,
    endpoints: Endpoints,
    registry: Arc<Registry>,
    controller: Controller,
    gateway: Arc<Gateway>,
    /// Whether this platform's controller leads (it does unless a test elects).
    lead: Lead,
    _artifacts: tempfile::TempDir,
}

fn admin() -> Caller {
    Caller {
        user_id: 1,
        username: "admin".into(),
        token_id: "t".into(),
        token_project: None,
        roles: vec![("*".into(), Role::Admin)],
    }
}

fn loc() -> api::LocationName {
    api::LocationName::new("p", "l").unwrap()
}

fn endpoint_name() -> api::EndpointName {
    loc().endpoint("ep")
}

impl Platform {
    async fn start(
        store: Arc<dyn Store>,
        backend: Arc<ScriptedBackend>,
        deploy_timeout: Duration,
    ) -> Platform {
        Platform::start_as(store, backend, deploy_timeout, Mode::Full, Default::default()).await
    }

    /// A platform process in `mode` (a role of split roles) with the autoscaler's `tuning`.
    async fn start_as(
        store: Arc<dyn Store>,
        backend: Arc<ScriptedBackend>,
        deploy_timeout: Duration,
        mode: Mode,
        tuning: Tuning,
    ) -> Platform {
        let artifacts_dir = tempfile::tempdir().unwrap();
        let artifacts = ArtifactStore::open(artifacts_dir.path().to_str().unwrap()).await.unwrap();
        let render = RenderConfig::default();
        let runtime = {
            let render = render.clone();
            Arc::new(move |image: &str| render.is_runtime_image(image))
                as Arc<dyn Fn(&str) -> bool + Send + Sync>
        };
        let registry = Arc::new(Registry::new(store.clone(), artifacts, 1 << 20, runtime));
        let gateway = Arc::new(Gateway::new(
            GatewayConfig {
                timeout: Duration::from_secs(5),
                cold_start_timeout: Duration::ZERO,
                max_queued: 10,
            },
            Metrics::new(),
        ));
        let wake = Wake::default();
        let endpoints = Endpoints::new(
            store.clone(),
            registry.clone(),
            Catalog::builtin(),
            render.clone(),
            backend.clone(),
            gateway.clone(),
            wake.clone(),
            "https://localhost:8443".into(),
        );
        let config = ControllerConfig {
            period: Duration::from_secs(1),
            deploy_timeout,
            max_deploy_restarts: 3,
            render,
            catalog: Catalog::builtin(),
            autoscale: tuning,
            mode,
        };
        let lead = Lead::new(true);
        let controller =
            Controller::new(store.clone(), backend.clone(), gateway.clone(), config, wake, Metrics::new())
                .led_by(lead.clone());
        Platform { store, backend, endpoints, registry, controller, gateway, lead, _artifacts: artifacts_dir }
    }

    async fn upload(&self, model_id: &str) {
        let req = api::UploadModelRequest {
            model_id: Some(model_id.into()),
            model: api::Model {
                display_name: model_id.into(),
                artifact_uri: "s3://models/mlp.onnx".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        self.registry.upload(&admin(), &loc(), &req).await.unwrap();
    }

    async fn create_endpoint(&self) {
        let body = api::Endpoint { display_name: "ep".into(), access: Access::Public, ..Default::default() };
        self.endpoints.create(&admin(), &loc(), Some("ep"), &body).await.unwrap();
    }

    async fn deploy(&self, model_id: &str, id: &str, split: &[(&str, i32)]) -> String {
        let req = api::DeployModelRequest {
            deployed_model: api::DeployedModel {
                id: id.into(),
                model: model_id.into(),
                dedicated_resources: Some(api::DedicatedResources {
                    machine_spec: api::MachineSpec { machine_type: "e2-small".into(), ..Default::default() },
                    min_replica_count: 1,
                    max_replica_count: 1,
                    ..Default::default()
                }),
                ..Default::default()
            },
            traffic_split: split.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        };
        operation_id(&self.endpoints.deploy(&admin(), &endpoint_name(), &req).await.unwrap())
    }

    async fn pass(&self) {
        self.controller.reconcile().await.unwrap();
    }

    async fn operation(&self, id: &str) -> store::Operation {
        self.store.get_operation("p", "l", id).await.unwrap()
    }

    async fn state_of(&self, id: &str) -> Option<DesiredState> {
        self.store
            .get_deployed_model(&EndpointKey::new("p", "l", "ep"), id)
            .await
            .ok()
            .map(|d| d.desired_state)
    }

    /// The deployed models the gateway routes to on the endpoint, with their replica counts.
    fn routes(&self) -> Vec<(String, usize)> {
        let table = self.gateway.snapshot();
        let Some(route) = table.endpoints.get(&endpoint_name().to_string()) else { return vec![] };
        route.models.iter().map(|m| (m.deployed_model_id.clone(), m.replicas.len())).collect()
    }
}

fn operation_id(op: &api::Operation) -> String {
    op.name.rsplit('/').next().unwrap().to_string()
}

fn deployment(id: &str) -> String {
    control_plane::manifests::deployment_name("ep", id)
}

async fn platform(deploy_timeout: Duration) -> Platform {
    let store = store::open("sqlite::memory:").await.unwrap();
    let p = Platform::start(store, Arc::new(ScriptedBackend::default()), deploy_timeout).await;
    p.upload("mlp").await;
    p.create_endpoint().await;
    p
}

#[tokio::test]
async fn a_deploy_finishes_once_its_replicas_are_ready_and_routed() {
    let p = platform(Duration::from_secs(600)).await;
    p.backend.behave(Behaviour::Starting);
    let op = p.deploy("mlp", "1", &[]).await;
    p.pass().await;
    assert_eq!(p.backend.replicas_of(&deployment("1")), Some(1), "the rendered Deployment is applied");
    let pending = p.operation(&op).await;
    assert!(!pending.done);
    assert_eq!(pending.metadata.progress_message.as_deref(), Some("0 of 1 replicas ready"));
    assert_eq!(p.routes(), [("1".to_string(), 0)], "known to the gateway, no replica yet");

    p.backend.behave(Behaviour::Ready);
    p.pass().await;
    let done = p.operation(&op).await;
    assert!(done.done && done.error.is_none(), "{done:?}");
    assert_eq!(done.response.unwrap()["deployedModel"]["id"], "1");
    assert_eq!(p.state_of("1").await, Some(DesiredState::Deployed));
    assert_eq!(p.routes(), [("1".to_string(), 1)]);
    let revisions = p.store.list_revisions(&EndpointKey::new("p", "l", "ep"), "1").await.unwrap();
    assert_eq!(revisions.len(), 1, "one rendered revision, not one per pass");
    assert_eq!(revisions[0].source, RevisionSource::Rendered);
}

#[tokio::test]
async fn the_gateway_gets_the_concurrency_limit_and_unmeasurable_metrics_are_refused() {
    let p = platform(Duration::from_secs(600)).await;
    let op = p.deploy("mlp", "1", &[]).await;
    p.pass().await;
    let done = p.operation(&op).await.response.unwrap();
    assert_eq!(done["deployedModel"]["containerConcurrency"], 80, "Cloud Run's default, shown");
    let table = p.gateway.snapshot();
    assert_eq!(table.endpoints[&endpoint_name().to_string()].models[0].concurrency, 80);

    // Nothing measures the GPU duty cycle here: refused, with what to use instead.
    let req = api::DeployModelRequest {
        deployed_model: api::DeployedModel {
            model: "mlp".into(),
            dedicated_resources: Some(api::DedicatedResources {
                machine_spec: api::MachineSpec { machine_type: "g2-standard-4".into(), ..Default::default() },
                min_replica_count: 1,
                max_replica_count: 2,
                autoscaling_metric_specs: vec![api::AutoscalingMetricSpec {
                    metric_name: api::METRIC_GPU.into(),
                    target: 60,
                }],
                ..Default::default()
            }),
            ..Default::default()
        },
        traffic_split: Default::default(),
    };
    let err = p.endpoints.deploy(&admin(), &endpoint_name(), &req).await.unwrap_err();
    assert_eq!(api::Coded::http_status(&err), 400);
    assert!(err.to_string().contains("needs the kubernetes backend"), "{err}");
}

#[tokio::test]
async fn a_crashing_deploy_fails_with_the_replicas_output_and_gives_its_traffic_back() {
    let p = platform(Duration::ZERO).await;
    p.deploy("mlp", "1", &[]).await;
    p.pass().await;
    p.backend.behave(Behaviour::Crashing("exit status 3: model.onnx is not an ONNX model".into()));
    let op = p.deploy("mlp", "2", &[("0", 50), ("1", 50)]).await;
    let key = EndpointKey::new("p", "l", "ep");
    assert_eq!(p.store.get_endpoint(&key).await.unwrap().traffic_split.len(), 2);
    p.pass().await;
    let failed = p.operation(&op).await;
    let error = failed.error.expect("the deploy failed");
    assert_eq!(error.code, Code::DeadlineExceeded.number());
    assert!(error.message.contains("model.onnx is not an ONNX model"), "{}", error.message);
    assert_eq!(p.state_of("2").await, None, "the failed deployed model is removed");
    assert!(p.backend.replicas_of(&deployment("2")).is_none(), "and its replicas");
    let split = p.store.get_endpoint(&key).await.unwrap().traffic_split;
    assert_eq!(split, [("1".to_string(), 100)].into(), "the split from before the deploy is back");
}

#[tokio::test]
async fn after_a_restart_the_same_loop_brings_every_deployed_model_back() {
    let store = store::open("sqlite::memory:").await.unwrap();
    let backend = Arc::new(ScriptedBackend::default());
    let first = Platform::start(store.clone(), backend.clone(), Duration::from_secs(600)).await;
    first.upload("mlp").await;
    first.create_endpoint().await;
    first.deploy("mlp", "1", &[]).await;
    first.pass().await;
    assert_eq!(first.state_of("1").await, Some(DesiredState::Deployed));
    drop(first);

    // The machine rebooted; something left a deployment that nothing wants any more (deleted
    // while the platform was down).
    let mut orphan = backend.deployments.lock().unwrap()[&deployment("1")].clone();
    orphan.metadata.name = Some(deployment("999"));
    backend.reboot();
    backend.apply(&orphan).await.unwrap();
    let second = Platform::start(store, backend.clone(), Duration::from_secs(600)).await;
    assert!(second.routes().is_empty(), "a new process starts with an empty routing table");
    second.pass().await;
    assert_eq!(backend.replicas_of(&deployment("1")), Some(1), "recreated from the database");
    assert!(backend.replicas_of(&deployment("999")).is_none(), "the orphan is removed");
    assert_eq!(second.routes(), [("1".to_string(), 1)]);
}

#[tokio::test]
async fn an_undeploy_while_deploying_aborts_the_deploy_and_removes_the_replicas() {
    let p = platform(Duration::from_secs(600)).await;
    p.backend.behave(Behaviour::Starting);
    let deploy = p.deploy("mlp", "1", &[]).await;
    p.pass().await;
    assert!(p.backend.replicas_of(&deployment("1")).is_some());
    let req = api::UndeployModelRequest { deployed_model_id: "1".into(), ..Default::default() };
    let undeploy = operation_id(&p.endpoints.undeploy(&admin(), &endpoint_name(), &req).await.unwrap());
    p.pass().await;
    // The deploy's operation is finished in the pass after its deployed model went away.
    p.pass().await;
    let undeployed = p.operation(&undeploy).await;
    assert!(undeployed.done && undeployed.error.is_none(), "{undeployed:?}");
    let aborted = p.operation(&deploy).await;
    assert_eq!(aborted.error.map(|e| e.status), Some("ABORTED".to_string()));
    assert!(p.backend.replicas_of(&deployment("1")).is_none());
    assert_eq!(p.state_of("1").await, None);
    assert!(p.routes().is_empty());
}

#[tokio::test]
async fn an_edited_revision_runs_and_a_rollback_restores_the_rendering() {
    let p = platform(Duration::from_secs(600)).await;
    p.deploy("mlp", "1", &[]).await;
    p.pass().await;
    let rendered = p.endpoints.manifests(&admin(), &endpoint_name(), "1").await.unwrap();
    assert_eq!(rendered.revision, 1);
    let edited = rendered.manifests.replacen("replicas: 1", "replicas: 3", 1);
    assert_ne!(edited, rendered.manifests);
    let dry = p.endpoints.apply_manifests(&admin(), &endpoint_name(), "1", &edited, true).await.unwrap();
    assert!(dry.revision.is_none() && dry.diff.contains("+  replicas: 3"), "{}", dry.diff);
    p.pass().await;
    assert_eq!(p.backend.replicas_of(&deployment("1")), Some(1), "a dry run changes nothing");

    let applied = p.endpoints.apply_manifests(&admin(), &endpoint_name(), "1", &edited, false).await.unwrap();
    assert_eq!(applied.revision.map(|r| r.revision), Some(2));
    p.pass().await;
    assert_eq!(p.backend.replicas_of(&deployment("1")), Some(3), "the edited count runs");
    p.pass().await;
    assert_eq!(p.backend.replicas_of(&deployment("1")), Some(3), "and stays: the autoscaler keeps out");

    let back = p.endpoints.rollback(&admin(), &endpoint_name(), "1", 1).await.unwrap();
    assert_eq!((back.revision, back.source.as_str()), (3, "rollback"));
    p.pass().await;
    assert_eq!(p.backend.replicas_of(&deployment("1")), Some(1));
    let revisions = p.store.list_revisions(&EndpointKey::new("p", "l", "ep"), "1").await.unwrap();
    let sources: Vec<RevisionSource> = revisions.iter().map(|r| r.source).collect();
    assert_eq!(sources, [RevisionSource::Rendered, RevisionSource::Edited, RevisionSource::Rollback]);
}

/// Two API replicas on one database and one cluster: both run a controller, the Lease elects one.
#[tokio::test]
async fn of_two_controllers_only_the_leader_acts_and_the_other_takes_over_when_it_dies() {
    let cluster = fake_kube::FakeCluster::start(|_, _, _| None).await;
    let url = format!("http://{}", cluster.address).parse().unwrap();
    let client = kube::Client::try_from(kube::Config::new(url)).unwrap();
    let lease = Duration::from_secs(2);
    let first = platform(Duration::from_secs(600)).await;
    let second =
        Platform::start(first.store.clone(), Arc::new(ScriptedBackend::default()), Duration::from_secs(600))
            .await;
    let mut keepers = Vec::new();
    for (p, who) in [(&first, "api-0"), (&second, "api-1")] {
        p.lead.set(false);
        let claim: Arc<dyn Leadership> =
            Arc::new(LeaseLock::new(client.clone(), "ml", LEASE_NAME, who, lease));
        let (lead, forever) = (p.lead.clone(), std::future::pending::<()>());
        keepers.push(tokio::spawn(leader::keep(claim, lead, lease / 4, || {}, forever)));
    }
    let one_leads = || async {
        for _ in 0..50 {
            if first.lead.leads() != second.lead.leads() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no single leader: {} {}", first.lead.leads(), second.lead.leads());
    };
    one_leads().await;
    let (leader, follower, leader_keeper) =
        if first.lead.leads() { (&first, &second, 0) } else { (&second, &first, 1) };

    leader.backend.behave(Behaviour::Starting);
    follower.backend.behave(Behaviour::Ready);
    let op = leader.deploy("mlp", "1", &[]).await;
    for _ in 0..2 {
        leader.pass().await;
        follower.pass().await;
    }
    assert!(leader.backend.replicas_of(&deployment("1")).is_some(), "the leader applies");
    assert!(follower.backend.names().is_empty(), "the other controller applies nothing");

    // The leader dies without giving the Lease up: the other takes over once it lapses.
    keepers[leader_keeper].abort();
    let died = std::time::Instant::now();
    while !follower.lead.leads() {
        assert!(died.elapsed() < lease * 3, "nobody took over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    follower.pass().await;
    follower.pass().await;
    assert_eq!(follower.backend.replicas_of(&deployment("1")), Some(1), "the new leader runs the deploy");
    let done = follower.operation(&op).await;
    assert!(done.done && done.error.is_none(), "the deploy is not lost: {done:?}");
    let revisions = follower.store.list_revisions(&EndpointKey::new("p", "l", "ep"), "1").await.unwrap();
    assert_eq!(revisions.len(), 1, "nor doubled");
    let lease_object = cluster
        .object("/apis/coordination.k8s.io/v1/namespaces/ml/leases/platform-controller")
        .expect("the Lease");
    assert_eq!(lease_object["spec"]["leaseTransitions"], 1, "{lease_object}");
}

/// Split roles on one database: an API process and a gateway process, with one cluster (the
/// scripted backend) between them. The gateway's traffic, recorded in the database, scales the
/// API's deployed model on request rate and to zero, and a request it holds brings a replica back.
#[tokio::test]
async fn split_roles_autoscale_on_the_gateways_traffic_and_wake_from_zero() {
    let store = store::open("sqlite::memory:").await.unwrap();
    let cluster = Arc::new(ScriptedBackend::default());
    let tuning = Tuning {
        stable_window: Duration::from_secs(10),
        panic_window: Duration::from_secs(2),
        scale_down_delay: Duration::from_secs(1),
    };
    let api =
        Platform::start_as(store.clone(), cluster.clone(), Duration::from_secs(600), Mode::Api, tuning).await;
    let gateway =
        Platform::start_as(store.clone(), cluster.clone(), Duration::from_secs(600), Mode::RouteOnly, tuning)
            .await;
    api.upload("mlp").await;
    api.create_endpoint().await;
    let req = api::DeployModelRequest {
        deployed_model: api::DeployedModel {
            id: "1".into(),
            model: "mlp".into(),
            dedicated_resources: Some(api::DedicatedResources {
                machine_spec: api::MachineSpec { machine_type: "e2-small".into(), ..Default::default() },
                min_replica_count: 0,
                max_replica_count: 4,
                autoscaling_metric_specs: vec![api::AutoscalingMetricSpec {
                    metric_name: api::METRIC_REQUESTS.into(),
                    target: 60,
                }],
                ..Default::default()
            }),
            ..Default::default()
        },
        traffic_split: [("0".to_string(), 100)].into(),
    };
    api.endpoints.deploy(&admin(), &endpoint_name(), &req).await.unwrap();
    api.pass().await;
    api.pass().await;
    gateway.gateway.stats("1");
    gateway.pass().await;
    assert_eq!(
        gateway.routes(),
        [("1".to_string(), 1)],
        "the gateway routes to what the API's controller runs"
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let reporter = tokio::spawn(control_plane::gateway::traffic::report(
        gateway.gateway.clone(),
        store.clone(),
        "gateway-0".into(),
        Duration::from_millis(50),
        async {
            let _ = stopped.await;
        },
    ));
    let recorded = || tokio::time::sleep(Duration::from_millis(300));

    // 600 requests through the gateway in a moment: the API's controller sees the rate.
    gateway.gateway.stats("1").requests.fetch_add(600, Ordering::Relaxed);
    recorded().await;
    api.pass().await;
    assert_eq!(cluster.replicas_of(&deployment("1")), Some(4), "scaled on the gateway's request rate");
    gateway.pass().await;
    assert_eq!(gateway.routes(), [("1".to_string(), 4)]);
    // The decision is in the database, for the API of any process (here the gateway's).
    let decision = || async {
        let endpoint = gateway.endpoints.get(&admin(), &endpoint_name()).await.unwrap();
        endpoint.deployed_models[0].autoscaling_status.clone().expect("a recorded decision")
    };
    let up = decision().await;
    assert_eq!(up.desired_replica_count, 4, "{up:?}");
    assert_eq!(
        (up.current_replica_count, up.reason.as_str()),
        (1, "capped at maxReplicaCount 4 (600 wanted)")
    );

    // No more requests: to zero once the short windows forget them.
    let quiet = std::time::Instant::now();
    while cluster.replicas_of(&deployment("1")) != Some(0) {
        assert!(quiet.elapsed() < Duration::from_secs(10), "never scaled to zero");
        tokio::time::sleep(Duration::from_millis(250)).await;
        api.pass().await;
    }
    let idle = decision().await;
    assert_eq!((idle.desired_replica_count, idle.reason.as_str()), (0, "scaled to zero after 1s idle"));
    // Once the replicas are gone too, an unchanged decision is not written again.
    api.pass().await;
    let settled = decision().await;
    assert_eq!((settled.current_replica_count, settled.desired_replica_count), (0, 0));
    api.pass().await;
    assert_eq!(decision().await.decide_time, settled.decide_time);

    // A request the gateway holds for want of a replica brings one back.
    gateway.gateway.stats("1").waiting.fetch_add(1, Ordering::Relaxed);
    recorded().await;
    api.pass().await;
    let woken = cluster.replicas_of(&deployment("1")).unwrap_or(0);
    assert!(woken >= 1, "woken by the held request (to what the stable window still asks for)");
    stop.send(()).unwrap();
    reporter.await.unwrap();
}
