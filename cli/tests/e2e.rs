//! The real `platform-cli` binary against a real `platform serve` (HTTPS with its own CA, a
//! temporary data directory and configuration): the quickstart from login to clean-up, and the
//! error paths.
//!
//! `platform` is another package's binary, so it is looked for beside `platform-cli` in the
//! target directory: `cargo test --workspace` builds it (control-plane's tests need it too).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const PASSWORD: &str = "correct-horse";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn platform_binary() -> PathBuf {
    let cli = Path::new(env!("CARGO_BIN_EXE_platform-cli"));
    let platform = cli.with_file_name(format!("platform{}", std::env::consts::EXE_SUFFIX));
    assert!(
        platform.exists(),
        "{} is missing: build the workspace first (cargo build --workspace, or cargo test --workspace)",
        platform.display()
    );
    platform
}

/// A running `platform serve` in a temporary directory, killed when dropped, and a
/// configuration file of its own for the CLI.
struct Platform {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Drop for Platform {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Platform {
    fn start() -> Platform {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let data = dir.path().join("data");
        let child = Command::new(platform_binary())
            .args([
                "serve",
                "--data-dir",
                data.to_str().expect("path"),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args(["--reconcile-period", "200ms"])
            .env("PLATFORM_ADMIN_PASSWORD", PASSWORD)
            .env_remove("PLATFORM_DATABASE_URL")
            .env_remove("PLATFORM_ARTIFACT_STORE")
            .stdout(std::fs::File::create(dir.path().join("serve.out")).expect("stdout file"))
            .stderr(Stdio::inherit())
            .spawn()
            .expect("platform starts");
        let platform = Platform { child, url: format!("https://localhost:{port}"), dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(data.join("admin-token").exists()
            && data.join("tls/ca.pem").exists()
            && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
        {
            assert!(Instant::now() < deadline, "platform did not start in time");
            std::thread::sleep(Duration::from_millis(100));
        }
        platform
    }

    fn ca(&self) -> String {
        self.dir.path().join("data/tls/ca.pem").display().to_string()
    }

    fn admin_token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("data/admin-token"))
            .expect("admin-token")
            .trim()
            .to_string()
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("config/config.yaml")
    }

    /// Runs the CLI with this platform's configuration file and nothing from the environment.
    fn cli(&self, args: &[&str], stdin: &str) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_platform-cli"));
        for var in [
            "PLATFORM_SERVER",
            "PLATFORM_PROJECT",
            "PLATFORM_LOCATION",
            "PLATFORM_CA_CERT",
            "PLATFORM_TOKEN",
            "PLATFORM_FORMAT",
            "PLATFORM_USERNAME",
        ] {
            command.env_remove(var);
        }
        let mut child = command
            .args(args)
            .env("PLATFORM_CONFIG", self.config())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("platform-cli runs");
        child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
        child.wait_with_output().expect("platform-cli finishes")
    }

    /// Runs the CLI and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args, "");
        assert!(
            out.status.success(),
            "platform-cli {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    /// Runs the CLI with `--format json` and expects success; returns the JSON printed.
    fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(&[args, &["--format", "json"]].concat());
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("platform-cli {args:?} printed no JSON ({e}): {text}"))
    }

    /// Runs the CLI and expects it to fail with `code`; returns stderr.
    fn fails(&self, code: i32, args: &[&str]) -> String {
        let out = self.cli(args, "");
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(code), "platform-cli {}: {stderr}", args.join(" "));
        stderr
    }

