//! What the end-to-end tests of every crate share: the workspace's paths, the test virtualenv's
//! Python, free ports, the reference files of the test models, and a moto S3 server. Tests
//! panic with a message that says how to fix a missing tool; none skips itself.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod load;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

/// The Python of the test virtualenv (`PLATFORM_TEST_PYTHON`, default `.venv/bin/python`),
/// which `scripts/test` creates with every test tool.
pub fn python() -> PathBuf {
    let path = std::env::var_os("PLATFORM_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/test, which installs the Python test tools",
        path.display()
    );
    path
}

/// The system's Python 3 (`/usr/bin/python3`), for programs that run as host processes: those
/// run as users of their own, who cannot reach a Python under `/root` (pyenv, the virtualenv).
pub fn system_python() -> PathBuf {
    let path = PathBuf::from("/usr/bin/python3");
    assert!(path.exists(), "{} is missing: run scripts/test, which installs python3", path.display());
    path
}

/// A loopback port nothing listens on right now, for a server the test starts next.
///
/// Picked in 10000-19999: below the kernel's ephemeral range (32768-60999), so that the outgoing
/// connections every test makes cannot take it between this check and the server's bind, and below
/// the ports of the local backend's replicas (20000-31999); spread by process id and a counter,
/// so that tests running side by side do not pick the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919);
    (0..10_000)
        .map(|_| 10_000 + (start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % 10_000) as u16)
        .find(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("a free loopback port in 10000-19999")
}

/// `tests/models/{name}.onnx`.
pub fn model_path(name: &str) -> PathBuf {
    root().join("tests/models").join(format!("{name}.onnx"))
}

/// The reference file of a test model: inputs, onnxruntime outputs, Vertex instances and
/// predictions.
pub fn reference(name: &str) -> Value {
    let path = root().join("tests/models").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("reference is JSON")
}

/// The real models that `tests/models/real_models.py` fetched from PyPI wheels (`scripts/test`
/// runs it): their directory (`PLATFORM_REAL_MODELS_DIR`, default `.cache/real-models`) and its
/// manifest (`onnxruntime_lib`, and per model `name`, `family`, `engines`, `tolerance`).
pub fn real_models() -> (PathBuf, Value) {
    let dir = std::env::var_os("PLATFORM_REAL_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".cache/real-models"));
    let manifest = dir.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run scripts/test (or .venv/bin/python tests/models/real_models.py), which fetches the real models",
            manifest.display()
        )
    });
    (dir, serde_json::from_str(&text).expect("the manifest is JSON"))
}

/// A moto S3 server on a free loopback port, killed when dropped.
pub struct S3Server {
    child: Child,
    pub endpoint: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3Server {
    /// Starts `moto_server` from the test virtualenv and waits until it answers.
    pub async fn start() -> S3Server {
        let port = free_port();
        let moto = python().with_file_name("moto_server");
        assert!(
            moto.exists(),
            "{} is missing: run scripts/test, which installs moto[server]",
            moto.display()
        );
        let child = Command::new(moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let server = S3Server { child, endpoint: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(60);
        while reqwest::get(&server.endpoint).await.is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    /// The standard AWS environment that points a client at this server.
    pub fn env(&self) -> [(&'static str, &str); 4] {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
        ]
    }

    /// A client of this server, for setting up buckets and looking at objects.
    pub fn client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version_latest()
            .endpoint_url(&self.endpoint)
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new("test", "test", None, None, "test"))
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }
}
