//! The local backend with real processes: the prebuilt runtime re-executed from the `platform`
//! binary, a stdlib Python server run as a host process, crashing commands, capacity, and
//! leftovers of a platform that was killed with SIGKILL.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use control_plane::backend::local::replica_dir;
use control_plane::backend::{
    Backend, BackendError, DeploymentStatus, Drain, Drainer, Local, LocalConfig, ReplicaState, Resources,
};
use control_plane::machine::{Catalog, MachineType};
use control_plane::manifests::{EnvVar, ModelContainerSpec, RenderConfig, RenderInput, render};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, EnvVar as K8sEnvVar, Toleration, Volume};
use serde_json::{Value, json};

const TOLERANCE: f64 = 1e-4;
const STARTUP: Duration = Duration::from_secs(90);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn reference(name: &str) -> Value {
    let path = root().join("tests/models").join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("reference file")).expect("reference is JSON")
}

/// Test-friendly settings: the built `platform` binary, fast probes and backoff, no engines.
fn config(data_dir: &Path) -> LocalConfig {
    let mut cfg = LocalConfig::new(data_dir);
    cfg.runtime_exe = Some(PathBuf::from(env!("CARGO_BIN_EXE_platform")));
    cfg.container_engines = Vec::new();
    cfg.allow_host_processes = true;
    cfg.nvidia_smi = PathBuf::from("/nonexistent/nvidia-smi");
    cfg.readiness_period = Some(Duration::from_millis(100));
    cfg.first_ready_poll = Duration::from_millis(50);
    cfg.backoff_initial = Duration::from_millis(200);
    cfg.backoff_max = Duration::from_secs(2);
    cfg.max_grace = Some(Duration::from_secs(5));
    cfg
}

/// Records the drains the backend asks for, and whether the replica still listened then.
#[derive(Default)]
struct Drains(Mutex<Vec<(SocketAddr, bool)>>);

#[async_trait::async_trait]
impl Drain for Drains {
    async fn drain(&self, address: SocketAddr, _grace: Duration) {
        let listening = tokio::net::TcpStream::connect(address).await.is_ok();
        self.0.lock().unwrap().push((address, listening));
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.into(), value: value.into() }
}

fn machine(name: &str) -> MachineType {
    Catalog::builtin().get(name).expect("machine type").clone()
}

fn input(
    endpoint: &str,
    container: ModelContainerSpec,
    artifact: Option<String>,
    m: MachineType,
    replicas: u32,
) -> RenderInput {
    RenderInput {
        project: "test".into(),
        location: "local".into(),
        endpoint_id: endpoint.into(),
        deployed_model_id: "1".into(),
        model_id: "m".into(),
        model_version_id: "1".into(),
        display_name: endpoint.into(),
        container,
        artifact_uri: artifact,
        machine: m,
        min_replicas: replicas,
        max_replicas: replicas,
        autoscaling: vec![],
        spot: false,
        service_account: None,
        disable_container_logging: false,
    }
}

/// The rendered Deployment of the mlp test model on the prebuilt runtime.
fn mlp_deployment(endpoint: &str, replicas: u32) -> Deployment {
    let model = root().join("tests/models/mlp.onnx").display().to_string();
    render(
        &input(endpoint, ModelContainerSpec::default(), Some(model), machine("e2-micro"), replicas),
        &RenderConfig::default(),
    )
    .deployment
}

/// A Deployment running `command` as a host process (an admin's `hostProcess`).
fn command_deployment(endpoint: &str, command: &[&str], m: MachineType, replicas: u32) -> Deployment {
    let spec = ModelContainerSpec {
        image_uri: "busybox:1.36".into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        host_process: true,
        ..Default::default()
    };
    render(&input(endpoint, spec, None, m, replicas), &RenderConfig::default()).deployment
}

fn name_of(d: &Deployment) -> String {
    d.metadata.name.clone().expect("name")
}

fn container_mut(d: &mut Deployment) -> &mut Container {
    &mut d.spec.as_mut().and_then(|s| s.template.spec.as_mut()).expect("pod spec").containers[0]
}

/// A directory that any user may read and write (host processes run as users of their own),
/// outside the data directory (which no replica may read), holding `name` with `text`.
fn shared_script(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, path)
}