    fn login(&self) {
        let out = self.cli(
            &[
                "auth",
                "login",
                "--server",
                &self.url,
                "--ca-cert",
                &self.ca(),
                "--username",
                "admin",
                "--password-stdin",
            ],
            &format!("{PASSWORD}\n"),
        );
        assert!(out.status.success(), "login failed: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("as admin"));
    }
}

fn mlp_reference() -> Value {
    let text = std::fs::read_to_string(root().join("tests/models/mlp.json")).expect("mlp.json");
    serde_json::from_str(&text).expect("mlp.json is JSON")
}

fn assert_close(got: &Value, want: &Value, tolerance: f64) {
    match (got, want) {
        (Value::Array(g), Value::Array(w)) => {
            assert_eq!(g.len(), w.len(), "{got} vs {want}");
            g.iter().zip(w).for_each(|(g, w)| assert_close(g, w, tolerance));
        }
        (g, w) => {
            let (g, w) = (g.as_f64().expect("number"), w.as_f64().expect("number"));
            assert!((g - w).abs() <= tolerance, "{g} is not within {tolerance} of {w}");
        }
    }
}

#[test]
fn the_quickstart_works_with_the_cli_alone() {
    let platform = Platform::start();
    platform.login();
    let mlp = root().join("tests/models/mlp.onnx");
    let mlp = mlp.to_str().expect("path");

    let uploaded = platform.json(&[
        "models",
        "import",
        "--display-name",
        "mlp",
        "--model-id",
        "mlp",
        "--artifact",
        mlp,
        "--labels",
        "team=ml",
    ]);
    assert_eq!(uploaded["model"], "projects/default/locations/local/models/mlp");
    assert_eq!(uploaded["modelVersionId"], "1");
    let listed = platform.ok(&["models", "list"]);
    assert!(listed.starts_with("MODEL_ID") && listed.contains("mlp"), "{listed}");
    assert_eq!(platform.json(&["models", "describe", "mlp@default"])["labels"]["team"], "ml");

    let endpoint = platform.json(&[
        "endpoints",
        "create",
        "--display-name",
        "e2e",
        "--endpoint-id",
        "e2e",
        "--request-response-logging-rate",
        "1",
    ]);
    assert_eq!(
        endpoint["predictRequestResponseLoggingConfig"],
        json!({"enabled": true, "samplingRate": 1.0})
    );
    assert_eq!(endpoint["name"], "projects/default/locations/local/endpoints/e2e");
    let first =
        platform.json(&["endpoints", "deploy-model", "e2e", "--model", "mlp", "--machine-type", "e2-small"]);
    let first_id = first["deployedModel"]["id"].as_str().expect("deployed model id").to_string();

    // Predictions match onnxruntime's, one per line in the table format.
    let reference = mlp_reference();
    let request = platform.dir.path().join("request.json");
    std::fs::write(&request, json!({"instances": reference["vertex"]["instances"]}).to_string())
        .expect("write");
    let request = request.to_str().expect("path");
    let answer = platform.json(&["endpoints", "predict", "e2e", "--json-request", request]);
    assert_close(&answer["predictions"], &reference["vertex"]["predictions"], 1e-4);
    assert_eq!(answer["deployedModelId"], first_id.as_str());
    let lines = platform.ok(&["endpoints", "predict", "e2e", "--json-request", request]);
    assert_eq!(lines.lines().count(), reference["vertex"]["instances"].as_array().expect("instances").len());

    // Request-response logging (rate 1 since create) kept those predictions, newest first; they
    // are written off the request path, so they show up shortly after.
    let mut logs = json!([]);
    for _ in 0..100 {
        logs = platform.json(&["endpoints", "prediction-logs", "e2e", "--limit", "1"]);
        if logs.as_array().is_some_and(|l| !l.is_empty()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(logs.as_array().map(Vec::len), Some(1), "--limit 1: {logs}");
    assert_eq!(logs[0]["deployedModelId"], first_id.as_str());
    assert!(logs[0]["request"]["text"].as_str().is_some_and(|t| t.contains("instances")), "{logs}");
    assert!(logs[0]["response"]["text"].as_str().is_some_and(|t| t.contains("predictions")), "{logs}");
    let table = platform.ok(&["endpoints", "prediction-logs", "e2e"]);
    assert!(table.starts_with("TIME") && table.contains("predict"), "{table}");
    let off = platform.json(&["endpoints", "update", "e2e", "--disable-request-response-logging"]);
    assert!(off.get("predictRequestResponseLoggingConfig").is_none(), "{off}");

    // A second version takes half the traffic, then all of it.
    let v2 = platform.json(&[
        "models",
        "import",
        "--display-name",
        "mlp-v2",
        "--parent-model",
        "mlp",
        "--artifact",
        mlp,
        "--version-aliases",
        "candidate",
    ]);
    assert_eq!(v2["modelVersionId"], "2");
    let split = format!("0=50,{first_id}=50");
    let second = platform.json(&[
        "endpoints",
        "deploy-model",
        "e2e",
        "--model",
        "mlp@candidate",
        "--machine-type",
        "e2-small",
        "--traffic-split",
        &split,
    ]);
    let second_id = second["deployedModel"]["id"].as_str().expect("deployed model id").to_string();
    assert_eq!(second["deployedModel"]["modelVersionId"], "2");
    let described = platform.json(&["endpoints", "describe", "e2e"]);
    assert_eq!(described["trafficSplit"], json!({first_id.clone(): 50, second_id.clone(): 50}));

    let updated =
        platform.json(&["endpoints", "update", "e2e", "--traffic-split", &format!("{second_id}=100")]);
    assert_eq!(updated["trafficSplit"], json!({second_id.clone(): 100}));
    let answer = platform.json(&["endpoints", "predict", "e2e", "--json-request", request]);
    assert_eq!(answer["deployedModelId"], second_id.as_str(), "all traffic goes to the second version");
    assert_eq!(answer["modelVersionId"], "2");

    // Undeploy both, delete everything, and nothing is left.
    platform.ok(&["endpoints", "undeploy-model", "e2e", "--deployed-model-id", &first_id]);
    platform.ok(&["endpoints", "undeploy-model", "e2e", "--deployed-model-id", &second_id]);
    let empty = platform.json(&["endpoints", "describe", "e2e"]);
    assert!(empty.get("deployedModels").is_none(), "{empty}");
    assert!(platform.ok(&["endpoints", "delete", "e2e"]).contains("Deleted endpoint"));
    platform.ok(&["models", "delete", "mlp"]);
    assert_eq!(platform.json(&["models", "list"]), json!([]));
    assert_eq!(platform.json(&["endpoints", "list"]), json!([]));
    let ops = platform.json(&["operations", "list"]);
    assert!(ops.as_array().is_some_and(|ops| ops.iter().all(|op| op["done"] == true)), "{ops}");

    // Logging out revokes the token: a copy of it stops working.
    let token = platform.ok(&["auth", "print-token"]).trim().to_string();
    platform.ok(&["auth", "logout"]);
    let refused = platform.fails(1, &["--token", &token, "models", "list"]);
    assert!(refused.contains("UNAUTHENTICATED"), "{refused}");
}

#[test]
fn errors_carry_the_servers_message_and_fail() {
    let platform = Platform::start();
    let server = platform.url.clone();
    let ca = platform.ca();
    let admin = platform.admin_token();
    let with = |args: &[&str]| -> Vec<String> {
        ["--server", &server, "--ca-cert", &ca, "--token", &admin]
            .iter()
            .chain(args)
            .map(|s| s.to_string())
            .collect()
    };
    let fails = |code, args: &[&str]| {
        let args = with(args);
        platform.fails(code, &args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    let bad_token = platform
        .fails(1, &["--server", &server, "--ca-cert", &ca, "--token", "not-a-token", "models", "list"]);
    assert!(bad_token.starts_with("error: UNAUTHENTICATED:"), "{bad_token}");
    let wrong_password = platform.cli(
        &["auth", "login", "--server", &server, "--ca-cert", &ca, "--username", "admin", "--password-stdin"],
        "wrong\n",
    );
    assert_eq!(wrong_password.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong_password.stderr).contains("the username or password is wrong"));
    assert!(!platform.config().exists(), "a failed login saves nothing");

    let unknown = fails(1, &["models", "describe", "nope"]);
    assert!(unknown.contains("NOT_FOUND") && unknown.contains("models/nope"), "{unknown}");
    let unknown = fails(1, &["endpoints", "deploy-model", "missing", "--model", "nope"]);
    assert!(unknown.contains("NOT_FOUND"), "{unknown}");

    let untrusted = platform.fails(1, &["--server", &server, "--token", &admin, "models", "list"]);
    assert!(untrusted.contains("--ca-cert"), "without the CA the certificate is refused: {untrusted}");

    // Bad flags fail with clap's status 2 before anything is sent.
    let split = fails(2, &["endpoints", "deploy-model", "e", "--model", "m", "--traffic-split", "0=90"]);
    assert!(split.contains("the percentages add up to 90, not 100"), "{split}");
    let metric = fails(
        2,
        &["endpoints", "deploy-model", "e", "--model", "m", "--autoscaling-metric-specs", "memory=5"],
    );
    assert!(metric.contains("unknown metric `memory`"), "{metric}");
    let env = fails(2, &["models", "import", "--display-name", "x", "--container-env-vars", "A=1"]);
    assert!(env.contains("--container-image-uri"), "{env}");
    let name = fails(1, &["models", "describe", "Not/A/Model"]);
    assert!(name.contains("is not a model name"), "{name}");
    let nothing = fails(1, &["models", "import", "--display-name", "x"]);
    assert!(nothing.contains("--artifact"), "{nothing}");
}

/// The manifests of a deployed model, from the CLI: read them, edit them (dry run first), list
/// the revisions, roll back, and an unsafe edit refused with the path of the problem.
#[test]
fn manifests_are_read_edited_and_rolled_back() {
    let platform = Platform::start();
    platform.login();
    let mlp = root().join("tests/models/mlp.onnx");
    platform.ok(&[
        "models",
        "import",
        "--display-name",
        "mlp",
        "--model-id",
        "mlp",
        "--artifact",
        mlp.to_str().expect("path"),
    ]);
    platform.ok(&["endpoints", "create", "--display-name", "man", "--endpoint-id", "man"]);
    let deployed =
        platform.json(&["endpoints", "deploy-model", "man", "--model", "mlp", "--machine-type", "e2-small"]);
    let id = deployed["deployedModel"]["id"].as_str().expect("deployed model id").to_string();

    // `get` prints YAML that can be redirected to a file; JSON on request; the endpoint's own.
    let original = platform.ok(&["manifests", "get", "man", "--deployed-model-id", &id]);
    assert!(original.contains("kind: Deployment") && original.contains("kind: Service"), "{original}");
    let docs = platform.json(&["manifests", "get", "man", "--deployed-model-id", &id]);
    let kinds: Vec<&str> =
        docs.as_array().expect("a JSON array").iter().filter_map(|d| d["kind"].as_str()).collect();
    assert!(kinds.contains(&"Deployment") && kinds.contains(&"Service"), "{kinds:?}");
    let whole = platform.ok(&["manifests", "get", "man"]);
    assert!(whole.contains(&original.trim_end().to_string()), "the endpoint's include the deployed model's");

    // Add an env var to the container.
    assert_eq!(original.matches("      - env:\n").count(), 1, "{original}");
    let edited = original
        .replace("      - env:\n", "      - env:\n        - name: E2E_EDITED\n          value: 'yes'\n");
    let file = platform.dir.path().join("man.yaml");
    std::fs::write(&file, &edited).expect("write");
    let file = file.to_str().expect("path");

    let dry =
        platform.ok(&["manifests", "apply", "-f", file, "man", "--deployed-model-id", &id, "--dry-run"]);
    assert!(dry.lines().any(|l| l.starts_with('+') && l.contains("E2E_EDITED")), "{dry}");
    assert!(dry.contains("Dry run: nothing was changed."), "{dry}");
    let revisions = platform.json(&["manifests", "revisions", "man", "--deployed-model-id", &id]);
    assert_eq!(revisions.as_array().map(Vec::len), Some(1), "a dry run stores nothing: {revisions}");

    // Without --deployed-model-id: the endpoint has only one.
    let applied = platform.ok(&["manifests", "apply", "-f", file, "man"]);
    assert!(applied.contains("E2E_EDITED"), "the diff is shown before applying: {applied}");
    assert!(applied.ends_with("Applied as revision 2.\n"), "{applied}");
    let current = platform.ok(&["manifests", "get", "man", "--deployed-model-id", &id]);
    assert!(current.contains("E2E_EDITED"), "{current}");
    let again = platform.ok(&["manifests", "apply", "-f", file, "man", "--deployed-model-id", &id]);
    assert!(again.ends_with("No change: nothing was applied.\n"), "{again}");

    let table = platform.ok(&["manifests", "revisions", "man"]);
    let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["REVISION", "SOURCE", "CREATE_TIME"], "{table}");
    assert_eq!((rows[1][0], rows[1][1]), ("1", "rendered"), "{table}");
    assert_eq!((rows[2][0], rows[2][1]), ("2", "edited"), "{table}");
    assert_eq!(rows.len(), 3, "{table}");

    let rolled =
        platform.ok(&["manifests", "rollback", "man", "--deployed-model-id", &id, "--revision", "1"]);
    assert!(rolled.contains("as revision 3"), "{rolled}");
    let revisions = platform.json(&["manifests", "revisions", "man", "--deployed-model-id", &id]);
    let sources: Vec<&str> =
        revisions.as_array().expect("revisions").iter().filter_map(|r| r["source"].as_str()).collect();
    assert_eq!(sources, ["rendered", "edited", "rollback"]);
    assert_eq!(revisions[2]["revision"], "3");
    assert_eq!(platform.ok(&["manifests", "get", "man", "--deployed-model-id", &id]), original);

    // An unsafe edit is refused with the path of the problem, and nothing is stored.
    let needle = "        securityContext:\n";
    assert_eq!(original.matches(needle).count(), 1, "one container securityContext: {original}");
    let unsafe_edit = original.replace(needle, &format!("{needle}          privileged: true\n"));
    let file = platform.dir.path().join("unsafe.yaml");
    std::fs::write(&file, unsafe_edit).expect("write");
    let refused = platform.fails(
        1,
        &["manifests", "apply", "-f", file.to_str().expect("path"), "man", "--deployed-model-id", &id],
    );
    assert!(refused.contains("securityContext/privileged"), "{refused}");
    assert!(refused.contains("INVALID_ARGUMENT"), "{refused}");
    let revisions = platform.json(&["manifests", "revisions", "man", "--deployed-model-id", &id]);
    assert_eq!(revisions.as_array().map(Vec::len), Some(3), "{revisions}");

    // Errors of the CLI's own: a rollback to a revision that does not exist, a missing file.
    let missing =
        platform.fails(1, &["manifests", "rollback", "man", "--deployed-model-id", &id, "--revision", "9"]);
    assert!(missing.contains("NOT_FOUND"), "{missing}");
    let no_file = platform.fails(1, &["manifests", "apply", "-f", "/nonexistent.yaml", "man"]);
    assert!(no_file.contains("/nonexistent.yaml"), "{no_file}");
}
