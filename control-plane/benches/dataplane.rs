//! Data-plane benchmarks of `platform serve` on the test MLP (`tests/models/mlp.onnx`), one
//! scenario per argument (default: all of them):
//!
//!     cargo bench -p control-plane --bench dataplane -- [overhead] [deploy] [coldstart] [autoscale] [density]
//!
//! - `overhead`: the replica called directly (plain HTTP, the ceiling), through the platform's
//!   gateway (`:predict` with a token, HTTPS; and its plain-HTTP private listener), and through
//!   nginx as a reverse proxy with keep-alive upstreams (TLS-terminating, and plain), on the same
//!   replica, at concurrency 1, 4 and 16. nginx is used when it is installed (`apt-get install
//!   nginx` on Debian, or `BENCH_NGINX=/path/to/nginx`); without it those rows are skipped.
//! - `deploy`: `deployModel` call to the first successful prediction, on a fresh endpoint each.
//! - `coldstart`: with `minReplicaCount` 0, the first requests after scale to zero (a burst, all
//!   held by the gateway) against a warm request.
//! - `autoscale`: 1 then 16 closed-loop clients on a deployed model whose replica takes 4
//!   requests at once (`containerConcurrency` 4, concurrency target 4, up to 4 replicas).
//! - `density`: how many small deployed models are deployed and kept ready at once, and the
//!   memory per ready replica.
//!
//! Environment: `BENCH_SECONDS` (measuring time per cell, default 3), `BENCH_WARMUP_SECONDS`
//! (default 1), `BENCH_DEPLOYS` (default 5), `BENCH_COLD_STARTS` (default 5),
//! `BENCH_COLD_BURST` (requests sent at once to a scaled-to-zero model, default 10),
//! `BENCH_STEP_SECONDS` (the 16-client phase of `autoscale`, default 15), `BENCH_DENSITY`
//! (deployed models of `density`, default 100), `BENCH_NGINX` (the nginx binary),
//! `BENCH_PLATFORM` (another `platform` binary to measure, for example an older build).
//!
//! The load generator (`test_support::load`, shared with `runtime/benches/serving.rs`) runs in
//! this process. The report is printed and written to `target/bench/dataplane.md`; logs go to
//! `target/bench/logs/`. A missed goal never fails the process; an error does.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use common::{LOC, Platform};
use serde_json::{Value, json};
use test_support::load::{self, CpuUse, Server};

const CONCURRENCIES: [usize; 3] = [1, 4, 16];
const SCENARIOS: [&str; 5] = ["overhead", "deploy", "coldstart", "autoscale", "density"];

const DIRECT: &str = "direct (plain HTTP)";
const GATEWAY_TLS: &str = "gateway (HTTPS)";
const NGINX_TLS: &str = "nginx (HTTPS)";
const GATEWAY_PLAIN: &str = "gateway (plain HTTP)";
const NGINX_PLAIN: &str = "nginx (plain HTTP)";

