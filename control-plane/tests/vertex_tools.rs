//! Vertex AI's own tools, unmodified, against the real `platform serve` on the embedded default:
//! Google's Python SDK (the GAPIC clients and the high-level API, over REST) and the gcloud CLI
//! (`gcloud ai ...`), each through the whole lifecycle: upload, deploy, predict (answers equal
//! onnxruntime's), a second version with a traffic split, undeploy, delete. The commands are
//! the ones docs/vertex-tools.md shows. A missing tool fails the test: `scripts/test` installs
//! both.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Platform, model_path, reference, root, start};
use serde_json::Value;

fn assert_close(got: &Value, want: &Value) {
    match (got.as_f64(), want.as_f64()) {
        (Some(x), Some(y)) => assert!((x - y).abs() < 1e-4, "{x} vs {y}"),
        _ => {
            let (g, w) = (got.as_array().expect("array"), want.as_array().expect("array"));
            assert_eq!(g.len(), w.len(), "{got} vs {want}");
            g.iter().zip(w).for_each(|(a, b)| assert_close(a, b));
        }
    }
}

fn text(output: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The artifact URI of the test MLP, uploaded to the platform's artifact store.
async fn upload_mlp(p: &Platform) -> String {
    p.upload_artifact(&model_path("mlp")).await["artifactUri"].as_str().expect("artifactUri").to_string()
}

/// A platform in a fresh directory, the MLP's artifact URI, and a file holding the admin token.
async fn platform_with_mlp() -> (tempfile::TempDir, Platform, String, PathBuf) {
    let dir = tempfile::tempdir().expect("dir");
    let p = start(&dir.path().join("data"), &["--cpu-overcommit", "4"], &[]).await;
    let artifact = upload_mlp(&p).await;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &p.token).expect("token file");
    (dir, p, artifact, token_file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_runs_the_whole_lifecycle() {
    let (_dir, p, artifact, token_file) = platform_with_mlp().await;

    let output = Command::new(common::python())
        .arg(root().join("tests/clients/vertex_sdk.py"))
        .arg(format!("localhost:{}", p.port))
        .arg(&token_file)
        .arg(&artifact)
        .arg(root().join("tests/models/mlp.json"))
        .env("REQUESTS_CA_BUNDLE", p.data.join("tls/ca.pem"))
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "the SDK's lifecycle failed (google-cloud-aiplatform comes from tests/requirements.txt, which \
         scripts/test installs):\n{}",
        text(&output)
    );

    // What the script saw, checked here too: onnxruntime's answers through both levels, and a
    // 50/50 split that reached both versions.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("the last line is the summary ({e}):\n{}", text(&output)));
    let want = &reference("mlp")["vertex"]["predictions"];
    assert_close(&summary["gapic_predictions"], want);
    assert_close(&summary["sdk_predictions"], want);
    assert_eq!(summary["gapic_versions_seen"], serde_json::json!(["1", "2"]));
    assert_eq!(summary["sdk_versions_seen"], serde_json::json!(["1", "2"]));

    // The SDK polled its operations where its REST transport does, and everything is gone.
    let location = "/v1/projects/default/locations/us-central1";
    let models = p.expect(200, "GET", &format!("{location}/models"), None).await;
    assert!(models["models"].as_array().is_none_or(Vec::is_empty), "{models}");
    let endpoints = p.expect(200, "GET", &format!("{location}/endpoints"), None).await;
    assert!(endpoints["endpoints"].as_array().is_none_or(Vec::is_empty), "{endpoints}");
}

/// Runs gcloud with a configuration of its own (`CLOUDSDK_CONFIG`), and none of this machine's
/// `CLOUDSDK_*` settings or CA bundles.
struct Gcloud<'a> {
    config: &'a Path,
    token_file: &'a Path,
}

impl Gcloud<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("gcloud");
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("CLOUDSDK_") {
                command.env_remove(key);
            }
        }
        // gcloud's HTTP library would trust these CA bundles instead of core/custom_ca_certs_file.
        command.env_remove("REQUESTS_CA_BUNDLE").env_remove("CURL_CA_BUNDLE");
        command.args(args).env("CLOUDSDK_CONFIG", self.config).env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1");
        command
    }

    /// `gcloud ARGS`, which must succeed; its output.
    fn run(&self, args: &[&str]) -> Output {
        let output = match self.command(args).output() {
            Ok(output) => output,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "gcloud is not installed: install the Google Cloud CLI (Debian: google-cloud-cli), as scripts/test does"
            ),
            Err(e) => panic!("gcloud does not run: {e}"),
        };
        assert!(output.status.success(), "gcloud {}:\n{}", args.join(" "), text(&output));
        output
    }

    /// `gcloud ai ... --region=local --access-token-file=FILE`, which must succeed; its output.
    fn ai(&self, args: &[&str]) -> Output {
        let token = format!("--access-token-file={}", self.token_file.display());
        let all: Vec<&str> = [&["ai"], args, &["--region=local", &token]].concat();
        self.run(&all)
    }

    /// `gcloud ai ... --format=json`, parsed.
    fn json(&self, args: &[&str]) -> Value {
        let output = self.ai(&[args, &["--format=json"]].concat());
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("gcloud ai {} answers JSON ({e}):\n{}", args.join(" "), text(&output)))
    }
}

