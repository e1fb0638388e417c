//! Schemathesis against the real binary and `openapi/openapi.yaml`: generated requests (good
//! and malformed) never get a 5xx, and every answer matches the document (status codes,
//! content types, bodies).

mod common;

use std::process::Command;

use common::{LOC, model_path, start};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_get_documented_answers_and_no_5xx() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let p = start(&data, &[], &[]).await;
    // Something to find: a model and an endpoint.
    let artifact = p.upload_artifact(&model_path("mlp")).await;
    let upload =
        json!({"modelId": "mlp", "model": {"displayName": "mlp", "artifactUri": artifact["artifactUri"]}});
    p.expect(200, "POST", &format!("{LOC}/models:upload"), Some(upload)).await;
    p.expect(200, "POST", &format!("{LOC}/endpoints?endpointId=ep"), Some(json!({"displayName": "ep"})))
        .await;

    let st = common::python().with_file_name("schemathesis");
    assert!(st.exists(), "{} is missing: run scripts/test, which installs schemathesis", st.display());
    let schema = common::root().join("openapi/openapi.yaml");
    let output = Command::new(st)
        .arg("run")
        .arg(&schema)
        .args(["--url", &p.base])
        .args(["--header", &format!("Authorization: Bearer {}", p.token)])
        .arg("--tls-verify")
        .arg(data.join("tls/ca.pem"))
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", "25", "--phases", "examples,coverage,fuzzing"])
        .env("NO_COLOR", "1")
        // Schemathesis keeps a cache in its working directory: keep it out of the repository.
        .current_dir(dir.path())
        .output()
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("passed"), "{stdout}");
}
