//! Test fixtures: the real `platform-runtime` binary on a free loopback port, the reference
//! files of the test models, and JSON comparison with a tolerance.
#![allow(dead_code, unused_imports)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub use test_support::{free_port, model_path, python, real_models, reference, root};

/// A running `platform-runtime`, killed when dropped.
pub struct Runtime {
    child: Child,
    pub base: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Runtime {
    /// Starts the runtime with `args` (besides host and port) and `env`, without waiting.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Runtime {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let log = dir.path().join("runtime.log");
        let stderr = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_platform-runtime"));
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(args)
            .env_remove("AIP_STORAGE_URI")
            .env("PLATFORM_CACHE_DIR", dir.path().join("cache"))
            .stdout(Stdio::null())
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("platform-runtime starts");
        Runtime { child, base: format!("http://127.0.0.1:{port}"), log, _dir: dir }
    }

    /// Starts the runtime on a model and waits until it is ready.
    pub async fn start(args: &[&str]) -> Runtime {
        Runtime::start_with_env(args, &[]).await
    }

    /// Starts the runtime with extra environment and waits until it is ready.
    pub async fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Runtime {
        let mut rt = Runtime::spawn(args, env);
        rt.wait_ready().await;
        rt
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the health route answers 200; panics with the log if the process exits.
    pub async fn wait_ready(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("runtime exited with {status} before it was ready; log:\n{}", self.log());
            }
            if let Ok(r) = client.get(self.url("/health")).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("runtime not ready in time; log:\n{}", self.log());
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("process status") {
                return status;
            }
            assert!(Instant::now() < deadline, "runtime did not exit; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = reqwest::Client::new().post(self.url(path)).json(body).send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = reqwest::Client::new().get(self.url(path)).send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The V2 request for a reference's inputs.
pub fn v2_request(reference: &Value) -> Value {
    let inputs: Vec<Value> = reference["inputs"]
        .as_object()
        .expect("inputs")
        .iter()
        .map(|(name, t)| json!({"name": name, "datatype": t["datatype"], "shape": t["shape"], "data": t["data"]}))
        .collect();
    json!({"id": "req-1", "inputs": inputs})
}

/// Checks a running model on both protocols against its reference, numbers within `tol`.
pub async fn check_reference(rt: &Runtime, name: &str, reference: &Value, tol: f64) {
    let (status, body) =
        rt.post_json("/predict", &json!({"instances": reference["vertex"]["instances"]})).await;
    assert_eq!(status, 200, "{name}: {body}");
    assert_close(&body["predictions"], &reference["vertex"]["predictions"], tol);

    let (status, body) = rt.post_json("/v2/models/model/infer", &v2_request(reference)).await;
    assert_eq!(status, 200, "{name}: {body}");
    assert_eq!(body["id"], "req-1", "{name}: the id is echoed");
    assert_eq!(body["model_name"], "model");
    let outputs = body["outputs"].as_array().expect("outputs");
    let expected = reference["outputs"].as_object().expect("outputs");
    assert_eq!(outputs.len(), expected.len(), "{name}: every output is returned");
    for out in outputs {
        let name_out = out["name"].as_str().expect("output name");
        let want = &expected[name_out];
        assert_eq!(out["datatype"], want["datatype"], "{name}/{name_out}");
        assert_eq!(out["shape"], want["shape"], "{name}/{name_out}");
        assert_close(&out["data"], &want["data"], tol);
    }
}

/// Asserts that `actual` equals `expected` with numbers compared to `tol` (absolute or
/// relative), naming the first differing path.
pub fn assert_close(actual: &Value, expected: &Value, tol: f64) {
    if let Err(at) = close(actual, expected, tol, "$") {
        panic!("{at}\nactual:   {actual}\nexpected: {expected}");
    }
}

fn close(a: &Value, e: &Value, tol: f64, path: &str) -> Result<(), String> {
    match (a, e) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            if (x - y).abs() <= tol || (x - y).abs() <= tol * y.abs() {
                Ok(())
            } else {
                Err(format!("{path}: {x} != {y}"))
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Err(format!("{path}: length {} != {}", x.len(), y.len()));
            }
            x.iter().zip(y).enumerate().try_for_each(|(i, (x, y))| close(x, y, tol, &format!("{path}[{i}]")))
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut xk: Vec<_> = x.keys().collect();
            let mut yk: Vec<_> = y.keys().collect();
            xk.sort();
            yk.sort();
            if xk != yk {
                return Err(format!("{path}: keys {xk:?} != {yk:?}"));
            }
            y.iter().try_for_each(|(k, y)| close(&x[k], y, tol, &format!("{path}.{k}")))
        }
        _ if a == e => Ok(()),
        _ => Err(format!("{path}: {a} != {e}")),
    }
}

/// The names of every test model with a reference file, core and scikit-learn ones.
pub fn all_reference_models() -> Vec<String> {
    let mut names = Vec::new();
    for (dir, prefix) in [("tests/models", ""), ("tests/models/sklearn", "sklearn/")] {
        let Ok(entries) = std::fs::read_dir(root().join(dir)) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json") && path.with_extension("onnx").exists() {
                let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
                names.push(format!("{prefix}{stem}"));
            }
        }
    }
    names.sort();
    names
}
