//! Container models with a real engine (Podman, which `scripts/test` installs): images built on
//! this machine without a registry (`deploy/build-local-image`), deployed through `platform
//! serve` on the local backend and called through `:predict`; clear deploy errors for what goes
//! wrong; logs; CPU autoscaling; containers that go with the platform.

mod common;

use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{LOC, Platform, model_path, reference, root, start};
use serde_json::{Value, json};

const RUNTIME_IMAGE: &str = "localhost/platform-test-runtime:dev";
const CUSTOM_IMAGE: &str = "localhost/platform-test-custom:dev";

/// Builds the two images once per run of this file: the prebuilt runtime from the `platform`
/// binary (`platform runtime`), and tests/apps/custom_server.py with this machine's Python.
fn images() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let script = root().join("deploy/build-local-image");
        let platform = env!("CARGO_BIN_EXE_platform");
        let app = root().join("tests/apps/custom_server.py");
        let app = app.to_str().expect("path");
        for args in [
            vec!["--engine", "podman", "--tag", RUNTIME_IMAGE, "--binary", platform, "--arg", "runtime"],
            vec![
                "--engine",
                "podman",
                "--tag",
                CUSTOM_IMAGE,
                "--python-app",
                app,
                "--arg",
                "--host",
                "--arg",
                "0.0.0.0",
            ],
        ] {
            let out = Command::new(&script).args(&args).output().unwrap_or_else(|e| {
                panic!("cannot run {}: {e}; scripts/test installs podman", script.display())
            });
            assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
    });
}

async fn platform(dir: &std::path::Path) -> Platform {
    images();
    start(&dir.join("data"), &["--container-engine", "podman", "--cpu-overcommit", "8"], &[]).await
}

fn upload(id: &str, spec: Value, artifact: Option<&str>) -> Value {
    let mut model = json!({"displayName": id, "containerSpec": spec});
    if let Some(uri) = artifact {
        model["artifactUri"] = json!(uri);
    }
    json!({"modelId": id, "model": model})
}

/// Creates endpoint `id` and deploys model `model` on it; the finished operation.
async fn deploy(p: &Platform, id: &str, model: &str, resources: Value) -> Value {
    p.expect(200, "POST", &format!("{LOC}/endpoints?endpointId={id}"), Some(json!({"displayName": id})))
        .await;
    let body = json!({"deployedModel": {"model": model, "dedicatedResources": resources}});
    let op = p.expect(200, "POST", &format!("{LOC}/endpoints/{id}:deployModel"), Some(body)).await;
    p.wait(&op).await
}

fn small() -> Value {
    json!({"machineSpec": {"machineType": "e2-small"}, "minReplicaCount": 1})
}

