//! What the benchmarks share: a closed-loop HTTP load generator, the CPU accounting of a
//! measuring window (the bench, the servers' process trees, everything else), and servers
//! started as child processes that are stopped with their descendants.
//!
//! The load generator runs exactly C request loops, each on its own keep-alive HTTP/1.1
//! connection, each sending its next request when the previous answer has arrived. After a
//! warm-up it records every latency that completes inside the measuring window; an answer that
//! is not a 200 containing the expected marker counts as an error.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// How long one request may take before it counts as an error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What a load loop sends, and the marker of a good answer.
#[derive(Clone)]
pub struct Request {
    pub url: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: Bytes,
    /// Bytes a good answer contains (`"predictions"`).
    pub expect: &'static [u8],
}

impl Request {
    /// A POST of `body` to `url` with `content_type`.
    pub fn post(url: String, content_type: &'static str, body: Bytes, expect: &'static [u8]) -> Request {
        let mut headers = reqwest::header::HeaderMap::new();
        headers
            .insert(reqwest::header::CONTENT_TYPE, reqwest::header::HeaderValue::from_static(content_type));
        Request { url, headers, body, expect }
    }

    /// Adds `Authorization: Bearer <token>`.
    pub fn bearer(mut self, token: &str) -> Request {
        let value = format!("Bearer {token}").parse().expect("a token is a valid header value");
        self.headers.insert(reqwest::header::AUTHORIZATION, value);
        self
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Request {
        self.headers.insert(name, value.parse().expect("a valid header value"));
        self
    }

    pub fn send(&self, client: &reqwest::Client) -> reqwest::RequestBuilder {
        client.post(&self.url).headers(self.headers.clone()).body(self.body.clone())
    }

    /// Sends once; Ok with the body when the answer is a 200 with the marker.
    pub async fn check(&self, client: &reqwest::Client) -> Result<Bytes, String> {
        let answer = self.send(client).send().await.map_err(|e| format!("{}: {e}", self.url))?;
        let status = answer.status();
        let body = answer.bytes().await.map_err(|e| format!("{}: {e}", self.url))?;
        if status != 200 || !contains(&body, self.expect) {
            return Err(format!("{} answered {status}: {}", self.url, String::from_utf8_lossy(&body)));
        }
        Ok(body)
    }
}

/// A bench setting: the number in the environment variable `name`, in (0, `max`], or `default`
/// when it is unset or empty.
pub fn env_number(name: &str, default: f64, max: f64) -> Result<f64, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => match v.trim().parse::<f64>() {
            Ok(x) if x > 0.0 && x <= max => Ok(x),
            _ => Err(format!("{name}={v}: must be a number in (0, {max}]")),
        },
        _ => Ok(default),
    }
}

/// Where a bench writes its report: `bench/` under `$CARGO_TARGET_DIR` (relative to `root`,
/// the workspace) or under `root/target`.
pub fn report_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root.join(p) })
        .unwrap_or_else(|| root.join("target"))
        .join("bench")
}

/// A client for one load loop: HTTP/1.1 only, one keep-alive connection, no proxy, Nagle off;
/// trusting `ca` (PEM) for HTTPS when given.
pub fn client(ca: Option<&[u8]>) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1)
        .timeout(REQUEST_TIMEOUT);
    if let Some(ca) = ca {
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(ca)?);
    }
    builder.build()
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Latencies (ns) that completed inside the window, and the failed requests.
#[derive(Debug, Default)]
pub struct Outcome {
    pub latencies: Vec<u64>,
    pub errors: u64,
}

impl Outcome {
    /// The `p` quantile (0..=1) in ms; NaN without latencies. Sorts first.
    pub fn percentile_ms(&mut self, p: f64) -> f64 {
        self.latencies.sort_unstable();
        percentile_ms(&self.latencies, p)
    }
}

/// The `p` quantile (0..=1) of sorted latencies (ns), in ms.
pub fn percentile_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1e6
}

/// C request loops started at once, measuring from `window_start` to `window_end`.
pub struct Load {
    pub window_start: Instant,
    pub window_end: Instant,
    tasks: Vec<tokio::task::JoinHandle<Outcome>>,
}