/// The text after `prefix` up to the next `stop`, in a command's stderr (gcloud's messages).
fn after(output: &Output, prefix: &str, stop: char) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let start =
        stderr.find(prefix).unwrap_or_else(|| panic!("`{prefix}` in:\n{}", text(output))) + prefix.len();
    stderr[start..].split(stop).next().unwrap_or_default().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcloud_runs_the_whole_lifecycle() {
    let (dir, p, artifact, token_file) = platform_with_mlp().await;
    let config = dir.path().join("gcloud");
    let gcloud = Gcloud { config: &config, token_file: &token_file };

    // Point gcloud at the platform: its URL (ending in `/`), its CA, a project.
    let ca = p.data.join("tls/ca.pem");
    gcloud.run(&[
        "config",
        "set",
        "api_endpoint_overrides/aiplatform",
        &format!("https://localhost:{}/", p.port),
    ]);
    gcloud.run(&["config", "set", "core/custom_ca_certs_file", &ca.display().to_string()]);
    gcloud.run(&["config", "set", "core/project", "default"]);

    // Models: upload two versions of the MLP, list, describe, list-version.
    let image = "--container-image-uri=platform-runtime:0.1.0";
    let artifact_uri = format!("--artifact-uri={artifact}");
    gcloud.ai(&["models", "upload", "--display-name=mlp", "--model-id=mlp", image, &artifact_uri]);
    let parent = "--parent-model=projects/default/locations/local/models/mlp";
    gcloud.ai(&[
        "models",
        "upload",
        "--display-name=mlp",
        parent,
        image,
        &artifact_uri,
        "--version-aliases=candidate",
    ]);
    let models = gcloud.json(&["models", "list"]);
    assert_eq!(models.as_array().map(Vec::len), Some(1), "{models}");
    let model = gcloud.json(&["models", "describe", "mlp"]);
    assert_eq!(model["versionId"], "1", "{model}");
    let versions = gcloud.json(&["models", "list-version", "mlp"]);
    assert_eq!(versions[1]["versionAliases"], serde_json::json!(["candidate"]), "{versions}");
    let ids: Vec<&str> =
        versions.as_array().into_iter().flatten().filter_map(|v| v["versionId"].as_str()).collect();
    assert_eq!(ids, ["1", "2"], "{versions}");

    // Endpoints: create, list, describe.
    gcloud.ai(&["endpoints", "create", "--display-name=mlp", "--endpoint-id=mlp"]);
    let endpoints = gcloud.json(&["endpoints", "list"]);
    assert_eq!(endpoints.as_array().map(Vec::len), Some(1), "{endpoints}");
    assert_eq!(gcloud.json(&["endpoints", "describe", "mlp"])["displayName"], "mlp");

    // Deploy version 1 (gcloud polls the operation under /v1beta1/); predict equals onnxruntime.
    let machine = ["--machine-type=e2-small", "--min-replica-count=1", "--max-replica-count=1"];
    let deployed = gcloud.ai(&[
        &["endpoints", "deploy-model", "mlp", "--model=mlp", "--display-name=mlp-v1"],
        &machine[..],
    ]
    .concat());
    let first = after(&deployed, "Id of the deployed model: ", '.');
    let operation = after(&deployed, "Waiting for operation [", ']');
    let described = gcloud.json(&["operations", "describe", &operation]);
    assert_eq!(described["done"], true, "{described}");
    assert_eq!(described["response"]["deployedModel"]["id"], first.as_str(), "{described}");
    let request = dir.path().join("request.json");
    let instances = &reference("mlp")["vertex"]["instances"];
    std::fs::write(&request, serde_json::json!({"instances": instances}).to_string()).expect("request");
    let json_request = format!("--json-request={}", request.display());
    let answer = gcloud.json(&["endpoints", "predict", "mlp", &json_request]);
    assert_close(&answer["predictions"], &reference("mlp")["vertex"]["predictions"]);
    assert_eq!(answer["deployedModelId"], first.as_str(), "{answer}");
    let raw = gcloud.ai(&[
        "endpoints",
        "raw-predict",
        "mlp",
        &format!("--request=@{}", request.display()),
        "--http-headers=Content-Type=application/json",
    ]);
    let raw: Value = serde_json::from_slice(&raw.stdout).expect("raw-predict prints the container's answer");
    assert_close(&raw["predictions"], &reference("mlp")["vertex"]["predictions"]);

    // Version 2 takes half the traffic; then `update` moves all of it there.
    let split = format!("--traffic-split=0=50,{first}=50");
    let deployed = gcloud.ai(&[
        &["endpoints", "deploy-model", "mlp", "--model=mlp@2", "--display-name=mlp-v2", &split],
        &machine[..],
    ]
    .concat());
    let second = after(&deployed, "Id of the deployed model: ", '.');
    let endpoint = gcloud.json(&["endpoints", "describe", "mlp"]);
    assert_eq!(endpoint["trafficSplit"][&first], 50, "{endpoint}");
    assert_eq!(endpoint["trafficSplit"][&second], 50, "{endpoint}");
    gcloud.ai(&["endpoints", "update", "mlp", &format!("--traffic-split={second}=100,{first}=0")]);
    let answer = gcloud.json(&["endpoints", "predict", "mlp", &json_request]);
    assert_eq!(answer["modelVersionId"], "2", "{answer}");
    assert_close(&answer["predictions"], &reference("mlp")["vertex"]["predictions"]);

    // Undeploy both, delete the endpoint and the model.
    gcloud.ai(&["endpoints", "undeploy-model", "mlp", &format!("--deployed-model-id={first}")]);
    gcloud.ai(&["endpoints", "undeploy-model", "mlp", &format!("--deployed-model-id={second}")]);
    gcloud.ai(&["endpoints", "delete", "mlp", "--quiet"]);
    gcloud.ai(&["models", "delete", "mlp", "--quiet"]);
    p.expect(404, "GET", &format!("{}/endpoints/mlp", common::LOC), None).await;
    p.expect(404, "GET", &format!("{}/models/mlp", common::LOC), None).await;
}

