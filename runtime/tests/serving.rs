//! The real `platform-runtime` binary, over HTTP: every test model against its onnxruntime
//! reference on both protocols, bad input, batching, signals and model sources.

mod common;

use std::time::Duration;

use common::{Runtime, assert_close, model_path, reference};
use serde_json::{Value, json};

const TOLERANCE: f64 = 1e-4;

/// The onnxruntime library that `tests/models/real_models.py` found in the test virtualenv.
fn onnxruntime_lib() -> String {
    common::real_models().1["onnxruntime_lib"].as_str().expect("onnxruntime_lib").to_string()
}

/// Checks one model on both protocols against its reference, on an engine.
async fn check_model(name: &str, engine: &str) {
    let path = model_path(name);
    let lib = onnxruntime_lib();
    let args = ["--model", path.to_str().expect("utf-8 path"), "--engine", engine, "--onnxruntime-lib", &lib];
    let rt = Runtime::start(&args).await;
    common::check_reference(&rt, &format!("{name} on {engine}"), &reference(name), TOLERANCE).await;
}

#[tokio::test]
async fn every_test_model_answers_both_protocols_like_onnxruntime() {
    let models = common::all_reference_models();
    for core in ["mlp", "linear", "cnn", "two_io", "fixed_batch"] {
        assert!(models.iter().any(|m| m == core), "test model {core} is missing: run scripts/test");
    }
    for name in &models {
        for engine in ["tract", "onnxruntime"] {
            check_model(name, engine).await;
        }
    }
}

#[tokio::test]
async fn a_fixed_batch_model_answers_many_instances_in_chunks() {
    let rt = Runtime::start(&["--model", model_path("fixed_batch").to_str().expect("path")]).await;
    let reference = reference("fixed_batch");
    let instance = &reference["vertex"]["instances"][0];
    let prediction = &reference["vertex"]["predictions"][0];
    let (status, body) =
        rt.post_json("/predict", &json!({"instances": [instance, instance, instance]})).await;
    assert_eq!(status, 200, "{body}");
    assert_close(&body["predictions"], &json!([prediction, prediction, prediction]), TOLERANCE);
}