struct Settings {
    seconds: f64,
    warmup: f64,
    deploys: usize,
    cold_starts: usize,
    cold_burst: usize,
    step_seconds: f64,
    density: usize,
    scenarios: Vec<String>,
    out_dir: PathBuf,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("dataplane bench: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let s = settings()?;
    std::fs::create_dir_all(s.out_dir.join("logs"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .enable_all()
        .build()?;
    let mut report = Report::default();
    for scenario in &s.scenarios {
        eprintln!("dataplane bench: {scenario}");
        match scenario.as_str() {
            "overhead" => rt.block_on(overhead(&s, &mut report))?,
            "deploy" => rt.block_on(deploy_time(&s, &mut report))?,
            "coldstart" => rt.block_on(cold_start(&s, &mut report))?,
            "autoscale" => rt.block_on(autoscale(&s, &mut report))?,
            "density" => rt.block_on(density(&s, &mut report))?,
            _ => unreachable!("checked in settings"),
        }
    }
    let text = report.render(&s);
    println!("\n{text}");
    let path = s.out_dir.join("dataplane.md");
    std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("dataplane bench: report written to {}", path.display());
    Ok(())
}

fn settings() -> anyhow::Result<Settings> {
    let float =
        |name: &str, default: f64| load::env_number(name, default, 3600.0).map_err(anyhow::Error::msg);
    // `cargo bench` passes `--bench`; the other arguments name scenarios.
    let mut scenarios: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    for a in &scenarios {
        ensure!(SCENARIOS.contains(&a.as_str()), "unknown scenario {a:?} (one of {})", SCENARIOS.join(", "));
    }
    if scenarios.is_empty() {
        scenarios = SCENARIOS.iter().map(|x| x.to_string()).collect();
    }
    let root = common::root();
    Ok(Settings {
        seconds: float("BENCH_SECONDS", 3.0)?,
        warmup: float("BENCH_WARMUP_SECONDS", 1.0)?,
        deploys: float("BENCH_DEPLOYS", 5.0)? as usize,
        cold_starts: float("BENCH_COLD_STARTS", 5.0)? as usize,
        cold_burst: float("BENCH_COLD_BURST", 10.0)? as usize,
        step_seconds: float("BENCH_STEP_SECONDS", 15.0)?,
        density: float("BENCH_DENSITY", 100.0)? as usize,
        scenarios,
        out_dir: load::report_dir(&root),
    })
}

// ---------------------------------------------------------------------------------------------
// The platform under test.

/// `platform serve` on a fresh data directory; stopped with its replicas when dropped.
struct Running {
    p: Platform,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Running {
    type Target = Platform;
    fn deref(&self) -> &Platform {
        &self.p
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let pid = self.p.child.id();
        let left = load::descendants(pid);
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while matches!(self.p.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        load::kill_survivors(&left);
    }
}

/// Starts `platform serve` with its defaults and `args` (unlike the tests' `common::start`, which
/// shortens the reconcile period), on a fresh data directory, and waits until it answers.
async fn start_platform(s: &Settings, name: &str, args: &[&str]) -> anyhow::Result<Running> {
    let dir = tempfile::tempdir().context("a data directory")?;
    let data = dir.path().join("data");
    let port = common::free_port();
    let stdout = s.out_dir.join(format!("logs/platform-{name}.log"));
    let binary = std::env::var_os("BENCH_PLATFORM").unwrap_or_else(|| env!("CARGO_BIN_EXE_platform").into());
    let mut command = Command::new(binary);
    command
        .args([
            "serve",
            "--data-dir",
            data.to_str().context("path")?,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(args)
        .env("PLATFORM_ADMIN_PASSWORD", "correct-horse")
        .env_remove("PLATFORM_DATABASE_URL")
        .env_remove("PLATFORM_ARTIFACT_STORE")
        .stdout(std::fs::File::create(&stdout)?)
        .stderr(std::fs::File::create(stdout.with_extension("err.log"))?);
    let child = command.spawn().context("starting platform serve")?;
    let base = format!("https://localhost:{port}");
    let mut running = Running {
        p: Platform {
            child,
            base: base.clone(),
            data: data.clone(),
            stdout,
            http: reqwest::Client::new(),
            token: String::new(),
            port,
        },
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = running.p.child.try_wait() {
            bail!("platform serve exited ({status}); see {}", running.p.stdout.display());
        }
        if data.join("tls/ca.pem").exists()
            && data.join("admin-token").exists()
            && let Ok(r) = common::client(&data).get(format!("{base}/healthz")).send().await
            && r.status() == 200
        {
            break;
        }
        ensure!(Instant::now() < deadline, "platform serve not healthy within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.p.token = std::fs::read_to_string(data.join("admin-token"))?.trim().to_string();
    running.p.http = common::client(&data);
    Ok(running)
}

/// The MLP's reference instance as a batch-1 predict body.
fn mlp_body() -> Bytes {
    let instance = common::reference("mlp")["vertex"]["instances"][0].clone();
    Bytes::from(json!({ "instances": [instance] }).to_string())
}

impl Running {
    fn ca(&self) -> Vec<u8> {
        std::fs::read(self.data.join("tls/ca.pem")).expect("the CA")
    }

    async fn api(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let (status, value) = self.call(method, path, body).await;
        ensure!(status == 200, "{method} {path}: {status} {value}");
        Ok(value)
    }

    /// Uploads the MLP as model `id`.
    async fn upload_mlp(&self, id: &str) -> anyhow::Result<()> {
        let artifact = self.upload_artifact(&common::model_path("mlp")).await;
        let uri = artifact["artifactUri"].as_str().context("artifactUri")?;
        let body = json!({"modelId": id, "model": {"displayName": id, "artifactUri": uri}});
        let op = self.api("POST", &format!("{LOC}/models:upload"), Some(body)).await?;
        ensure!(op["done"] == true && op["error"].is_null(), "upload: {op}");
        Ok(())
    }

    async fn create_endpoint(&self, id: &str) -> anyhow::Result<()> {
        let op = self
            .api("POST", &format!("{LOC}/endpoints?endpointId={id}"), Some(json!({"displayName": id})))
            .await?;
        ensure!(op["error"].is_null(), "create endpoint: {op}");
        Ok(())
    }

    /// Sends `deployModel`; returns the operation without waiting for it.
    async fn deploy(&self, endpoint: &str, deployed_model: Value) -> anyhow::Result<Value> {
        let body = json!({"deployedModel": deployed_model, "trafficSplit": {"0": 100}});
        self.api("POST", &format!("{LOC}/endpoints/{endpoint}:deployModel"), Some(body)).await
    }

    async fn wait_done(&self, op: &Value) -> anyhow::Result<Value> {
        let done = self.wait(op).await;
        ensure!(done["error"].is_null(), "operation failed: {done}");
        Ok(done)
    }

    fn predict_url(&self, endpoint: &str) -> String {
        self.url(&format!("{LOC}/endpoints/{endpoint}:predict"))
    }

    /// A `:predict` of the MLP with the admin token, for the load generator.
    fn predict_request(&self, endpoint: &str) -> load::Request {
        load::Request::post(self.predict_url(endpoint), "application/json", mlp_body(), b"\"predictions\"")
            .bearer(&self.token)
    }

    /// The replica processes under the platform: pid, port and predict route.
    fn replicas(&self) -> Vec<ReplicaProcess> {
        load::descendants(self.child.id())
            .into_iter()
            .filter_map(|(pid, _)| {
                let env = procfs::process::Process::new(pid as i32).ok()?.environ().ok()?;
                let get = |k: &str| env.get(std::ffi::OsStr::new(k)).map(|v| v.to_string_lossy().to_string());
                let port = get("AIP_HTTP_PORT")?.parse().ok()?;
                Some((port, ReplicaProcess { pid, port, predict_route: get("AIP_PREDICT_ROUTE")? }))
            })
            // A wrapper process has the replica's environment too: the last one (the deepest).
            .collect::<std::collections::BTreeMap<u16, ReplicaProcess>>()
            .into_values()
            .collect()
    }
}

struct ReplicaProcess {
    pid: u32,
    port: u16,
    predict_route: String,
}

fn deployed_model(machine_type: &str, min: u32, max: u32) -> Value {
    json!({"model": "projects/default/locations/local/models/mlp", "displayName": "mlp",
        "dedicatedResources": {"machineSpec": {"machineType": machine_type},
            "minReplicaCount": min, "maxReplicaCount": max}})
}

// ---------------------------------------------------------------------------------------------
// Report.

/// One measured cell of the overhead table.
struct Cell {
    contender: &'static str,
    concurrency: usize,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: u64,
    errors: u64,
    cpu: CpuUse,
}

#[derive(Default)]
struct Report {
    cells: Vec<Cell>,
    /// Whole sections (markdown) of the other scenarios.
    sections: Vec<String>,
    goals: Vec<Goal>,
    notes: Vec<String>,
}

struct Goal {
    text: String,
    measured: String,
    target: &'static str,
    result: &'static str,
}

impl Report {
    fn goal(&mut self, text: &str, target: &'static str, measured: String, ok: Option<bool>) {
        let result = match ok {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "n/a",
        };
        self.goals.push(Goal { text: text.into(), measured, target, result });
    }

    fn find(&self, contender: &str, c: usize) -> Option<&Cell> {
        self.cells.iter().find(|x| x.contender == contender && x.concurrency == c)
    }

    fn overhead_goals(&mut self) {
        let added = |r: &Report, via: &str, c: usize| -> Option<(f64, f64)> {
            let (d, v) = (r.find(DIRECT, c)?, r.find(via, c)?);
            Some((v.p50_ms - d.p50_ms, v.p99_ms - d.p99_ms))
        };
        let measured = added(self, GATEWAY_TLS, 1);
        self.goal(
            "Gateway (HTTPS), concurrency 1: added p50 over direct",
            "≤ 0.3 ms",
            measured.map_or("not measured".into(), |(p50, _)| format!("{p50:.3} ms")),
            measured.map(|(p50, _)| p50 <= 0.3),
        );
        self.goal(
            "Gateway (HTTPS), concurrency 1: added p99 over direct",
            "≤ 1 ms",
            measured.map_or("not measured".into(), |(_, p99)| format!("{p99:.3} ms")),
            measured.map(|(_, p99)| p99 <= 1.0),
        );
        for (gateway, nginx) in [(GATEWAY_TLS, NGINX_TLS), (GATEWAY_PLAIN, NGINX_PLAIN)] {
            for c in CONCURRENCIES {
                let (g, n) = (added(self, gateway, c), added(self, nginx, c));
                let text = format!("{gateway} vs {nginx}, concurrency {c}: added p50 (and p99)");
                match g.zip(n) {
                    Some(((g50, g99), (n50, n99))) => self.goal(
                        &text,
                        "gateway's p50 ≤ nginx's",
                        format!("{g50:.3} vs {n50:.3} ms (p99 {g99:.3} vs {n99:.3} ms)"),
                        Some(g50 <= n50),
                    ),
                    None => self.goal(&text, "gateway's p50 ≤ nginx's", "not measured".into(), None),
                }
            }
            let (g, n) = (self.find(gateway, 16).map(|c| c.rps), self.find(nginx, 16).map(|c| c.rps));
            let text = format!("{gateway} vs {nginx}, concurrency 16: throughput");
            match g.zip(n) {
                Some((g, n)) => self.goal(
                    &text,
                    "≥ 1x nginx's",
                    format!("{:.2}x ({g:.0} vs {n:.0} req/s)", g / n),
                    Some(g >= n),
                ),
                None => self.goal(&text, "≥ 1x nginx's", "not measured".into(), None),
            }
        }
    }

    fn render(&self, s: &Settings) -> String {
        let mut out = String::new();
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let _ = writeln!(out, "# Data-plane benchmark\n");
        let _ = writeln!(
            out,
            "Machine: {cores} CPUs, {}. {} s measured per cell after {} s of warm-up. CPU columns: cores \
             used during the measuring window by the bench process (the load generator), by the servers' \
             process trees (platform with its replica, or nginx with the replica, or the replica alone), and \
             by every other process on the machine (noise).\n",
            load::cpu_model(),
            s.seconds,
            s.warmup
        );
        if !self.cells.is_empty() {
            let _ = writeln!(out, "## Gateway overhead (test MLP, batch 1)\n");
            let _ = writeln!(
                out,
                "| contender | conc. | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | requests | errors | CPU bench | CPU server | CPU other |"
            );
            let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
            let opt = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{v:.2}"));
            for c in &self.cells {
                let direct = self.find(DIRECT, c.concurrency);
                let added = |f: fn(&Cell) -> f64| match direct {
                    Some(d) if c.contender != DIRECT => format!("{:.3}", f(c) - f(d)),
                    _ => "–".into(),
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.0} | {:.3} | {:.3} | {} | {} | {} | {} | {} | {} | {} |",
                    c.contender,
                    c.concurrency,
                    c.rps,
                    c.p50_ms,
                    c.p99_ms,
                    added(|c| c.p50_ms),
                    added(|c| c.p99_ms),
                    c.requests,
                    c.errors,
                    opt(c.cpu.bench),
                    opt(c.cpu.server),
                    opt(c.cpu.other),
                );
            }
            let _ = writeln!(out);
        }
        for section in &self.sections {
            let _ = writeln!(out, "{section}");
        }
        if !self.goals.is_empty() {
            let _ = writeln!(out, "## Goals\n");
            let _ = writeln!(out, "| goal | measured | target | result |");
            let _ = writeln!(out, "|---|---|---|---|");
            for g in &self.goals {
                let _ = writeln!(out, "| {} | {} | {} | {} |", g.text, g.measured, g.target, g.result);
            }
            let _ = writeln!(out);
        }
        for note in &self.notes {
            let _ = writeln!(out, "{note}\n");
        }
        let busiest = self.cells.iter().filter_map(|c| c.cpu.other).fold(0.0f64, f64::max);
        if busiest > 0.25 {
            let _ = writeln!(
                out,
                "WARNING: other processes used up to {busiest:.2} cores during a measuring window; the \
                 figures are disturbed (run on an otherwise idle machine).\n"
            );
        }
        out
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    if xs.is_empty() { f64::NAN } else { xs[xs.len() / 2] }
}

// ---------------------------------------------------------------------------------------------
// Overhead.

async fn overhead(s: &Settings, report: &mut Report) -> anyhow::Result<()> {
    let private = format!("127.0.0.1:{}", common::free_port());
    let p = start_platform(s, "overhead", &["--cpu-overcommit", "4", "--private-listen", &private]).await?;
    p.upload_mlp("mlp").await?;
    p.create_endpoint("overhead").await?;
    // n1-standard-2: two cores, none taken away from the replica on this machine.
    let op = p.deploy("overhead", deployed_model("n1-standard-2", 1, 1)).await?;
    p.wait_done(&op).await?;
    let replicas = p.replicas();
    ensure!(replicas.len() == 1, "expected one replica process, found {}", replicas.len());
    let replica = &replicas[0];
    let ca = p.ca();

    let body = mlp_body();
    let direct = load::Request::post(
        format!("http://127.0.0.1:{}{}", replica.port, replica.predict_route),
        "application/json",
        body.clone(),
        b"\"predictions\"",
    );
    let gateway_tls = p.predict_request("overhead");
    let mut gateway_plain = gateway_tls.clone();
    gateway_plain.url = format!("http://{private}{LOC}/endpoints/overhead:predict");

    let nginx = match Nginx::start(s, &p.data, replica.port) {
        Ok(n) => Some(n),
        Err(e) => {
            eprintln!("dataplane bench: nginx rows skipped: {e:#}");
            report.notes.push(format!("nginx rows skipped: {e:#}"));
            None
        }
    };
    let mut contenders: Vec<Contender> = vec![
        (DIRECT, direct, None, vec![replica.pid]),
        (GATEWAY_TLS, gateway_tls, Some(&ca[..]), vec![p.child.id()]),
        (GATEWAY_PLAIN, gateway_plain, None, vec![p.child.id()]),
    ];
    if let Some(n) = &nginx {
        let path = &replica.predict_route;
        let tls = load::Request::post(
            format!("https://localhost:{}{path}", n.tls_port),
            "application/json",
            body.clone(),
            b"\"predictions\"",
        );
        let plain = load::Request::post(
            format!("http://127.0.0.1:{}{path}", n.plain_port),
            "application/json",
            body.clone(),
            b"\"predictions\"",
        );
        contenders.insert(2, (NGINX_TLS, tls, Some(&ca[..]), vec![n.server.pid(), replica.pid]));
        contenders.push((NGINX_PLAIN, plain, None, vec![n.server.pid(), replica.pid]));
    }
    for (name, request, ca, _) in &contenders {
        let client = load::client(*ca)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match request.check(&client).await {
                Ok(_) => break,
                Err(e) if Instant::now() > deadline => bail!("{name}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    // The contenders take turns at each concurrency, so that a disturbance of the machine hits
    // them alike.
    for c in CONCURRENCIES {
        for (name, request, ca, pids) in &contenders {
            eprintln!("dataplane bench: overhead: {name}, concurrency {c}");
            let clients = (0..c).map(|_| load::client(*ca)).collect::<Result<Vec<_>, _>>()?;
            let run = load::Load::start(clients, request, s.warmup, s.seconds);
            let (mut out, cpu) = run.measure(pids).await.map_err(anyhow::Error::msg)?;
            let (p50_ms, p99_ms) = (out.percentile_ms(0.5), out.percentile_ms(0.99));
            report.cells.push(Cell {
                contender: name,
                concurrency: c,
                rps: out.latencies.len() as f64 / s.seconds,
                p50_ms,
                p99_ms,
                requests: out.latencies.len() as u64,
                errors: out.errors,
                cpu,
            });
        }
    }
    report.overhead_goals();
    drop(nginx);
    Ok(())
}

/// A way to reach the replica: its name, the request, the CA to trust, the servers' pids.
type Contender<'a> = (&'static str, load::Request, Option<&'a [u8]>, Vec<u32>);

/// nginx as a reverse proxy in front of one replica: TLS-terminating (the platform's own
/// certificate) and plain, with keep-alive connections to the replica.
struct Nginx {
    server: Server,
    tls_port: u16,
    plain_port: u16,
}

impl Nginx {
    fn binary() -> anyhow::Result<PathBuf> {
        if let Some(path) = std::env::var_os("BENCH_NGINX") {
            return Ok(PathBuf::from(path));
        }
        for dir in ["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/nginx/sbin"] {
            let path = Path::new(dir).join("nginx");
            if path.exists() {
                return Ok(path);
            }
        }
        bail!("nginx is not installed: `apt-get install nginx` (Debian), or set BENCH_NGINX to its binary")
    }

    fn start(s: &Settings, data: &Path, upstream_port: u16) -> anyhow::Result<Nginx> {
        let binary = Nginx::binary()?;
        let dir = s.out_dir.join("nginx");
        std::fs::create_dir_all(&dir)?;
        let (tls_port, plain_port) = (common::free_port(), common::free_port());
        let tls = data.join("tls");
        // Two workers (one per core, `auto` here), no access log (nor has the gateway one by
        // default), keep-alive on both sides without a request limit per connection.
        let conf = format!(
            r#"worker_processes auto;
daemon off;
master_process on;
user root;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
    upstream replica {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
        keepalive_requests 10000000;
    }}
    server {{
        listen 127.0.0.1:{tls_port} ssl;
        listen 127.0.0.1:{plain_port};
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://replica;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"#,
            dir = dir.display(),
            cert = tls.join("server.pem").display(),
            key = tls.join("server.key").display(),
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf)?;
        let mut cmd = Command::new(&binary);
        cmd.arg("-c").arg(&path).arg("-p").arg(&dir).arg("-e").arg(dir.join("error.log"));
        let server =
            Server::start("nginx", cmd, &s.out_dir.join("logs/nginx.log")).map_err(anyhow::Error::msg)?;
        Ok(Nginx { server, tls_port, plain_port })
    }
}

// ---------------------------------------------------------------------------------------------
// Time to deploy and cold start.

/// Sends `request` every few milliseconds until one succeeds; when it did.
async fn first_success(
    client: &reqwest::Client,
    request: &load::Request,
    timeout: Duration,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        if request.check(client).await.is_ok() {
            return Ok(Instant::now());
        }
        ensure!(Instant::now() < deadline, "no successful prediction within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn deploy_time(s: &Settings, report: &mut Report) -> anyhow::Result<()> {
    let p = start_platform(s, "deploy", &["--cpu-overcommit", "4"]).await?;
    p.upload_mlp("mlp").await?;
    let client = load::client(Some(&p.ca()[..]))?;
    let mut rows = Vec::new();
    for i in 0..s.deploys {
        let endpoint = format!("deploy{i}");
        p.create_endpoint(&endpoint).await?;
        let request = p.predict_request(&endpoint);
        let t0 = Instant::now();
        let op = p.deploy(&endpoint, deployed_model("e2-small", 1, 1)).await?;
        let first = first_success(&client, &request, Duration::from_secs(60)).await?;
        p.wait_done(&op).await?;
        let took = (first - t0).as_secs_f64() * 1000.0;
        eprintln!("dataplane bench: deploy {i}: first prediction after {took:.0} ms");
        rows.push(took);
        // Undeploy, so that every deploy finds the same machine.
        let id = p.api("GET", &format!("{LOC}/endpoints/{endpoint}"), None).await?["deployedModels"][0]["id"]
            .as_str()
            .context("deployed model id")?
            .to_string();
        let op = p
            .api(
                "POST",
                &format!("{LOC}/endpoints/{endpoint}:undeployModel"),
                Some(json!({"deployedModelId": id})),
            )
            .await?;
        p.wait_done(&op).await?;
    }
    let med = median(rows.clone());
    let mut section =
        String::from("## Time to deploy (test MLP, e2-small, deployModel to first prediction)\n\n");
    let _ = writeln!(section, "| deploy | ms |\n|--:|--:|");
    for (i, r) in rows.iter().enumerate() {
        let _ = writeln!(section, "| {} | {r:.0} |", i + 1);
    }
    let _ = writeln!(section, "| median | {med:.0} |");
    report.sections.push(section);
    report.goal(
        "Time to deploy: deployModel to first successful prediction, median",
        "< 1000 ms",
        format!("{med:.0} ms (min {:.0}, max {:.0}, {} deploys)", min(&rows), max(&rows), rows.len()),
        Some(med < 1000.0),
    );
    Ok(())
}

fn min(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

async fn cold_start(s: &Settings, report: &mut Report) -> anyhow::Result<()> {
    let p = start_platform(s, "coldstart", &["--cpu-overcommit", "4", "--scale-down-delay", "2s"]).await?;
    p.upload_mlp("mlp").await?;
    p.create_endpoint("cold").await?;
    let op = p.deploy("cold", deployed_model("e2-small", 0, 1)).await?;
    p.wait_done(&op).await?;
    let ca = p.ca();
    let request = p.predict_request("cold");
    let mut rows = Vec::new();
    let mut failed = 0usize;
    for i in 0..s.cold_starts {
        // Warm: a replica is up (the first request brings one), then 20 timed requests.
        let client = load::client(Some(&ca[..]))?;
        first_success(&client, &request, Duration::from_secs(60)).await?;
        let mut warm = Vec::new();
        for _ in 0..20 {
            let t0 = Instant::now();
            request.check(&client).await.map_err(anyhow::Error::msg)?;
            warm.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
        let warm = median(warm);
        drop(client);
        // Scale to zero: no replica process left.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !p.replicas().is_empty() {
            ensure!(Instant::now() < deadline, "not scaled to zero within 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Cold: a burst of requests at once, each on its own connection (connections made
        // first, so that the TLS handshakes are not part of the figure).
        let clients =
            (0..s.cold_burst.max(1)).map(|_| load::client(Some(&ca[..]))).collect::<Result<Vec<_>, _>>()?;
        for c in &clients {
            let _ = c.get(p.url("/healthz")).send().await;
        }
        let t0 = Instant::now();
        let answers = futures_util::future::join_all(clients.iter().map(|c| {
            let request = &request;
            async move {
                let ok = request.check(c).await.is_ok();
                (ok, t0.elapsed().as_secs_f64() * 1000.0)
            }
        }))
        .await;
        let first = answers[0].1;
        let all = answers.iter().map(|a| a.1).fold(0.0, f64::max);
        let bad = answers.iter().filter(|a| !a.0).count();
        failed += bad;
        eprintln!(
            "dataplane bench: cold start {i}: first request {first:.0} ms (all {} in {all:.0} ms, {bad} failed), warm {warm:.2} ms",
            answers.len()
        );
        rows.push((first, warm, all, bad));
    }
    let added: Vec<f64> = rows.iter().map(|r| r.0 - r.1).collect();
    let med = median(added.clone());
    let mut section = format!(
        "## Cold start from zero (test MLP, e2-small, minReplicaCount 0, a burst of {} requests)\n\n",
        s.cold_burst
    );
    let _ = writeln!(
        section,
        "| round | first request ms | warm request ms | added ms | whole burst answered ms | failed |\n|--:|--:|--:|--:|--:|--:|"
    );
    for (i, (first, warm, all, bad)) in rows.iter().enumerate() {
        let _ = writeln!(
            section,
            "| {} | {first:.0} | {warm:.2} | {:.0} | {all:.0} | {bad} |",
            i + 1,
            first - warm
        );
    }
    report.sections.push(section);
    report.goal(
        "Cold start from zero: first request minus a warm request, median",
        "≤ 300 ms, every held request answered",
        format!(
            "{med:.0} ms (min {:.0}, max {:.0}); {failed} of {} held requests failed",
            min(&added),
            max(&added),
            rows.len() * s.cold_burst
        ),
        Some(med <= 300.0 && failed == 0),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Autoscaling step.

async fn autoscale(s: &Settings, report: &mut Report) -> anyhow::Result<()> {
    let p = start_platform(s, "autoscale", &["--cpu-overcommit", "8"]).await?;
    p.upload_mlp("mlp").await?;
    p.create_endpoint("step").await?;
    let mut dm = deployed_model("e2-small", 1, 4);
    dm["containerConcurrency"] = json!(4);
    dm["dedicatedResources"]["autoscalingMetricSpecs"] = json!([{"metricName": "concurrency", "target": 4}]);
    let op = p.deploy("step", dm).await?;
    p.wait_done(&op).await?;
    let ca = p.ca();
    let request = p.predict_request("step");

    // Every request's end time, latency and outcome; the ready replicas every 50 ms.
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let spawn_loop = |stop: Arc<AtomicBool>, until: Option<Instant>| {
        let request = request.clone();
        let client = load::client(Some(&ca[..]));
        tokio::spawn(async move {
            let client = client.map_err(|e| e.to_string())?;
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) && until.is_none_or(|u| Instant::now() < u) {
                let a = Instant::now();
                let ok = request.check(&client).await.is_ok();
                let b = Instant::now();
                seen.push(((b - t0).as_secs_f64(), (b - a).as_secs_f64() * 1000.0, ok));
                if !ok {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            Ok::<_, String>(seen)
        })
    };
    let metrics_client = load::client(Some(&ca[..]))?;
    let replicas_seen = Arc::new(std::sync::Mutex::new(Vec::<(f64, u64)>::new()));
    let poller = {
        let (stop, seen, client) = (stop.clone(), replicas_seen.clone(), metrics_client.clone());
        let p_url = p.url("/metrics");
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let text = async { client.get(&p_url).send().await.ok()?.text().await.ok() }.await;
                if let Some(text) = text {
                    let n = text
                        .lines()
                        .filter(|l| l.starts_with("platform_ready_replicas{"))
                        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                        .sum::<f64>() as u64;
                    seen.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(((Instant::now() - t0).as_secs_f64(), n));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let base_seconds = 3.0;
    let step_at = base_seconds;
    let one = spawn_loop(stop.clone(), None);
    tokio::time::sleep(Duration::from_secs_f64(base_seconds)).await;
    let many: Vec<_> = (0..15).map(|_| spawn_loop(stop.clone(), None)).collect();
    tokio::time::sleep(Duration::from_secs_f64(s.step_seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut requests = one.await?.map_err(anyhow::Error::msg)?;
    for m in many {
        requests.extend(m.await?.map_err(anyhow::Error::msg)?);
    }
    poller.await?;
    let timeline = replicas_seen.lock().unwrap_or_else(|e| e.into_inner()).clone();

    let end = step_at + s.step_seconds;
    let during: Vec<&(f64, f64, bool)> = requests.iter().filter(|r| r.0 >= step_at && r.0 <= end).collect();
    let failed = requests.iter().filter(|r| !r.2).count();
    let mut lat: Vec<u64> = during.iter().filter(|r| r.2).map(|r| (r.1 * 1e6) as u64).collect();
    lat.sort_unstable();
    let p99 = load::percentile_ms(&lat, 0.99);
    let p50 = load::percentile_ms(&lat, 0.5);
    let before: Vec<u64> = {
        let mut v: Vec<u64> =
            requests.iter().filter(|r| r.0 < step_at && r.2).map(|r| (r.1 * 1e6) as u64).collect();
        v.sort_unstable();
        v
    };
    let base_replicas = timeline.iter().filter(|t| t.0 < step_at).map(|t| t.1).next_back().unwrap_or(1);
    let added_at = timeline.iter().find(|t| t.0 >= step_at && t.1 > base_replicas).map(|t| t.0 - step_at);
    let peak = timeline.iter().map(|t| t.1).max().unwrap_or(0);
    let peak_at = timeline.iter().find(|t| t.1 == peak).map_or(end, |t| t.0);
    // Flapping: the count going down while the load stays.
    let after_peak: Vec<u64> =
        timeline.iter().filter(|t| t.0 >= peak_at && t.0 <= end).map(|t| t.1).collect();
    let drops = after_peak.windows(2).filter(|w| w[1] < w[0]).count();
    let changes: Vec<String> = {
        let mut v = Vec::new();
        let mut last = None;
        for (t, n) in &timeline {
            if last != Some(*n) {
                v.push(format!("{:+.2} s: {n}", t - step_at));
                last = Some(*n);
            }
        }
        v
    };
    let mut section = String::from(
        "## Autoscaling step (test MLP, e2-small, containerConcurrency 4, concurrency target 4, 1 to 4 replicas)\n\n",
    );
    let _ = writeln!(
        section,
        "1 client for {base_seconds:.0} s, then 16 for {:.0} s. Before the step: p50 {:.3} ms, p99 {:.3} ms. \
         During the step: {} requests, p50 {p50:.3} ms, p99 {p99:.3} ms; {failed} failed in all. Ready \
         replicas (time from the step: count): {}.\n",
        s.step_seconds,
        load::percentile_ms(&before, 0.5),
        load::percentile_ms(&before, 0.99),
        during.len(),
        changes.join(", ")
    );
    report.sections.push(section);
    report.goal(
        "Autoscaling step 1 to 16 clients: added replicas serve (in the routing table)",
        "within 2 s",
        added_at.map_or("no replica added".into(), |t| format!("{t:.2} s (peak {peak} replicas)")),
        Some(added_at.is_some_and(|t| t <= 2.0)),
    );
    report.goal(
        "Autoscaling step: failed requests",
        "0",
        format!("{failed} of {}", requests.len()),
        Some(failed == 0),
    );
    report.goal(
        "Autoscaling step: no flapping at steady load (replica count going down under the step)",
        "0 drops",
        format!("{drops} drops; p99 during the step {p99:.3} ms"),
        Some(drops == 0),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Density.

/// A machine type sized for a small ONNX model, so that reservations do not stop the count
/// before the machine does.
const DENSITY_MACHINE_TYPES: &str = "default: bench-tiny
machineTypes:
  - name: bench-tiny
    cpu: 250m
    memory: 128Mi
";

async fn density(s: &Settings, report: &mut Report) -> anyhow::Result<()> {
    let catalog = s.out_dir.join("density-machine-types.yaml");
    std::fs::write(&catalog, DENSITY_MACHINE_TYPES)?;
    let catalog = catalog.display().to_string();
    let p = start_platform(s, "density", &["--machine-types", &catalog, "--cpu-overcommit", "32"]).await?;
    p.upload_mlp("mlp").await?;
    let ca = p.ca();
    let client = load::client(Some(&ca[..]))?;
    let memory_before = available_memory();
    let t0 = Instant::now();
    let mut ops = Vec::new();
    for i in 0..s.density {
        let endpoint = format!("d{i}");
        p.create_endpoint(&endpoint).await?;
        let op = p.deploy(&endpoint, deployed_model("bench-tiny", 1, 1)).await?;
        ops.push((endpoint, op));
    }
    let mut deployed = 0;
    let mut failures = Vec::new();
    for (endpoint, op) in &ops {
        match p.wait_done(op).await {
            Ok(_) => deployed += 1,
            Err(e) => failures.push(format!("{endpoint}: {e:#}")),
        }
    }
    let deploy_seconds = t0.elapsed().as_secs_f64();
    // Kept ready: every endpoint answers, now and after a while.
    let ready_now = answering(&p, &client, s.density).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let ready_later = answering(&p, &client, s.density).await;
    let replicas = p.replicas();
    let (mut pss, mut rss) = (0u64, 0u64);
    for r in &replicas {
        let (a, b) = memory_of(r.pid);
        pss += a;
        rss += b;
    }
    let platform_rss = memory_of(p.child.id()).1;
    let n = replicas.len().max(1) as f64;
    let mib = |b: f64| b / (1024.0 * 1024.0);
    let memory_after = available_memory();
    let mut section = format!(
        "## Density (test MLP, machine type bench-tiny: 250m CPU, 128Mi memory, CPU overcommit 32)\n\n{} deployed models asked for, \
         {deployed} deployed in {deploy_seconds:.0} s; {ready_now} answered right after, {ready_later} after 10 s \
         more; {} replica processes. Memory per ready replica: PSS {:.1} MiB, RSS {:.1} MiB (mean). The \
         platform process: RSS {:.0} MiB. The machine's available memory went from {:.0} to {:.0} MiB.\n",
        s.density,
        replicas.len(),
        mib(pss as f64 / n),
        mib(rss as f64 / n),
        mib(platform_rss as f64),
        mib(memory_before as f64),
        mib(memory_after as f64),
    );
    if !failures.is_empty() {
        let _ = writeln!(
            section,
            "First failures: {}\n",
            failures.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
        );
    }
    report.sections.push(section);
    report.goal(
        "Density: small ONNX models deployed and kept ready (answering after 10 s)",
        "≥ 100",
        format!("{ready_later} of {} (PSS {:.1} MiB per replica)", s.density, mib(pss as f64 / n)),
        Some(ready_later >= 100),
    );
    Ok(())
}

/// How many of the density endpoints answer a prediction.
async fn answering(p: &Running, client: &reqwest::Client, n: usize) -> usize {
    let ok = AtomicU64::new(0);
    let requests: Vec<load::Request> = (0..n).map(|i| p.predict_request(&format!("d{i}"))).collect();
    futures_util::future::join_all(requests.iter().map(|r| async {
        if r.check(client).await.is_ok() {
            ok.fetch_add(1, Ordering::Relaxed);
        }
    }))
    .await;
    ok.load(Ordering::Relaxed) as usize
}

/// (PSS, RSS) of a process, in bytes.
fn memory_of(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let fields: HashMap<&str, u64> = text
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim(), v.trim().trim_end_matches("kB").trim().parse().ok()?))
        })
        .collect();
    let kib = |name: &str| fields.get(name).copied().unwrap_or(0) * 1024;
    (kib("Pss"), kib("Rss"))
}

/// `MemAvailable` of the machine, in bytes.
fn available_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().find(|l| l.starts_with("MemAvailable:"))?.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .unwrap_or(0)
        * 1024
}
