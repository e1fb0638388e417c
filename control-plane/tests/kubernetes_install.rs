//! The installation end to end, against a fake API server (no cluster can run here): the
//! install's own Deployment starts `platform serve` (same args and env, its Secrets and mounts
//! mapped to local files), and what that platform applies for an endpoint and a deployed model
//! carries the install's values. And `platform check` tells what a cluster lacks.

mod fake_kube;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fake_kube::FakeCluster;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use serde::Deserialize;
use serde_json::{Value, json};

const NAMESPACE: &str = "ml-serving";
const LOC: &str = "/v1/projects/default/locations/local";

/// What an operator would put in `--values`: everything the rendering of models depends on.
const VALUES: &str = "namespace: ml-serving
endpointHostPattern: '{endpoint}.predict.corp.example'
ingressClassName: nginx-internal
clusterIssuer: corp-ca
runtimeImage: registry.corp.example/platform-runtime:7
imagePullPolicy: Always
s3Secret: platform-s3
modelS3Secret: models-read-only
gpu:
  nodeSelector: {cloud.google.com/gke-accelerator: '{accelerator}'}
  tolerations: ['nvidia.com/gpu:NoSchedule']
spot:
  nodeSelector: {pool: spot}
  tolerations: ['spot=true:NoExecute']
";

fn platform(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_platform")).args(args).output().expect("platform runs")
}