impl Load {
    /// Starts one loop per client: each sends `request` until the window ends.
    pub fn start(clients: Vec<reqwest::Client>, request: &Request, warmup: f64, seconds: f64) -> Load {
        let window_start = Instant::now() + Duration::from_secs_f64(warmup);
        let window_end = window_start + Duration::from_secs_f64(seconds);
        let request = Arc::new(request.clone());
        let tasks = clients
            .into_iter()
            .map(|client| {
                let request = request.clone();
                tokio::spawn(async move {
                    let mut out = Outcome::default();
                    loop {
                        let t0 = Instant::now();
                        if t0 >= window_end {
                            break;
                        }
                        let ok = match request.send(&client).send().await {
                            Ok(response) => {
                                let status = response.status();
                                match response.bytes().await {
                                    Ok(b) => status == 200 && contains(&b, request.expect),
                                    Err(_) => false,
                                }
                            }
                            Err(_) => false,
                        };
                        let t1 = Instant::now();
                        if !ok {
                            out.errors += 1;
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        } else if t1 >= window_start && t1 <= window_end {
                            out.latencies.push((t1 - t0).as_nanos() as u64);
                        }
                    }
                    out
                })
            })
            .collect();
        Load { window_start, window_end, tasks }
    }

    /// Waits for every loop to end; all their latencies and errors.
    pub async fn finish(self) -> Result<Outcome, String> {
        let mut all = Outcome::default();
        for task in self.tasks {
            // Each loop ends at the window's end plus at most one request timeout.
            let out = tokio::time::timeout(REQUEST_TIMEOUT * 2, task)
                .await
                .map_err(|_| "a request loop did not finish".to_string())?
                .map_err(|e| format!("a request loop failed: {e}"))?;
            all.latencies.extend(out.latencies);
            all.errors += out.errors;
        }
        Ok(all)
    }

    /// Runs to the end, taking CPU snapshots at the window's edges (with `servers`' trees).
    pub async fn measure(self, servers: &[u32]) -> Result<(Outcome, CpuUse), String> {
        let seconds = (self.window_end - self.window_start).as_secs_f64();
        tokio::time::sleep_until(self.window_start.into()).await;
        let cpu0 = CpuSnapshot::take(servers);
        tokio::time::sleep_until(self.window_end.into()).await;
        let cpu1 = CpuSnapshot::take(servers);
        let out = self.finish().await?;
        Ok((out, cpu0.usage_until(&cpu1, seconds)))
    }
}

// ---------------------------------------------------------------------------------------------
// CPU accounting.

/// CPU used during the measuring window, in cores (CPU seconds per second).
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuUse {
    /// The bench process: the load generator (or, in-process, the inference threads).
    pub bench: Option<f64>,
    /// The servers' process trees.
    pub server: Option<f64>,
    /// Everything else on the machine: noise from other processes.
    pub other: Option<f64>,
}

/// CPU seconds used so far: (this process, the servers' trees, the whole machine).
#[derive(Clone, Copy)]
pub struct CpuSnapshot {
    bench: Option<f64>,
    server: Option<f64>,
    machine: Option<f64>,
}

impl CpuSnapshot {
    pub fn take(servers: &[u32]) -> CpuSnapshot {
        let server = if servers.is_empty() {
            None
        } else {
            servers.iter().map(|pid| process_tree_cpu(*pid, true)).sum::<Option<f64>>()
        };
        CpuSnapshot {
            bench: process_tree_cpu(std::process::id(), false),
            server,
            machine: machine_busy_cpu(),
        }
    }

    pub fn usage_until(&self, after: &CpuSnapshot, seconds: f64) -> CpuUse {
        let d = |a: Option<f64>, b: Option<f64>| Some((b? - a?) / seconds);
        let bench = d(self.bench, after.bench);
        let server = d(self.server, after.server);
        let machine = d(self.machine, after.machine);
        let other = machine.and_then(|m| Some((m - bench? - server.unwrap_or(0.0)).max(0.0)));
        CpuUse { bench, server, other }
    }
}

