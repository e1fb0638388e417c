//! Shared by the tests that start the real `platform` binary: the running platform, an HTTPS
//! client trusting its CA, the test models, a moto S3 server and fresh PostgreSQL databases.
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

pub use test_support::{S3Server, free_port, model_path, python, reference, root, system_python};

/// A running `platform serve`, killed when dropped.
pub struct Platform {
    pub child: Child,
    pub base: String,
    pub data: PathBuf,
    pub stdout: PathBuf,
    pub http: reqwest::Client,
    pub token: String,
    pub port: u16,
}

impl Drop for Platform {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client(data_dir: &Path) -> reqwest::Client {
    let ca = std::fs::read(data_dir.join("tls/ca.pem")).expect("the CA is written on first start");
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA PEM"))
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
}

/// Starts `platform serve` on `data_dir` (created on first start) with extra flags and env,
/// and waits until `/healthz` answers.
pub async fn start(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Platform {
    start_on(data_dir, free_port(), args, env).await
}

pub async fn start_on(data_dir: &Path, port: u16, args: &[&str], env: &[(&str, &str)]) -> Platform {
    let stdout = data_dir.with_extension(format!("{port}.out"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_platform"));
    command
        .args([
            "serve",
            "--data-dir",
            data_dir.to_str().expect("path"),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--reconcile-period", "200ms"])
        .args(args)
        .env("PLATFORM_ADMIN_PASSWORD", "correct-horse")
        .env_remove("PLATFORM_DATABASE_URL")
        .env_remove("PLATFORM_ARTIFACT_STORE")
        .stdout(std::fs::File::create(&stdout).expect("stdout file"))
        .stderr(Stdio::inherit());
    for (k, v) in env {
        command.env(k, v);
    }
    let child = command.spawn().expect("platform starts");
    let base = format!("https://localhost:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if data_dir.join("tls/ca.pem").exists()
            && data_dir.join("admin-token").exists()
            && let Ok(r) = client(data_dir).get(format!("{base}/healthz")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "platform not healthy in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let token =
        std::fs::read_to_string(data_dir.join("admin-token")).expect("admin-token").trim().to_string();
    Platform { child, http: client(data_dir), base, data: data_dir.to_path_buf(), stdout, token, port }
}

/// The URL prefix of the default project and location.
pub const LOC: &str = "/v1/projects/default/locations/local";

impl Platform {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request with the admin token; returns status and JSON body (Null when empty).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(&self.token, method, path, body).await
    }

    pub async fn call_as(&self, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, self.url(path));
        if !token.is_empty() {
            req = req.bearer_auth(token);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.expect("body");
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        (status, value)
    }

    /// Uploads a file as an artifact; returns its URI.
    pub async fn upload_artifact(&self, path: &Path) -> Value {
        let bytes = std::fs::read(path).expect("artifact");
        let resp = self
            .http
            .post(self.url(&format!("{LOC}/artifacts?filename=model.onnx")))
            .bearer_auth(&self.token)
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .expect("upload");
        assert_eq!(resp.status(), 200);
        resp.json().await.expect("json")
    }

    /// Waits for an operation to finish; returns it.
    pub async fn wait(&self, op: &Value) -> Value {
        let name = op["name"].as_str().unwrap_or_else(|| panic!("not an operation: {op}"));
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let (status, op) =
                self.call("POST", &format!("/v1/{name}:wait"), Some(json!({"timeout": "20s"}))).await;
            assert_eq!(status, 200, "{op}");
            if op["done"] == true {
                return op;
            }
            assert!(Instant::now() < deadline, "operation not done in time: {op}");
        }
    }

    /// Sends a request and checks the status; returns the body.
    pub async fn expect(&self, status: u16, method: &str, path: &str, body: Option<Value>) -> Value {
        let (got, value) = self.call(method, path, body).await;
        assert_eq!(got, status, "{method} {path}: {value}");
        value
    }
}

/// A fresh database on the PostgreSQL server of `PLATFORM_TEST_DATABASE_URL`; its URL.
pub async fn fresh_postgres(prefix: &str) -> String {
    use sqlx::Connection;
    let Ok(server_url) = std::env::var("PLATFORM_TEST_DATABASE_URL") else {
        panic!(
            "PLATFORM_TEST_DATABASE_URL is not set: run the tests under scripts/with-postgres, which starts a \
             throwaway PostgreSQL server, or set it to postgres://user:password@host:port/database"
        );
    };
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    let database = format!("{prefix}_{}_{nanos}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(&server_url).await.expect("connect to PostgreSQL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&mut admin)
        .await
        .expect("create the test database");
    with_database(&server_url, &database)
}

pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{base}/{database}{query}")
}

/// tests/apps/custom_server.py copied where any user can read it: a host-process replica runs
/// as a user of its own, which cannot read a checkout under a private directory (`mktemp -d`).
pub fn shared_custom_server() -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let path = dir.path().join("custom_server.py");
    std::fs::copy(root().join("tests/apps/custom_server.py"), &path).expect("copy the app");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod app");
    (dir, path)
}

/// The pids recorded for the replicas of every deployment under `data`, by pid file, sorted.
pub fn replica_pids(data: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    for dep in std::fs::read_dir(data.join("replicas")).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(dep.path()).into_iter().flatten().flatten() {
            if file.path().extension().is_some_and(|e| e == "pid")
                && let Ok(text) = std::fs::read_to_string(file.path())
                && let Ok(record) = serde_json::from_str::<Value>(&text)
                && let Some(pid) = record["pid"].as_u64()
            {
                pids.push(pid as u32);
            }
        }
    }
    pids.sort_unstable();
    pids
}

/// Whether `pid` runs (a zombie does not).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
}

/// The `availableReplicaCount` of deployed model `id` on `endpoint` (-1 when it is not there).
pub async fn available_replicas(p: &Platform, endpoint: &str, id: &str) -> i64 {
    let e = p.expect(200, "GET", &format!("{LOC}/endpoints/{endpoint}"), None).await;
    e["deployedModels"]
        .as_array()
        .and_then(|d| d.iter().find(|m| m["id"] == id))
        .and_then(|m| m["status"]["availableReplicaCount"].as_i64())
        .unwrap_or(-1)
}