/// The API Deployment of the installation rendered with `values`.
fn api_deployment(values: &Path) -> Deployment {
    let out = platform(&["install-manifests", "--values", values.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let yaml = String::from_utf8(out.stdout).unwrap();
    for document in serde_norway::Deserializer::from_str(&yaml) {
        let value = Value::deserialize(document).unwrap();
        if value["kind"] == "Deployment" && value["metadata"]["name"] == "platform-api" {
            return serde_json::from_value(value).unwrap();
        }
    }
    panic!("no platform-api Deployment in:\n{yaml}");
}

/// Starts the pod's container as the kubelet would: its args, its env with field references and
/// Secrets resolved, its volume mounts mapped to local directories. Only the listener moves to a
/// free local port (a pod has its own network namespace) and the kubeconfig stands in for the
/// service account's credentials.
fn start_like_the_kubelet(
    pod: &PodSpec,
    secrets: &BTreeMap<&str, BTreeMap<&str, String>>,
    root: &Path,
    port: u16,
    kubeconfig: &Path,
) -> Child {
    let c: &Container = &pod.containers[0];
    let mounts: Vec<(String, String)> = c
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| {
            let local = root.join(&m.name);
            std::fs::create_dir_all(&local).unwrap();
            (m.mount_path.clone(), local.display().to_string())
        })
        .collect();
    let local_path = |value: &str| {
        mounts.iter().fold(value.to_string(), |v, (mount, local)| v.replace(mount.as_str(), local))
    };
    let mut command = Command::new(env!("CARGO_BIN_EXE_platform"));
    command.env_clear().args(c.args.iter().flatten());
    for from in c.env_from.iter().flatten() {
        let name = &from.secret_ref.as_ref().expect("secretRef").name;
        for (k, v) in secrets.get(name.as_str()).unwrap_or_else(|| panic!("Secret {name}")) {
            command.env(k, v);
        }
    }
    for var in c.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) => local_path(v),
            (None, Some(from)) => {
                if let Some(field) = &from.field_ref {
                    match field.field_path.as_str() {
                        "metadata.namespace" => NAMESPACE.to_string(),
                        "spec.serviceAccountName" => pod.service_account_name.clone().unwrap(),
                        other => panic!("field {other}"),
                    }
                } else {
                    let key = from.secret_key_ref.as_ref().expect("secretKeyRef");
                    secrets[key.name.as_str()][key.key.as_str()].clone()
                }
            }
            (None, None) => String::new(),
        };
        command.env(&var.name, value);
    }
    command
        .env("PLATFORM_LISTEN", format!("127.0.0.1:{port}"))
        .env("KUBECONFIG", kubeconfig)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(root.join("platform.log")).unwrap());
    command.spawn().expect("platform starts")
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let resp =
        http.request(method, format!("{base}{path}")).bearer_auth(token).json(&body).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn eventually(cluster: &FakeCluster, path: &str, log: &Path) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(object) = cluster.object(path) {
            return object;
        }
        assert!(
            Instant::now() < deadline,
            "{path} was never applied; the platform said:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_installed_platform_renders_with_the_install_values() {
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("values.yaml");
    std::fs::write(&values, VALUES).unwrap();
    let deployment = api_deployment(&values);
    let pod = deployment.spec.unwrap().template.spec.unwrap();

    let cluster = FakeCluster::start(|_, _, _| None).await;
    let kubeconfig = cluster.kubeconfig(dir.path(), NAMESPACE);
    let secrets = BTreeMap::from([
        (
            "platform-database",
            BTreeMap::from([("url", format!("sqlite://{}/platform.db?mode=rwc", dir.path().display()))]),
        ),
        (
            "platform-s3",
            BTreeMap::from([
                ("AWS_ACCESS_KEY_ID", "platform".to_string()),
                ("AWS_SECRET_ACCESS_KEY", "secret".to_string()),
                ("AWS_REGION", "us-east-1".to_string()),
            ]),
        ),
    ]);
    let port = test_support::free_port();
    let root = dir.path().join("pod");
    let _platform = Killed(start_like_the_kubelet(&pod, &secrets, &root, port, &kubeconfig));
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let data = root.join("data");
    let log = root.join("platform.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(data.join("admin-token").exists()
        && http.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status() == 200))
    {
        assert!(
            Instant::now() < deadline,
            "not healthy:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let token = std::fs::read_to_string(data.join("admin-token")).unwrap().trim().to_string();

    let (status, body) = call(
        &http,
        &base,
        &token,
        "POST",
        &format!("{LOC}/endpoints?endpointId=fraud"),
        json!({"displayName": "fraud"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let upload = |env: Value| {
        json!({"modelId": "iris", "model": {"displayName": "iris", "containerSpec": {
        "imageUri": "registry.corp.example/iris:1", "env": env}}})
    };
    // The same rule as edited manifests: the loader's variables are refused.
    let (status, body) = call(
        &http,
        &base,
        &token,
        "POST",
        &format!("{LOC}/models:upload"),
        upload(json!([{"name": "LD_PRELOAD", "value": "/x.so"}])),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("LD_PRELOAD"), "{body}");
    let (status, body) =
        call(&http, &base, &token, "POST", &format!("{LOC}/models:upload"), upload(json!([]))).await;
    assert_eq!(status, 200, "{body}");

    let deploy = |account: &str| {
        json!({"deployedModel": {"model": "iris", "id": "7", "serviceAccount": account,
        "dedicatedResources": {"machineSpec": {"machineType": "g2-standard-4"}, "minReplicaCount": 1, "spot": true}}})
    };
    let (status, body) =
        call(&http, &base, &token, "POST", &format!("{LOC}/endpoints/fraud:deployModel"), deploy("platform"))
            .await;
    assert_eq!(status, 400, "the platform's own service account is not lent: {body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("platform's own service account"), "{body}");
    let (status, body) = call(
        &http,
        &base,
        &token,
        "POST",
        &format!("{LOC}/endpoints/fraud:deployModel"),
        deploy("model-reader"),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // The endpoint's Ingress: host pattern, class and issuer of the values.
    let ingress = eventually(
        &cluster,
        &format!("/apis/networking.k8s.io/v1/namespaces/{NAMESPACE}/ingresses/ep-fraud"),
        &log,
    )
    .await;
    assert_eq!(ingress["spec"]["rules"][0]["host"], "fraud.predict.corp.example", "{ingress}");
    assert_eq!(ingress["spec"]["ingressClassName"], "nginx-internal");
    assert_eq!(ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"], "corp-ca");
    assert_eq!(
        ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
        "platform-gateway"
    );

    // The model's pod: the models' Secret, GPU and spot placement, its service account.
    let applied = eventually(
        &cluster,
        &format!("/apis/apps/v1/namespaces/{NAMESPACE}/deployments/ep-fraud-dm-7"),
        &log,
    )
    .await;
    let pod = &applied["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "registry.corp.example/iris:1");
    assert_eq!(container["imagePullPolicy"], "Always");
    assert_eq!(container["envFrom"], json!([{"secretRef": {"name": "models-read-only", "optional": true}}]));
    assert_eq!(container["resources"]["limits"]["nvidia.com/gpu"], "1");
    assert_eq!(pod["nodeSelector"], json!({"cloud.google.com/gke-accelerator": "nvidia-l4", "pool": "spot"}));
    assert_eq!(
        pod["tolerations"],
        json!([
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "spot", "operator": "Equal", "value": "true", "effect": "NoExecute"},
        ])
    );
    assert_eq!(pod["serviceAccountName"], "model-reader");
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert!(
        cluster.received().iter().any(|r| r.method == axum::http::Method::PATCH
            && r.path.ends_with("/deployments/ep-fraud-dm-7")
            && r.query.contains("fieldManager=platform")),
        "applied with server-side apply"
    );
}

/// Answers what a cluster would for `platform check`: `complete` has everything.
fn cluster_answers(
    complete: bool,
) -> impl Fn(&axum::http::Method, &str, Option<&Value>) -> Option<(u16, Value)> + Send + Sync {
    move |method, path, body| {
        let not_found = || {
            Some((
                404,
                json!({"kind": "Status", "apiVersion": "v1", "code": 404, "status": "Failure", "message": "not found"}),
            ))
        };
        match path {
            "/version" => Some((200, json!({"gitVersion": "v1.31.2"}))),
            "/apis/authorization.k8s.io/v1/subjectaccessreviews" => {
                let mut review = body.cloned().unwrap_or_default();
                let attributes = &review["spec"]["resourceAttributes"];
                // Without the install's Role the leases are what is missing.
                let allowed = complete || attributes["resource"] != "leases";
                review["status"] = json!({"allowed": allowed});
                Some((201, review))
            }
            "/apis/cert-manager.io/v1" if complete => Some((
                200,
                json!({"kind": "APIResourceList", "groupVersion": "cert-manager.io/v1", "resources": []}),
            )),
            "/apis/cert-manager.io/v1/clusterissuers/letsencrypt" if complete => {
                Some((200, json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})))
            }
            "/apis/networking.k8s.io/v1/ingressclasses" => Some((
                200,
                json!({"kind": "IngressClassList", "apiVersion": "networking.k8s.io/v1", "metadata": {},
                "items": if complete { json!([{"metadata": {"name": "nginx", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}}, "spec": {"controller": "k8s.io/ingress-nginx"}}]) } else { json!([]) }}),
            )),
            "/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.metrics.k8s.io" if complete => {
                Some((200, json!({"status": {"conditions": [{"type": "Available", "status": "True"}]}})))
            }
            "/api/v1/namespaces/platform" => Some((200, json!({"metadata": {"name": "platform"}}))),
            "/api/v1/namespaces/platform/secrets/platform-database" => {
                Some((200, json!({"data": {"url": "cG9zdGdyZXM6Ly8="}})))
            }
            "/api/v1/namespaces/platform/secrets/platform-jwt" if complete => {
                Some((200, json!({"data": {"jwt.key": "eA=="}})))
            }
            "/api/v1/namespaces/platform/secrets/platform-s3" => Some((200, json!({"data": {}}))),
            _ if *method == axum::http::Method::GET => not_found(),
            _ => None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_check_tells_what_the_cluster_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let run = |kubeconfig: &Path| {
        Command::new(env!("CARGO_BIN_EXE_platform"))
            .arg("check")
            .env("KUBECONFIG", kubeconfig)
            .output()
            .unwrap()
    };
    let lacking = FakeCluster::start(cluster_answers(false)).await;
    let out = tokio::task::spawn_blocking({
        let kubeconfig = lacking.kubeconfig(dir.path(), "platform");
        move || run(&kubeconfig)
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{report}{}", String::from_utf8_lossy(&out.stderr));
    let missing: Vec<&str> = report.lines().filter(|l| l.starts_with("MISSING")).collect();
    assert_eq!(missing.len(), 5, "{report}");
    for expected in [
        "MISSING Secret platform/platform-jwt (the token signing key): does not exist",
        "MISSING RBAC of system:serviceaccount:platform:platform: may not get leases.coordination.k8s.io, list leases.coordination.k8s.io",
        "MISSING cert-manager ClusterIssuer letsencrypt: cert-manager is not installed",
        "MISSING default IngressClass: none",
        "MISSING metrics API (metrics.k8s.io, for CPU autoscaling): not registered",
    ] {
        assert!(missing.iter().any(|l| l.starts_with(expected)), "`{expected}` in:\n{report}");
    }
    assert!(report.contains("ok      Kubernetes API server: version v1.31.2"), "{report}");
    let reviews = lacking.received().iter().filter(|r| r.path.ends_with("/subjectaccessreviews")).count();
    let review = lacking.received().into_iter().find(|r| r.path.ends_with("/subjectaccessreviews")).unwrap();
    assert_eq!(review.body.unwrap()["spec"]["user"], "system:serviceaccount:platform:platform");
    assert!(reviews > 40, "every verb of every rule is asked: {reviews}");

    let complete = FakeCluster::start(cluster_answers(true)).await;
    let kubeconfig = complete.kubeconfig(&dir.path().join("complete").tap_mkdir(), "platform");
    let out = tokio::task::spawn_blocking(move || run(&kubeconfig)).await.unwrap();
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        !report.contains("MISSING") && report.contains("ok      default IngressClass: nginx"),
        "{report}"
    );
}

trait MkDir {
    fn tap_mkdir(self) -> Self;
}

impl MkDir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}