/// The paths Vertex's clients poll operations at reach the same operations: `/v1beta1/`
/// (gcloud), `/ui/` (the SDK, which gets only the fields of the proto messages) and the forms
/// nested under the model or endpoint an operation acts on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_answer_at_every_path_vertex_clients_use() {
    let dir = tempfile::tempdir().expect("dir");
    let p = start(&dir.path().join("data"), &[], &[]).await;
    let loc = "projects/default/locations/local";
    let upload = serde_json::json!({"modelId": "m", "model": {"displayName": "m", "artifactUri": upload_mlp(&p).await}});
    let uploaded = p.expect(200, "POST", &format!("/v1beta1/{loc}/models:upload"), Some(upload)).await;
    let created = p
        .expect(
            200,
            "POST",
            &format!("/v1/{loc}/endpoints?endpointId=e"),
            Some(serde_json::json!({"displayName": "e"})),
        )
        .await;
    let id = |op: &Value| op["name"].as_str().and_then(|n| n.rsplit('/').next()).expect("name").to_string();
    let (upload_id, create_id) = (id(&uploaded), id(&created));

    let full = p.expect(200, "GET", &format!("/v1/{loc}/operations/{create_id}"), None).await;
    assert_eq!(full["metadata"]["progressPercent"], 100, "{full}");
    assert_eq!(full["response"]["access"], "AUTHENTICATED", "{full}");
    assert_eq!(p.expect(200, "GET", &format!("/v1beta1/{loc}/operations/{create_id}"), None).await, full);
    assert_eq!(
        p.expect(200, "GET", &format!("/v1/{loc}/endpoints/e/operations/{create_id}"), None).await,
        full
    );
    let proto = p.expect(200, "GET", &format!("/ui/{loc}/endpoints/e/operations/{create_id}"), None).await;
    assert_eq!(
        proto["metadata"].as_object().map(|m| m.len()),
        Some(2),
        "only @type and genericMetadata: {proto}"
    );
    assert!(proto["response"].get("access").is_none(), "{proto}");
    assert_eq!(proto["response"]["name"], format!("{loc}/endpoints/e"));
    let waited =
        p.expect(200, "POST", &format!("/ui/{loc}/models/m/operations/{upload_id}:wait"), None).await;
    assert_eq!(waited["response"]["modelVersionId"], "1", "{waited}");

    // Nested lists hold the operations of their parent only; a nested path with the wrong
    // parent is not found.
    let listed = p.expect(200, "GET", &format!("/ui/{loc}/models/m/operations"), None).await;
    let ids: Vec<String> = listed["operations"].as_array().into_iter().flatten().map(id).collect();
    assert_eq!(ids, [upload_id.as_str()], "{listed}");
    let body = p.expect(404, "GET", &format!("/v1/{loc}/endpoints/e/operations/{upload_id}"), None).await;
    assert!(
        body["error"]["message"].as_str().unwrap_or_default().contains("is not an operation of"),
        "{body}"
    );
    p.expect(404, "GET", &format!("/ui/{loc}/models"), None).await;
}