/// Polls `check` every 50 ms until it gives a value; panics with `what` after `timeout`.
async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if tokio::time::Instant::now() >= deadline => {
                panic!("timed out waiting for {what}: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn status(local: &Local, name: &str) -> DeploymentStatus {
    local.status(name).await.expect("status")
}

/// Waits until the deployment has exactly `n` replicas, all ready and of the current template.
async fn wait_settled(local: &Local, name: &str, n: usize) -> DeploymentStatus {
    wait_for(&format!("{n} ready replicas of {name}"), STARTUP, || async {
        let s = status(local, name).await;
        if s.replicas.len() == n && s.is_settled() { Ok(s) } else { Err(format!("{s:#?}")) }
    })
    .await
}

async fn post(addr: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .json(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {addr}{path}: {e}"));
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

fn assert_close(actual: &Value, expected: &Value) {
    match (actual, expected) {
        (Value::Array(a), Value::Array(e)) => {
            assert_eq!(a.len(), e.len(), "{actual} vs {expected}");
            a.iter().zip(e).for_each(|(a, e)| assert_close(a, e));
        }
        (a, e) => {
            let (a, e) = (a.as_f64().expect("number"), e.as_f64().expect("number"));
            assert!((a - e).abs() <= TOLERANCE, "{a} vs {e}");
        }
    }
}

async fn predict_mlp(addr: SocketAddr, endpoint: &str) {
    let reference = reference("mlp");
    let route = format!("/v1/endpoints/{endpoint}/deployedModels/1:predict");
    let (code, body) = post(addr, &route, &json!({"instances": reference["vertex"]["instances"]})).await;
    assert_eq!(code, 200, "{body}");
    assert_close(&body["predictions"], &reference["vertex"]["predictions"]);
}

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

fn kill9(pid: u32) {
    // SAFETY: plain kill(2).
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0, "kill -9 {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_replicas_serve_predictions_and_come_back_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let local = Local::new(config(dir.path())).await.unwrap();
    let deployment = mlp_deployment("mlp", 2);
    let name = name_of(&deployment);
    let warnings = local.apply(&deployment).await.unwrap();
    assert!(warnings.iter().any(|w| w.contains("securityContext")), "{warnings:?}");

    let s = wait_settled(&local, &name, 2).await;
    let addrs: BTreeSet<SocketAddr> = s.replicas.iter().map(|r| r.address).collect();
    assert_eq!(addrs.len(), 2, "each replica has its own port");
    for r in &s.replicas {
        assert_eq!(r.state, ReplicaState::Ready);
        predict_mlp(r.address, "mlp").await;
        assert!(local.log_path(&name, &r.id).exists());
        assert!(replica_dir(dir.path(), &name).join(format!("{}.pid", r.id)).exists());
    }

    // kill -9 one replica: it is restarted on the same address and becomes ready again.
    let victim = s.replicas[0].clone();
    let pid = local.pid(&name, &victim.id).expect("pid");
    kill9(pid);
    let back = wait_for("the killed replica to be restarted and ready", STARTUP, || async {
        let s = status(&local, &name).await;
        let r = s.replicas.iter().find(|r| r.id == victim.id).cloned().ok_or("replica gone")?;
        let new_pid = local.pid(&name, &r.id);
        if r.ready && r.restarts >= 1 && new_pid.is_some_and(|p| p != pid) {
            Ok(r)
        } else {
            Err(format!("{r:?}"))
        }
    })
    .await;
    assert_eq!(back.address, victim.address);
    assert!(back.last_error.as_deref().unwrap_or("").contains("signal 9"), "{back:?}");
    predict_mlp(back.address, "mlp").await;

    let pids: Vec<u32> = s.replicas.iter().filter_map(|r| local.pid(&name, &r.id)).collect();
    local.delete(&name).await.unwrap();
    assert!(matches!(local.status(&name).await, Err(BackendError::NotFound(_))));
    assert!(pids.iter().all(|p| !alive(*p)), "replicas are gone after delete");
    assert!(!replica_dir(dir.path(), &name).exists());
    assert!(local.list().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_and_a_changed_template_replace_replicas_without_downtime() {
    let dir = tempfile::tempdir().unwrap();
    let drains = Arc::new(Drains::default());
    let mut cfg = config(dir.path());
    cfg.drain = Some(Drainer(drains.clone()));
    let local = Local::new(cfg).await.unwrap();
    let mut deployment = mlp_deployment("scale", 2);
    let name = name_of(&deployment);
    local.apply(&deployment).await.unwrap();
    let two = wait_settled(&local, &name, 2).await;
    assert_eq!(local.list().await.unwrap(), vec![name.clone()]);

    local.scale(&name, 1).await.unwrap();
    let one = wait_settled(&local, &name, 1).await;
    assert_eq!(one.desired, 1);
    // The replica that went was drained first, while it still served (before SIGTERM).
    let gone: Vec<SocketAddr> =
        two.ready_addresses().into_iter().filter(|a| !one.ready_addresses().contains(a)).collect();
    let drained = wait_for("the drain", Duration::from_secs(20), || async {
        let d = drains.0.lock().unwrap().clone();
        if d.is_empty() { Err("none yet".to_string()) } else { Ok(d) }
    })
    .await;
    assert_eq!(drained, vec![(gone[0], true)]);
    local.scale(&name, 3).await.unwrap();
    let three = wait_settled(&local, &name, 3).await;
    assert_eq!(local.allocated(), Resources { cpu_millis: 750, memory_bytes: 3 << 30 });

    // A new env value is a new pod template: every replica is replaced, and while that happens
    // there is always a ready replica (maxUnavailable 0).
    let before: BTreeSet<String> = three.replicas.iter().map(|r| r.id.clone()).collect();
    let before_pids: Vec<u32> = three.replicas.iter().filter_map(|r| local.pid(&name, &r.id)).collect();
    container_mut(&mut deployment).env.get_or_insert_default().push(K8sEnvVar {
        name: "FEATURE_FLAG".into(),
        value: Some("on".into()),
        value_from: None,
    });
    deployment.spec.as_mut().unwrap().replicas = Some(2);
    local.apply(&deployment).await.unwrap();
    let replaced = wait_for("the replicas to be replaced", STARTUP, || async {
        let s = status(&local, &name).await;
        assert!(!s.ready_addresses().is_empty(), "no ready replica during the replacement: {s:#?}");
        let fresh = s.replicas.iter().all(|r| !before.contains(&r.id));
        if fresh && s.replicas.len() == 2 && s.is_settled() { Ok(s) } else { Err(format!("{s:#?}")) }
    })
    .await;
    wait_for("the old processes to exit", Duration::from_secs(20), || async {
        if before_pids.iter().any(|p| alive(*p)) { Err(format!("{before_pids:?}")) } else { Ok(()) }
    })
    .await;
    for r in &replaced.replicas {
        predict_mlp(r.address, "scale").await;
        let environ = std::fs::read(format!("/proc/{}/environ", local.pid(&name, &r.id).unwrap())).unwrap();
        assert!(environ.split(|b| *b == 0).any(|kv| kv == b"FEATURE_FLAG=on"));
    }

    // The same template again changes nothing.
    local.apply(&deployment).await.unwrap();
    let again = status(&local, &name).await;
    assert_eq!(
        again.replicas.iter().map(|r| &r.id).collect::<Vec<_>>(),
        replaced.replicas.iter().map(|r| &r.id).collect::<Vec<_>>()
    );
    local.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_that_do_not_fit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.capacity = Some(Resources { cpu_millis: 2000, memory_bytes: 8 << 30 });
    let local = Local::new(cfg).await.unwrap();
    assert_eq!(local.capacity(), Resources { cpu_millis: 2000, memory_bytes: 8 << 30 });

    let a = command_deployment("a", &["sleep", "300"], machine("e2-medium"), 1);
    local.apply(&a).await.unwrap();
    let b = command_deployment("b", &["sleep", "300"], machine("n1-standard-2"), 1);
    match local.apply(&b).await {
        Err(BackendError::Insufficient { needed, available }) => {
            assert_eq!(needed, Resources { cpu_millis: 2000, memory_bytes: 7680 << 20 });
            assert_eq!(available, Resources { cpu_millis: 1000, memory_bytes: 4 << 30 });
        }
        other => panic!("expected Insufficient, got {other:?}"),
    }
    let err = local.apply(&b).await.unwrap_err().to_string();
    assert!(err.contains("not enough capacity") && err.contains("2 vCPU"), "{err}");
    assert!(matches!(local.scale(&name_of(&a), 3).await, Err(BackendError::Insufficient { .. })));
    assert_eq!(status(&local, &name_of(&a)).await.desired, 1);
    assert_eq!(local.list().await.unwrap(), vec![name_of(&a)]);

    // Once `a` is gone, `b` fits.
    local.delete(&name_of(&a)).await.unwrap();
    local.apply(&b).await.unwrap();
    local.shutdown().await;
    drop(local);

    // The machine's own capacity (nproc, /proc/meminfo) refuses an absurd machine type.
    let local = Local::new(config(dir.path())).await.unwrap();
    let huge = MachineType {
        name: "huge".into(),
        cpu_millis: 1_000_000,
        memory_bytes: 1 << 50,
        ..machine("e2-micro")
    };
    let c = command_deployment("c", &["sleep", "300"], huge, 1);
    assert!(matches!(local.apply(&c).await, Err(BackendError::Insufficient { .. })));
}

const PYTHON_SERVER: &str = r#"
import http.server, json, os, sys

class Handler(http.server.BaseHTTPRequestHandler):
    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == os.environ["AIP_HEALTH_ROUTE"]:
            sick = os.path.exists(os.environ.get("SICK_FILE", "/nonexistent"))
            self.reply(503 if sick else 200, {"status": "sick" if sick else "ok"})
        else:
            self.reply(404, {"error": self.path})

    def do_POST(self):
        if self.path != os.environ["AIP_PREDICT_ROUTE"]:
            return self.reply(404, {"error": self.path})
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.reply(200, {
            "predictions": [sum(x) for x in body["instances"]],
            "greeting": os.environ.get("GREETING"),
            "argv": sys.argv[1:],
            "port": os.environ["AIP_HTTP_PORT"],
        })

    def log_message(self, *args):
        pass

print("serving on", os.environ["AIP_HTTP_PORT"], flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["AIP_HTTP_PORT"])), Handler).serve_forever()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admins_host_process_serves_with_the_vertex_contract() {
    let dir = tempfile::tempdir().unwrap();
    let (shared, script) = shared_script("server.py", PYTHON_SERVER);
    let sick = shared.path().join("sick");
    let local = Local::new(config(dir.path())).await.unwrap();
    let spec = ModelContainerSpec {
        image_uri: "python:3.12-slim".into(),
        command: vec!["python3".into(), script.display().to_string()],
        args: vec!["--name".into(), "$(AIP_DEPLOYED_MODEL_ID)".into(), "$$(AIP_DEPLOYED_MODEL_ID)".into()],
        env: vec![
            env("GREETING", "hello from $(AIP_ENDPOINT_ID)"),
            env("SICK_FILE", &sick.display().to_string()),
        ],
        predict_route: "/predict".into(),
        health_route: "/health".into(),
        host_process: true,
        ..Default::default()
    };
    let deployment =
        render(&input("py", spec, None, machine("e2-micro"), 1), &RenderConfig::default()).deployment;
    let name = name_of(&deployment);
    local.apply(&deployment).await.unwrap();
    let s = wait_settled(&local, &name, 1).await;
    let addr = s.replicas[0].address;
    let (code, body) = post(addr, "/predict", &json!({"instances": [[1, 2], [3, 4.5]]})).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["predictions"], json!([3, 7.5]));
    assert_eq!(body["greeting"], "hello from py");
    assert_eq!(body["argv"], json!(["--name", "1", "$(AIP_DEPLOYED_MODEL_ID)"]));
    assert_eq!(body["port"], addr.port().to_string());
    let log = std::fs::read_to_string(local.log_path(&name, &s.replicas[0].id)).unwrap();
    assert!(log.contains(&format!("serving on {}", addr.port())), "{log}");

    // Failing health checks take the replica out of routing without restarting it; it rejoins
    // on the next 200 (the Vertex contract).
    std::fs::write(&sick, "").unwrap();
    let sick_replica = wait_for("the replica to be unready", Duration::from_secs(30), || async {
        let r = status(&local, &name).await.replicas[0].clone();
        if r.state == ReplicaState::Unready { Ok(r) } else { Err(format!("{r:?}")) }
    })
    .await;
    assert!(!sick_replica.ready && sick_replica.restarts == 0, "{sick_replica:?}");
    assert!(sick_replica.last_error.as_deref().unwrap_or("").contains("HTTP 503"), "{sick_replica:?}");
    std::fs::remove_file(&sick).unwrap();
    let healthy = wait_settled(&local, &name, 1).await;
    assert_eq!((healthy.replicas[0].restarts, healthy.replicas[0].address), (0, addr));
    local.shutdown().await;
    assert!(local.list().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_command_is_reported_as_crash_loop_with_its_last_output() {
    let dir = tempfile::tempdir().unwrap();
    let local = Local::new(config(dir.path())).await.unwrap();
    let script = "echo starting up; echo 'fatal: cannot open /models/missing.onnx' >&2; exit 3";
    let deployment = command_deployment("crash", &["sh", "-c", script], machine("e2-micro"), 1);
    let name = name_of(&deployment);
    local.apply(&deployment).await.unwrap();
    let r = wait_for("a crash loop", Duration::from_secs(60), || async {
        let s = status(&local, &name).await;
        let r = s.replicas[0].clone();
        if r.state == ReplicaState::CrashLoop && r.restarts >= 2 { Ok(r) } else { Err(format!("{r:?}")) }
    })
    .await;
    assert!(!r.ready);
    let err = r.last_error.unwrap_or_default();
    assert!(err.contains("status 3") && err.contains("fatal: cannot open /models/missing.onnx"), "{err}");
    local.delete(&name).await.unwrap();

    // `disableContainerLogging`: the same output is not kept, in the log or in the crash message.
    let spec = ModelContainerSpec {
        image_uri: "busybox:1.36".into(),
        command: vec!["sh".into(), "-c".into(), script.into()],
        host_process: true,
        ..Default::default()
    };
    let mut quiet = input("quiet", spec, None, machine("e2-micro"), 1);
    quiet.disable_container_logging = true;
    let deployment = render(&quiet, &RenderConfig::default()).deployment;
    let name = name_of(&deployment);
    local.apply(&deployment).await.unwrap();
    let r = wait_for("a crash loop", Duration::from_secs(60), || async {
        let r = status(&local, &name).await.replicas[0].clone();
        if r.state == ReplicaState::CrashLoop && r.restarts >= 2 { Ok(r) } else { Err(format!("{r:?}")) }
    })
    .await;
    let err = r.last_error.unwrap_or_default();
    assert!(err.contains("status 3") && !err.contains("missing.onnx"), "{err}");
    let log = std::fs::read_to_string(local.log_path(&name, &r.id)).unwrap();
    let streams: BTreeSet<&str> = log.lines().filter_map(|l| l.split(' ').nth(1)).collect();
    assert!(log.contains("disableContainerLogging") && streams == BTreeSet::from(["platform"]), "{log}");
    local.delete(&name).await.unwrap();
}

#[tokio::test]
async fn an_image_without_an_engine_is_refused_with_what_to_install() {
    let dir = tempfile::tempdir().unwrap();
    // A docker CLI whose daemon does not answer: the CLI alone does not count.
    let fake = dir.path().join("docker");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &fake,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .unwrap();
    let mut cfg = config(dir.path());
    cfg.container_engines = vec![fake.display().to_string(), "/nonexistent/podman".into()];
    let local = Local::new(cfg).await.unwrap();
    // Even with a command that could run on this machine: only an admin's hostProcess does.
    let spec = ModelContainerSpec {
        image_uri: "registry.example/server:1".into(),
        command: vec!["python3".into(), "-m".into(), "http.server".into()],
        ..Default::default()
    };
    let deployment =
        render(&input("img", spec, None, machine("e2-micro"), 1), &RenderConfig::default()).deployment;
    let err = local.apply(&deployment).await.unwrap_err().to_string();
    assert!(err.contains("runs in a container engine") && err.contains("apt-get install podman"), "{err}");
    assert!(
        err.contains("Cannot connect to the Docker daemon") && err.contains("podman: not installed"),
        "{err}"
    );
    assert!(local.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn fields_the_local_backend_cannot_honour_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let local = Local::new(config(dir.path())).await.unwrap();
    let mut deployment = mlp_deployment("warn", 0);
    let pod = deployment.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
    pod.volumes = Some(vec![Volume { name: "data".into(), ..Default::default() }]);
    pod.node_selector = Some([("gpu".to_string(), "yes".to_string())].into());
    pod.tolerations = Some(vec![Toleration { key: Some("gpu".into()), ..Default::default() }]);
    let sidecar = Container { name: "sidecar".into(), image: Some("envoy".into()), ..Default::default() };
    pod.containers.push(sidecar);
    let warnings = local.apply(&deployment).await.unwrap();
    let all = warnings.join("\n");
    for word in ["volumes", "nodeSelector", "tolerations", "sidecar", "securityContext"] {
        assert!(all.contains(word), "{word} missing from {all}");
    }
    assert!(status(&local, &name_of(&deployment)).await.replicas.is_empty());
    let mut bad = deployment.clone();
    bad.metadata.name = Some("../escape".into());
    assert!(matches!(local.apply(&bad).await, Err(BackendError::Invalid(_))));
}

/// Run in a child process by the test below: starts a backend with one replica whose shell
/// leaves a grandchild behind, then waits to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper process of orphans_of_a_killed_platform_are_killed_by_the_next_start"]
async fn orphan_helper() {
    let Some(dir) = std::env::var_os("ORPHAN_HELPER_DIR").map(PathBuf::from) else { return };
    let mut cfg = config(&dir);
    cfg.die_with_parent = std::env::var("ORPHAN_HELPER_DIE_WITH_PARENT").as_deref() != Ok("0");
    let local = Local::new(cfg).await.unwrap();
    let script = "sleep 600 & exec sleep 600";
    let deployment = command_deployment("orphans", &["sh", "-c", script], machine("e2-micro"), 1);
    local.apply(&deployment).await.unwrap();
    std::future::pending::<()>().await;
}

async fn orphans_case(die_with_parent: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["orphan_helper", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env("ORPHAN_HELPER_DIR", dir.path())
        .env("ORPHAN_HELPER_DIE_WITH_PARENT", if die_with_parent { "1" } else { "0" })
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let replicas = replica_dir(dir.path(), "ep-orphans-dm-1");
    let (leader, grandchild) = wait_for("the helper's replica", STARTUP, || async {
        let pid_file = std::fs::read_dir(&replicas)
            .map_err(|e| e.to_string())?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "pid"))
            .ok_or("no pid file yet")?;
        let record: Value = serde_json::from_slice(&std::fs::read(&pid_file).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        let leader = record["pid"].as_u64().ok_or("no pid")? as u32;
        // The shell's background `sleep`: the leader's child.
        let gc = procfs::process::all_processes()
            .map_err(|e| e.to_string())?
            .filter_map(|p| p.ok()?.stat().ok())
            .find(|s| s.ppid == leader as i32)
            .ok_or("no grandchild yet")?;
        Ok((leader, gc.pid as u32))
    })
    .await;
    assert!(alive(leader) && alive(grandchild));

    // The platform dies without any chance to clean up.
    helper.kill().unwrap();
    helper.wait().unwrap();
    if die_with_parent {
        wait_for("the replica to die with the platform", Duration::from_secs(20), || async {
            if alive(leader) { Err("still alive".to_string()) } else { Ok(()) }
        })
        .await;
    } else {
        assert!(alive(leader), "without PDEATHSIG the replica outlives the platform");
    }
    // What PDEATHSIG cannot reach: the replica's own children.
    assert!(alive(grandchild), "the grandchild is an orphan now");

    let local = Local::new(config(dir.path())).await.unwrap();
    // One platform per data directory.
    let second = Local::new(config(dir.path())).await.err().expect("a second backend on the same data dir");
    assert!(second.to_string().contains("in use by another platform process"), "{second}");
    wait_for("the orphans to be killed", Duration::from_secs(20), || async {
        if alive(leader) || alive(grandchild) {
            Err(format!("leader {leader}, grandchild {grandchild}"))
        } else {
            Ok(())
        }
    })
    .await;
    let leftover = std::fs::read_dir(&replicas)
        .unwrap()
        .flatten()
        .any(|e| e.path().extension().is_some_and(|x| x == "pid"));
    assert!(!leftover, "pid files are cleaned up");
    assert!(local.list().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_of_a_killed_platform_are_killed_by_the_next_start() {
    orphans_case(true).await;
    orphans_case(false).await;
}

/// What a host process sees of this machine, printed as one JSON line: its user, whether it can
/// read a file of the data directory, its environment, and its cgroup limits.
const PROBE_SCRIPT: &str = r#"
import json, os, sys, time
def limits():
    out = {}
    for line in open("/proc/self/cgroup"):
        _, controllers, path = line.strip().split(":", 2)
        for name, files in [("cpu", ["cpu.cfs_quota_us"]), ("memory", ["memory.limit_in_bytes"]), ("", ["cpu.max", "memory.max"])]:
            if name and name not in controllers.split(","):
                continue
            if not name and controllers:
                continue
            for mount in ["/sys/fs/cgroup/" + name, "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup"]:
                for f in files:
                    p = mount.rstrip("/") + path + "/" + f
                    if os.path.exists(p):
                        out.setdefault(f, open(p).read().strip())
    return out
try:
    open(sys.argv[1]).read()
    key = "readable"
except OSError as e:
    key = type(e).__name__
print(json.dumps({"uid": os.getuid(), "key": key, "env": sorted(os.environ), "home": os.environ.get("HOME"), "limits": limits()}), flush=True)
time.sleep(600)
"#;

/// Waits for the first JSON line a replica printed.
async fn printed(local: &Local, name: &str) -> Value {
    wait_for("the replica's report", STARTUP, || async {
        let s = status(local, name).await;
        let r = s.replicas.first().ok_or("no replica")?;
        let log = std::fs::read_to_string(local.log_path(name, &r.id)).map_err(|e| e.to_string())?;
        log.lines()
            .filter_map(|l| l.split_once(" stdout ").map(|(_, text)| text))
            .find_map(|text| serde_json::from_str::<Value>(text).ok())
            .ok_or_else(|| format!("{r:?}\n{log}"))
    })
    .await
}

/// Issue 16: a host process runs as a user of its own (the platform runs as root here), cannot
/// read the data directory (its `jwt.key`), gets a cleared environment and its machine type's
/// CPU and memory limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_processes_are_confined() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("jwt.key");
    std::fs::write(&key, "secret").unwrap();
    let (_shared, script) = shared_script("probe.py", PROBE_SCRIPT);
    let local = Local::new(config(dir.path())).await.unwrap();
    let script = script.display().to_string();
    let key_path = key.display().to_string();
    let deployment = command_deployment("confined", &["python3", &script, &key_path], machine("e2-micro"), 1);
    let name = name_of(&deployment);
    let warnings = local.apply(&deployment).await.unwrap();
    assert!(warnings.is_empty(), "this host enforces everything: {warnings:?}");
    let report = printed(&local, &name).await;

    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let uid = report["uid"].as_u64().unwrap();
        assert!((61_184..=65_519).contains(&uid), "a user of its own, not root: {report}");
    }
    assert_eq!(report["key"], "PermissionError", "the data directory is out of reach: {report}");
    let env: BTreeSet<&str> = report["env"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    let foreign: Vec<&&str> = env
        .iter()
        .filter(|k| {
            !k.starts_with("AIP_") && !["PATH", "LANG", "HOME", "TMPDIR", "PORT", "LC_CTYPE"].contains(k)
        })
        .collect();
    assert!(foreign.is_empty(), "nothing of the platform's environment: {foreign:?}");
    let home = report["home"].as_str().unwrap();
    assert!(home.contains("platform-replicas-"), "HOME is the replica's scratch directory: {home}");
    // e2-micro: a quarter of a CPU and 1 GiB.
    let limits = &report["limits"];
    let cpu = limits["cpu.cfs_quota_us"].as_str().or(limits["cpu.max"].as_str()).unwrap_or_default();
    assert!(cpu.starts_with("25000"), "{limits}");
    let memory =
        limits["memory.limit_in_bytes"].as_str().or(limits["memory.max"].as_str()).unwrap_or_default();
    assert_eq!(memory, (1u64 << 30).to_string(), "{limits}");
    local.shutdown().await;
}

/// Issue 16: the prebuilt runtime's replicas cannot read the data directory either (a stand-in
/// runtime executable reports what it can read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_replicas_cannot_read_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("jwt.key");
    std::fs::write(&key, "secret").unwrap();
    let (_shared, exe) = shared_script(
        "runtime.sh",
        "#!/bin/sh\nif cat \"$KEY_FILE\" >/dev/null 2>&1; then k=readable; else k=denied; fi\n\
         if kill -0 \"$PLATFORM_PID\" 2>/dev/null; then s=yes; else s=no; fi\n\
         c=$(grep CapEff /proc/self/status | cut -f2)\n\
         echo \"{\\\"key\\\": \\\"$k\\\", \\\"home\\\": \\\"$HOME\\\", \\\"signal\\\": \\\"$s\\\", \\\"caps\\\": \\\"$c\\\"}\"\nexec sleep 600\n",
    );
    let mut cfg = config(dir.path());
    cfg.runtime_exe = Some(exe);
    let local = Local::new(cfg).await.unwrap();
    let mut deployment = mlp_deployment("rt", 1);
    for (name, value) in
        [("KEY_FILE", key.display().to_string()), ("PLATFORM_PID", std::process::id().to_string())]
    {
        container_mut(&mut deployment).env.get_or_insert_default().push(K8sEnvVar {
            name: name.into(),
            value: Some(value),
            value_from: None,
        });
    }
    let name = name_of(&deployment);
    local.apply(&deployment).await.unwrap();
    let report = printed(&local, &name).await;
    assert_eq!(report["key"], "denied", "{report}");
    // Whatever its user, it holds no capabilities and cannot signal the platform.
    assert_eq!(report["caps"], "0000000000000000", "{report}");
    assert_eq!(report["signal"], "no", "{report}");
    assert!(report["home"].as_str().unwrap().contains("platform-replicas-"), "{report}");
    local.shutdown().await;

    // Nor can a deployment point its artifact there.
    let mut edited = mlp_deployment("rt2", 1);
    for var in container_mut(&mut edited).env.get_or_insert_default() {
        if var.name == "AIP_STORAGE_URI" {
            var.value = Some(format!("file://{}", key.display()));
        }
    }
    let err = local.apply(&edited).await.unwrap_err().to_string();
    assert!(err.contains("private files"), "{err}");
}

/// Host processes are an admin's explicit choice, allowed by the platform's flag; never the
/// fallback for a missing engine.
#[tokio::test]
async fn host_processes_need_the_platforms_permission() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.allow_host_processes = false;
    let local = Local::new(cfg).await.unwrap();
    let deployment = command_deployment("nope", &["sleep", "300"], machine("e2-micro"), 1);
    let err = local.apply(&deployment).await.unwrap_err().to_string();
    assert!(err.contains("--allow-host-processes"), "{err}");
    assert!(local.list().await.unwrap().is_empty());
}

/// The environment of a running process.
fn environ(pid: u32) -> BTreeSet<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    raw.split(|b| *b == 0).map(|kv| String::from_utf8_lossy(kv).into_owned()).collect()
}

/// Waits until the first replica of `name` runs; its pid.
async fn running_pid(local: &Local, name: &str) -> u32 {
    wait_for("a running replica", STARTUP, || async {
        let s = status(local, name).await;
        let r = s.replicas.first().ok_or("no replica")?;
        local.pid(name, &r.id).ok_or_else(|| format!("{r:?}"))
    })
    .await
}

/// Issue 12: this machine's GPUs (a stand-in `nvidia-smi` printing what a one-H100 host
/// printed) are capacity, each replica gets its own, and deploys that need more say how many are
/// free; a machine without GPUs refuses accelerator machine types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpus_are_counted_handed_out_and_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let uuid = "GPU-7565b928-733a-7475-e1cc-26b2cb967075";
    let (_shared, smi) =
        shared_script("nvidia-smi", &format!("#!/bin/sh\necho '0, {uuid}, NVIDIA H100 80GB HBM3, 81559'\n"));
    let mut cfg = config(dir.path());
    cfg.nvidia_smi = smi;
    cfg.capacity = Some(Resources { cpu_millis: 200_000, memory_bytes: 1 << 40 });
    let local = Local::new(cfg).await.unwrap();
    assert_eq!(local.gpus().iter().map(|g| g.uuid.as_str()).collect::<Vec<_>>(), [uuid]);

    let h100 = command_deployment("gpu-a", &["sleep", "300"], machine("a3-highgpu-1g"), 1);
    let warnings = local.apply(&h100).await.unwrap();
    assert!(!warnings.iter().any(|w| w.contains("asks for")), "an H100 for an H100 type: {warnings:?}");
    let pid = running_pid(&local, &name_of(&h100)).await;
    assert!(environ(pid).contains(&format!("CUDA_VISIBLE_DEVICES={uuid}")), "{:?}", environ(pid));
    // A replica without GPUs sees none of them.
    let cpu = command_deployment("cpu", &["sleep", "300"], machine("e2-micro"), 1);
    local.apply(&cpu).await.unwrap();
    assert!(environ(running_pid(&local, &name_of(&cpu)).await).contains("CUDA_VISIBLE_DEVICES="));

    let l4 = command_deployment("gpu-b", &["sleep", "300"], machine("g2-standard-4"), 1);
    let err = local.apply(&l4).await.unwrap_err();
    assert!(matches!(err, BackendError::Gpus(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the deployment needs 1 GPU(s) (NVIDIA_L4); 0 of this machine's 1 GPU(s) are free"
    );
    local.delete(&name_of(&h100)).await.unwrap();
    let warnings = local.apply(&l4).await.unwrap();
    assert!(
        warnings.iter().any(|w| w.contains("asks for NVIDIA_L4") && w.contains("NVIDIA H100 80GB HBM3")),
        "{warnings:?}"
    );
    local.shutdown().await;
    drop(local);

    // No GPUs at all.
    let mut cfg = config(dir.path());
    cfg.capacity = Some(Resources { cpu_millis: 200_000, memory_bytes: 1 << 40 });
    let local = Local::new(cfg).await.unwrap();
    let err = local.apply(&l4).await.unwrap_err().to_string();
    assert!(err.contains("this machine has none") && err.contains("/nonexistent/nvidia-smi"), "{err}");
}