/// (pid, start time) of every live descendant of `pid`.
/// SIGKILL to each of `processes` (pid, start time, as [`descendants`] lists them) that still
/// runs, checking that the pid still names the same process.
pub fn kill_survivors(processes: &[(u32, u64)]) {
    for &(pid, started) in processes {
        let same = procfs::process::Process::new(pid as i32)
            .and_then(|p| p.stat())
            .is_ok_and(|st| st.starttime == started);
        if same {
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}

pub fn descendants(pid: u32) -> Vec<(u32, u64)> {
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    let all: Vec<procfs::process::Stat> = all.filter_map(|p| p.ok()?.stat().ok()).collect();
    let mut found = Vec::new();
    let mut frontier = vec![pid as i32];
    while let Some(parent) = frontier.pop() {
        for st in all.iter().filter(|st| st.ppid == parent) {
            found.push((st.pid as u32, st.starttime));
            frontier.push(st.pid);
        }
    }
    found
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = procfs::process::Process::new(pid as i32).ok()?.stat().ok()?;
    Some(stat.utime + stat.stime)
}

/// CPU time used so far by `pid` (and its descendants), in seconds.
pub fn process_tree_cpu(pid: u32, with_descendants: bool) -> Option<f64> {
    let mut ticks = cpu_ticks(pid)?;
    if with_descendants {
        for (d, _) in descendants(pid) {
            ticks += cpu_ticks(d).unwrap_or(0);
        }
    }
    Some(ticks as f64 / procfs::ticks_per_second() as f64)
}

/// Busy CPU time of the whole machine so far (user, nice, system, irq, softirq, steal), in
/// seconds, from `/proc/stat`.
pub fn machine_busy_cpu() -> Option<f64> {
    use procfs::CurrentSI;
    let t = procfs::KernelStats::current().ok()?.total;
    let busy =
        t.user + t.nice + t.system + t.irq.unwrap_or(0) + t.softirq.unwrap_or(0) + t.steal.unwrap_or(0);
    Some(busy as f64 / procfs::ticks_per_second() as f64)
}

/// The model name of the first CPU, as /proc/cpuinfo gives it.
pub fn cpu_model() -> String {
    use procfs::Current;
    procfs::CpuInfo::current()
        .ok()
        .and_then(|info| info.model_name(0).map(str::to_string))
        .unwrap_or_else(|| "unknown CPU".into())
}

// ---------------------------------------------------------------------------------------------
// Child processes.

/// A server started by a benchmark; stopped (with its descendants) when dropped.
pub struct Server {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Server {
    /// Starts `cmd` with its output in `log`. If the benchmark dies without running
    /// destructors, the server gets SIGTERM (tied to the spawning thread: call it from the
    /// bench's main thread).
    pub fn start(name: &str, mut cmd: Command, log: &Path) -> Result<Server, String> {
        let out = File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| format!("starting {name}: {e}"))?;
        Ok(Server { name: name.to_string(), child, log: log.to_path_buf() })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error with the log's tail when the server has exited.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(format!(
                "{} exited ({status}); its log {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log)
            )),
            _ => Ok(()),
        }
    }

    /// Waits until `GET url` answers 200 (with `client`) and `ready()` holds.
    pub async fn wait_ready(
        &mut self,
        client: &reqwest::Client,
        url: &str,
        timeout: Duration,
        ready: impl Fn() -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            let healthy = matches!(client.get(url).send().await, Ok(r) if r.status() == 200);
            if healthy && ready() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} was not ready after {timeout:?}; its log {}:\n{}",
                    self.name,
                    self.log.display(),
                    tail(&self.log)
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.child.id();
        let descendants = descendants(pid);
        if matches!(self.child.try_wait(), Ok(None)) {
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if matches!(self.child.try_wait(), Ok(None)) {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        // Whatever the server started and left behind (uvicorn's workers, replicas), by pid,
        // checking that the pid still names the same process.
        kill_survivors(&descendants);
    }
}

/// The last 30 lines of a log.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