#[tokio::test]
async fn health_metadata_and_metrics_routes() {
    let rt =
        Runtime::start(&["--model", model_path("mlp").to_str().expect("path"), "--model-name", "digits"])
            .await;
    assert_eq!(rt.get_json("/v2/health/live").await.0, 200);
    assert_eq!(rt.get_json("/v2/health/ready").await.0, 200);
    assert_eq!(rt.get_json("/v2/models/digits/ready").await.0, 200);
    let (status, server) = rt.get_json("/v2").await;
    assert_eq!(status, 200);
    assert_eq!(server["name"], "platform-runtime");
    let (status, meta) = rt.get_json("/v2/models/digits").await;
    assert_eq!(status, 200);
    assert_eq!(
        meta,
        json!({"name": "digits", "versions": ["1"], "platform": "onnx_onnxv1",
               "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}],
               "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]})
    );
    let (status, err) = rt.get_json("/v2/models/other").await;
    assert_eq!(status, 404);
    assert!(err["error"].as_str().expect("message").contains("serves `digits`"), "{err}");
    assert_eq!(rt.get_json("/v2/models/digits/versions/2").await.0, 404);

    let instances = reference("mlp")["vertex"]["instances"].clone();
    assert_eq!(rt.post_json("/predict", &json!({"instances": instances})).await.0, 200);
    assert_eq!(rt.post_json("/predict", &json!({"instances": []})).await.0, 400);
    let metrics = reqwest::get(rt.url("/metrics")).await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains(r#"runtime_requests_total{code="200",protocol="vertex"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"runtime_request_errors_total{code="400",protocol="vertex"} 1"#), "{metrics}");
    for name in
        ["runtime_request_duration_seconds_bucket", "runtime_batch_size_bucket", "runtime_queue_depth"]
    {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
}

#[tokio::test]
async fn bad_vertex_requests_get_400_with_a_message_that_says_what_to_fix() {
    let rt =
        Runtime::start(&["--model", model_path("two_io").to_str().expect("path"), "--max-instances", "3"])
            .await;
    let good_a = json!([0.5, -0.375, 0.5, -0.5]);
    let cases: Vec<(Value, &str)> = vec![
        (json!({"instance": []}), "missing field `instances`"),
        (json!({"instances": []}), "`instances` is empty"),
        (json!({"instances": vec![json!({"a": good_a, "b": [1, 2, 3]}); 4]}), "at most 3 are accepted"),
        (json!({"instances": [{"a": good_a}]}), "instance 0 lacks input `b`"),
        (json!({"instances": [{"a": good_a, "b": [1, 2, 3], "c": 1}]}), "unknown input `c`"),
        (json!({"instances": [[1, 2]]}), "must be an object keyed by input name"),
        (
            json!({"instances": [{"a": [1, 2, 3], "b": [1, 2, 3]}]}),
            "input `a`: expected shape [4] of numbers (FP32), got 3 elements",
        ),
        (
            json!({"instances": [{"a": good_a, "b": [1, 2.5, 3]}]}),
            "input `b`: expected shape [3] of integers in range (INT64), got 2.5",
        ),
        (json!({"instances": [{"a": ["x", 1, 2, 3], "b": [1, 2, 3]}]}), "got \"x\""),
        (json!({"instances": [{"a": [[1], 1, 2, 3], "b": [1, 2, 3]}]}), "input `a`"),
    ];
    for (body, message) in cases {
        let (status, err) = rt.post_json("/predict", &body).await;
        assert_eq!(status, 400, "{body} -> {err}");
        assert_eq!(err["error"]["status"], "INVALID_ARGUMENT");
        assert_eq!(err["error"]["code"], 400);
        let text = err["error"]["message"].as_str().expect("message");
        assert!(text.contains(message), "{body}: `{text}` should contain `{message}`");
    }
    let r = reqwest::Client::new()
        .post(rt.url("/predict"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 400);
    let err: Value = r.json().await.expect("json");
    assert!(err["error"]["message"].as_str().expect("message").contains("not a valid predict request"));
}

#[tokio::test]
async fn bad_v2_requests_get_400_with_the_v2_error_format() {
    let rt = Runtime::start(&["--model", model_path("two_io").to_str().expect("path")]).await;
    let a = json!({"name": "a", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]});
    let b = json!({"name": "b", "datatype": "INT64", "shape": [1, 3], "data": [1, 2, 3]});
    let cases: Vec<(Value, &str)> = vec![
        (json!({"inputs": [a]}), "input `b` is missing"),
        (
            json!({"inputs": [a, b, {"name": "c", "datatype": "FP32", "shape": [1], "data": [1]}]}),
            "unknown input `c`",
        ),
        (
            json!({"inputs": [a, {"name": "b", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}),
            "input `b` has datatype FP32 but the model expects INT64",
        ),
        (
            json!({"inputs": [a, {"name": "b", "datatype": "INT64", "shape": [1, 4], "data": [1, 2, 3, 4]}]}),
            "input `b` has shape [1, 4] but the model expects [N, 3]",
        ),
        (
            json!({"inputs": [a, {"name": "b", "datatype": "INT64", "shape": [1, 3], "data": [1, 2]}]}),
            "input `b` has 2 elements but its shape [1, 3] needs 3",
        ),
        (
            json!({"inputs": [a, {"name": "b", "datatype": "INT64", "shape": [2, 3], "data": [1, 2, 3, 4, 5, 6]}]}),
            "the batch dimension must agree",
        ),
        (json!({"inputs": [a, b], "outputs": [{"name": "nope"}]}), "unknown output `nope`"),
        (json!({"inputs": [a, a, b]}), "input `a` is given twice"),
        (json!({"inputs": "x"}), "not a valid inference request"),
    ];
    for (body, message) in cases {
        let (status, err) = rt.post_json("/v2/models/model/infer", &body).await;
        assert_eq!(status, 400, "{body} -> {err}");
        let text = err["error"].as_str().expect("V2 errors are a string");
        assert!(text.contains(message), "{body}: `{text}` should contain `{message}`");
    }
    // Output selection and nested data.
    let nested_a = json!({"name": "a", "datatype": "FP32", "shape": [1, 4], "data": [[1, 2, 3, 4]]});
    let (status, body) = rt
        .post_json(
            "/v2/models/model/infer",
            &json!({"inputs": [nested_a, b], "outputs": [{"name": "score"}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outputs"].as_array().map(Vec::len), Some(1));
    assert_eq!(body["outputs"][0]["name"], "score");
    assert_close(&body["outputs"][0]["data"], &json!([16.0]), TOLERANCE);
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let rt =
        Runtime::start(&["--model", model_path("mlp").to_str().expect("path"), "--max-body-bytes", "2000"])
            .await;
    let big = json!({"instances": vec![vec![0.5f32; 64]; 20]});
    let (status, err) = rt.post_json("/predict", &big).await;
    assert_eq!(status, 413, "{err}");
    assert!(err["error"]["message"].as_str().expect("message").contains("limit of 2000 bytes"));
    let (status, err) = rt.post_json("/v2/models/model/infer", &big).await;
    assert_eq!(status, 413, "{err}");
    assert!(err["error"].as_str().expect("message").contains("limit of 2000 bytes"));
}

#[tokio::test]
async fn a_model_that_cannot_load_makes_the_process_exit_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("dir");
    let garbage = dir.path().join("model.onnx");
    std::fs::write(&garbage, b"this is not onnx").expect("write");
    let mut rt = Runtime::spawn(&["--model", garbage.to_str().expect("path")], &[]);
    let status = rt.wait_exit(Duration::from_secs(60));
    assert!(!status.success());
    assert!(rt.log().contains("not a valid ONNX model"), "{}", rt.log());

    let mut rt = Runtime::spawn(&["--model", "/nonexistent/model.onnx"], &[]);
    assert!(!rt.wait_exit(Duration::from_secs(60)).success());
    assert!(rt.log().contains("/nonexistent/model.onnx does not exist"), "{}", rt.log());
}

#[tokio::test]
async fn a_directory_means_the_model_onnx_inside_it() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::copy(model_path("linear"), dir.path().join("model.onnx")).expect("copy");
    let rt = Runtime::start(&["--model", dir.path().to_str().expect("path")]).await;
    let reference = reference("linear");
    let (status, body) =
        rt.post_json("/predict", &json!({"instances": reference["vertex"]["instances"]})).await;
    assert_eq!(status, 200, "{body}");
    assert_close(&body["predictions"], &reference["vertex"]["predictions"], TOLERANCE);
}

#[tokio::test]
async fn bad_routes_are_refused_at_start() {
    let mut rt = Runtime::spawn(
        &["--model", model_path("mlp").to_str().expect("path"), "--predict-route", "/v2/x"],
        &[],
    );
    assert!(!rt.wait_exit(Duration::from_secs(60)).success());
    assert!(rt.log().contains("collides with the runtime's own routes"), "{}", rt.log());
}

#[tokio::test]
async fn vertex_routes_come_from_the_aip_environment() {
    let path = model_path("mlp");
    let rt = Runtime::spawn(
        &[],
        &[
            ("AIP_STORAGE_URI", path.to_str().expect("path")),
            ("AIP_PREDICT_ROUTE", "/v1/endpoints/1/deployedModels/2:predict"),
            ("AIP_HEALTH_ROUTE", "/v1/endpoints/1/deployedModels/2"),
        ],
    );
    let client = reqwest::Client::new();
    for _ in 0..600 {
        if client
            .get(rt.url("/v1/endpoints/1/deployedModels/2"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let instances = reference("mlp")["vertex"]["instances"].clone();
    let (status, body) =
        rt.post_json("/v1/endpoints/1/deployedModels/2:predict", &json!({"instances": instances})).await;
    assert_eq!(status, 200, "{body}");
    assert_close(&body["predictions"], &reference("mlp")["vertex"]["predictions"], TOLERANCE);
}

#[tokio::test]
async fn concurrent_requests_are_merged_into_batches() {
    for engine in ["tract", "onnxruntime"] {
        merged_into_batches(engine).await;
    }
}

async fn merged_into_batches(engine: &str) {
    let lib = onnxruntime_lib();
    let rt = Runtime::start(&[
        "--model",
        model_path("mlp").to_str().expect("path"),
        "--batch-timeout",
        "200ms",
        "--workers",
        "1",
        "--engine",
        engine,
        "--onnxruntime-lib",
        &lib,
    ])
    .await;
    let reference = reference("mlp");
    let instances = reference["vertex"]["instances"].as_array().expect("instances").clone();
    let predictions = reference["vertex"]["predictions"].as_array().expect("predictions").clone();
    let mut tasks = Vec::new();
    for i in 0..12 {
        let (instance, prediction) = (instances[i % 3].clone(), predictions[i % 3].clone());
        let url = rt.url("/predict");
        tasks.push(tokio::spawn(async move {
            let r = reqwest::Client::new()
                .post(url)
                .json(&json!({"instances": [instance]}))
                .send()
                .await
                .expect("request");
            assert_eq!(r.status(), 200);
            let body: Value = r.json().await.expect("json");
            assert_close(&body["predictions"], &json!([prediction]), TOLERANCE);
        }));
    }
    for t in tasks {
        t.await.expect("request task");
    }
    let metrics = reqwest::get(rt.url("/metrics")).await.expect("metrics").text().await.expect("text");
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
    };
    // Warm-up runs outside the queue: 12 rows went through, in fewer executions.
    assert_eq!(value("runtime_batch_size_sum "), 12.0);
    assert!(value("runtime_batch_size_count ") < 12.0, "no request was merged on {engine}:\n{metrics}");
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_finishes_in_flight_requests_and_exits_zero() {
    // The batch timeout holds a lone request in the queue long enough to signal meanwhile.
    let mut rt =
        Runtime::start(&["--model", model_path("mlp").to_str().expect("path"), "--batch-timeout", "1500ms"])
            .await;
    let instances = reference("mlp")["vertex"]["instances"].clone();
    let url = rt.url("/predict");
    let in_flight = tokio::spawn(async move {
        let r = reqwest::Client::new()
            .post(url)
            .json(&json!({"instances": instances}))
            .send()
            .await
            .expect("request");
        r.status().as_u16()
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed =
        std::process::Command::new("kill").args(["-TERM", &rt.pid().to_string()]).status().expect("kill");
    assert!(killed.success());
    assert_eq!(in_flight.await.expect("task"), 200, "the in-flight request completes");
    let status = rt.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "exit status {status:?}; log:\n{}", rt.log());
}