/// Log lines of an endpoint through the API.
async fn logs(p: &Platform, endpoint: &str) -> Vec<Value> {
    let resp = p
        .http
        .get(p.url(&format!("{LOC}/endpoints/{endpoint}/logs?tail=50")))
        .bearer_auth(&p.token)
        .send()
        .await
        .expect("logs");
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("body");
    text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

fn containers(filter: &str) -> Vec<String> {
    let out = Command::new("podman")
        .args(["ps", "-a", "--filter", "label=platform.local/replica", "--format", "{{.Names}}"])
        .output()
        .expect("podman ps");
    String::from_utf8_lossy(&out.stdout).lines().filter(|n| n.contains(filter)).map(String::from).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_and_custom_images_serve_predictions_with_their_artifact_inside() {
    let dir = tempfile::tempdir().expect("dir");
    let p = platform(dir.path()).await;
    let artifact = p.upload_artifact(&model_path("mlp")).await;
    let uri = artifact["artifactUri"].as_str().expect("uri").to_string();
    assert!(uri.starts_with("file://"), "an artifact on the platform's disk: {uri}");

    // The prebuilt runtime as an image: it reads the uploaded artifact where it is mounted.
    let runtime = upload("runtime", json!({"imageUri": RUNTIME_IMAGE}), Some(&uri));
    p.expect(200, "POST", &format!("{LOC}/models:upload"), Some(runtime)).await;
    let custom = upload(
        "custom",
        json!({"imageUri": CUSTOM_IMAGE, "args": ["--host", "0.0.0.0"], "predictRoute": "/score", "healthRoute": "/ping"}),
        Some(&uri),
    );
    p.expect(200, "POST", &format!("{LOC}/models:upload"), Some(custom)).await;
    let (a, b) = tokio::join!(deploy(&p, "rt", "runtime", small()), deploy(&p, "cu", "custom", small()));
    assert!(a["error"].is_null(), "{a}");
    assert!(b["error"].is_null(), "{b}");

    let mlp = reference("mlp");
    let answer = p
        .expect(
            200,
            "POST",
            &format!("{LOC}/endpoints/rt:predict"),
            Some(json!({"instances": mlp["vertex"]["instances"]})),
        )
        .await;
    let (got, want) = (&answer["predictions"], &mlp["vertex"]["predictions"]);
    assert_eq!(got.as_array().map(Vec::len), want.as_array().map(Vec::len), "{answer}");
    let answer = p
        .expect(200, "POST", &format!("{LOC}/endpoints/cu:predict"), Some(json!({"instances": [[1, 2]]})))
        .await;
    assert_eq!(answer["predictions"], json!([{"sum": 3, "by": "custom"}]));

    // What the container printed, through the logs API: its artifact is inside, read-only.
    let lines = logs(&p, "cu").await;
    let texts: Vec<&str> = lines.iter().filter_map(|l| l["text"].as_str()).collect();
    assert!(texts.iter().any(|t| t.contains("listening on 0.0.0.0:8080")), "{texts:?}");
    assert!(texts.contains(&"custom_server: artifact file:///mnt/models/model.onnx readable"), "{texts:?}");
    assert!(texts.contains(&"custom_server: predicted 1 instances"), "{texts:?}");
    assert!(
        lines
            .iter()
            .any(|l| l["stream"] == "platform" && l["text"].as_str().unwrap_or("").contains("start #1"))
    );
    assert!(lines.iter().all(|l| l["deployedModelId"].is_string() && l["time"].as_str().is_some_and(|t| t.ends_with('Z'))));

    // Following: a new line arrives while the request is open.
    let mut follow = p
        .http
        .get(p.url(&format!("{LOC}/endpoints/cu/logs?tail=0&follow=true")))
        .bearer_auth(&p.token)
        .send()
        .await
        .expect("follow");
    p.expect(
        200,
        "POST",
        &format!("{LOC}/endpoints/cu:predict"),
        Some(json!({"instances": [[1], [2], [3]]})),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = String::new();
    while !seen.contains("predicted 3 instances") {
        assert!(Instant::now() < deadline, "followed lines: {seen}");
        if let Ok(Ok(Some(chunk))) = tokio::time::timeout(Duration::from_secs(5), follow.chunk()).await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_containers_give_clear_deploy_errors_with_their_own_output() {
    let dir = tempfile::tempdir().expect("dir");
    let p = platform(dir.path()).await;
    let spec = |image: &str, args: &[&str]| json!({"imageUri": image, "args": args, "predictRoute": "/score", "healthRoute": "/ping", "deploymentTimeout": "25s"});
    let cases = [
        ("crash", spec(CUSTOM_IMAGE, &["--host", "0.0.0.0", "--fail"])),
        ("missing", spec("localhost/platform-test-missing:never", &[])),
        ("port", spec(CUSTOM_IMAGE, &["--host", "0.0.0.0", "--port", "9999"])),
        ("sick", spec(CUSTOM_IMAGE, &["--host", "0.0.0.0", "--sick"])),
    ];
    for (id, s) in &cases {
        p.expect(200, "POST", &format!("{LOC}/models:upload"), Some(upload(id, s.clone(), None))).await;
    }
    let started = Instant::now();
    let (crash, missing, port, sick) = tokio::join!(
        deploy(&p, "crash", "crash", small()),
        deploy(&p, "missing", "missing", small()),
        deploy(&p, "port", "port", small()),
        deploy(&p, "sick", "sick", small()),
    );
    let message = |op: &Value| op["error"]["message"].as_str().unwrap_or_default().to_string();
    assert!(message(&crash).contains("exited with status 3"), "{crash}");
    assert!(message(&crash).contains("custom_server: cannot load the model (on purpose)"), "{crash}");
    // A missing image fails at once, naming it.
    assert_eq!(missing["error"]["status"], "FAILED_PRECONDITION", "{missing}");
    assert!(
        message(&missing).contains("cannot pull image `localhost/platform-test-missing:never`"),
        "{missing}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(25) || !message(&missing).contains("within"),
        "{missing}"
    );
    assert!(message(&port).contains("readiness probe failed"), "{port}");
    assert!(message(&port).contains("listening on 0.0.0.0:9999"), "the server's own output: {port}");
    assert!(message(&sick).contains("HTTP 500"), "{sick}");
    assert!(message(&sick).contains("listening on 0.0.0.0:8080"), "{sick}");
    // Failed deploys leave nothing running.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !containers("-ep-crash-").is_empty() || !containers("-ep-sick-").is_empty() {
        assert!(Instant::now() < deadline, "{:?}", containers("-ep-"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_autoscaling_measures_containers() {
    let dir = tempfile::tempdir().expect("dir");
    let p = platform(dir.path()).await;
    let model =
        upload("burner", json!({"imageUri": CUSTOM_IMAGE, "args": ["--host", "0.0.0.0", "--burn"]}), None);
    p.expect(200, "POST", &format!("{LOC}/models:upload"), Some(model)).await;
    // The busy thread is capped at the e2-micro's quarter CPU: 100% of its CPU, above 50%.
    let resources = json!({"machineSpec": {"machineType": "e2-micro"}, "minReplicaCount": 1, "maxReplicaCount": 2,
        "autoscalingMetricSpecs": [{"metricName": "aiplatform.googleapis.com/prediction/online/cpu/utilization", "target": 50}]});
    let done = deploy(&p, "burn", "burner", resources).await;
    assert!(done["error"].is_null(), "{done}");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let endpoint = p.expect(200, "GET", &format!("{LOC}/endpoints/burn"), None).await;
        let available =
            endpoint["deployedModels"][0]["status"]["availableReplicaCount"].as_i64().unwrap_or(0);
        if available == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "a busy container gets company: {endpoint}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_go_with_the_platform_and_leftovers_are_removed() {
    let dir = tempfile::tempdir().expect("dir");
    let mut p = platform(dir.path()).await;
    let model = upload("srv", json!({"imageUri": CUSTOM_IMAGE, "args": ["--host", "0.0.0.0"]}), None);
    p.expect(200, "POST", &format!("{LOC}/models:upload"), Some(model)).await;
    let done = deploy(&p, "stay", "srv", small()).await;
    assert!(done["error"].is_null(), "{done}");
    let running = containers("-ep-stay-");
    assert_eq!(running.len(), 1, "{running:?}");
    // platform-{owner}-{replica}: a container the previous run "left behind", with its label.
    let owner = running[0].trim_start_matches("platform-").split("-ep-").next().expect("owner").to_string();
    let leftover = format!("platform-{owner}-leftover");
    let status = Command::new("podman")
        .args(["run", "-d", "--name", &leftover, "--label", &format!("platform.local/data-dir={owner}")])
        .args([
            "--label",
            "platform.local/replica=leftover",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ])
        .args([CUSTOM_IMAGE, "--host", "0.0.0.0"])
        .status()
        .expect("podman run");
    assert!(status.success());

    // A platform that stops stops its containers.
    // SAFETY: plain kill(2) of our child.
    unsafe { libc::kill(p.child.id() as i32, libc::SIGTERM) };
    let _ = p.child.wait();
    assert!(containers("-ep-stay-").is_empty(), "{:?}", containers("-ep-stay-"));
    assert_eq!(containers(&leftover), std::slice::from_ref(&leftover), "not one of its replicas");

    // The next start removes what a previous run left behind, and runs the deployed model again.
    let p = start(&dir.path().join("data"), &["--container-engine", "podman", "--cpu-overcommit", "8"], &[])
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !containers(&leftover).is_empty() || containers("-ep-stay-").len() != 1 {
        assert!(Instant::now() < deadline, "{:?}", containers(&owner));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let answer = p
        .expect(200, "POST", &format!("{LOC}/endpoints/stay:predict"), Some(json!({"instances": [[2, 2]]})))
        .await;
    assert_eq!(answer["predictions"][0]["sum"], 4);
}
