//! One replica: its process, probes, restarts with backoff, and status.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::LocalConfig;
use super::engine::{self, Engine};
use super::launch::{EnvSource, Launch, Mode, ProbeSpec};
use super::probe::{self, Clients, ExecTarget};
use super::process::{self, PidRecord, Spawned};
use crate::backend::{ReplicaState, ReplicaStatus};
use crate::manifests::expand::{expand, expand_env};

/// Lines of output kept in `last_error`.
const TAIL_LINES: usize = 5;
const READINESS_FAILED: &str = "readiness probe failed";

/// What supervisors tell the backend.
pub(crate) enum Event {
    /// A replica of this deployment changed readiness or crashed.
    Changed(String),
    /// A replica stopped for good; its port is free again.
    Stopped { port: u16 },
}

/// Shared by all supervisors of one backend.
pub(crate) struct Ctx {
    pub cfg: Arc<LocalConfig>,
    pub clients: Clients,
    pub events: mpsc::UnboundedSender<Event>,
}

#[derive(Debug, Clone)]
struct Status {
    state: ReplicaState,
    ready: bool,
    restarts: u32,
    last_error: Option<String>,
    pid: Option<u32>,
}

pub(crate) struct Replica {
    pub id: String,
    pub deployment: String,
    pub addr: SocketAddr,
    pub launch: Arc<Launch>,
    pub log_path: PathBuf,
    pub pid_path: PathBuf,
    status: Mutex<Status>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Replica {
    /// Creates the replica and starts its supervisor.
    pub fn start(
        id: String,
        deployment: String,
        addr: SocketAddr,
        launch: Arc<Launch>,
        dir: &Path,
        ctx: Arc<Ctx>,
    ) -> Arc<Replica> {
        let (stop, _) = watch::channel(false);
        let replica = Arc::new(Replica {
            log_path: dir.join(format!("{id}.log")),
            pid_path: dir.join(format!("{id}.pid")),
            id,
            deployment,
            addr,
            launch,
            status: Mutex::new(Status {
                state: ReplicaState::Starting,
                ready: false,
                restarts: 0,
                last_error: None,
                pid: None,
            }),
            stop,
            task: Mutex::new(None),
        });
        let handle = tokio::spawn(supervise(replica.clone(), ctx));
        *lock(&replica.task) = Some(handle);
        replica
    }

    pub fn status(&self) -> ReplicaStatus {
        let s = lock(&self.status).clone();
        ReplicaStatus {
            id: self.id.clone(),
            address: self.addr,
            ready: s.ready,
            restarts: s.restarts,
            last_error: s.last_error,
            state: s.state,
            current: true,
        }
    }

    pub fn ready(&self) -> bool {
        lock(&self.status).ready
    }

    pub fn pid(&self) -> Option<u32> {
        lock(&self.status).pid
    }

    /// Asks the supervisor to stop the process (SIGTERM, then SIGKILL after the grace period).
    /// The replica stops being ready at once.
    pub fn request_stop(&self) {
        lock(&self.status).ready = false;
        self.stop.send_replace(true);
    }

    /// Whether the supervisor has finished (the process is gone).
    pub fn finished(&self) -> bool {
        lock(&self.task).as_ref().is_none_or(|h| h.is_finished())
    }

    /// Waits until the supervisor has finished.
    pub async fn wait_stopped(&self) {
        let handle = lock(&self.task).take();
        if let Some(handle) = handle {
            let _ = handle.await;
        }
    }

    /// Kills the process group at once (when the backend is dropped without a shutdown).
    pub fn kill_now(&self) {
        self.stop.send_replace(true);
        if let Some(pid) = self.pid() {
            process::signal_group(pid, libc::SIGKILL);
        }
    }

    fn update(&self, f: impl FnOnce(&mut Status)) {
        f(&mut lock(&self.status));
    }

    fn container_name(&self) -> String {
        format!("platform-{}", self.id)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Exponential restart backoff: initial, doubled each time, capped.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { initial, max, next: initial.min(max) }
    }

    /// The delay before the next restart.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    pub fn reset(&mut self) {
        self.next = self.initial.min(self.max);
    }
}

enum Outcome {
    Exited(String),
    Unhealthy(String),
    Stop,
}

async fn supervise(rep: Arc<Replica>, ctx: Arc<Ctx>) {
    let cfg = ctx.cfg.clone();
    let mut stop = rep.stop.subscribe();
    let mut backoff = Backoff::new(cfg.backoff_initial, cfg.backoff_max);
    let changed = || {
        let _ = ctx.events.send(Event::Changed(rep.deployment.clone()));
    };
    let mut attempt = 0u32;
    loop {
        if *stop.borrow() {
            break;
        }
        attempt += 1;
        let started = Instant::now();
        let env = replica_env(&cfg, &rep);
        match start_process(&rep, &env, &cfg, attempt).await {
            Err(why) => {
                process::log_note(&rep.log_path, &why);
                rep.update(|s| {
                    s.state = ReplicaState::Failed;
                    s.ready = false;
                    s.last_error = Some(why);
                    s.pid = None;
                });
                changed();
            }
            Ok((mut spawned, log_offset)) => {
                let pid = spawned.pid;
                rep.update(|s| {
                    s.state = ReplicaState::Starting;
                    s.ready = false;
                    s.pid = Some(pid);
                });
                let record = PidRecord {
                    pid,
                    start_time: process::start_time(pid),
                    port: rep.addr.port(),
                    container: matches!(rep.launch.mode, Mode::Engine { .. }).then(|| rep.container_name()),
                    engine: match &rep.launch.mode {
                        Mode::Engine { engine, .. } => Some(engine.program.clone()),
                        _ => None,
                    },
                };
                if let Err(e) = process::write_pid_file(&rep.pid_path, &record) {
                    tracing::warn!(replica = %rep.id, "cannot write {}: {e}", rep.pid_path.display());
                }
                let outcome = tokio::select! {
                    status = &mut spawned.exit => Outcome::Exited(describe_exit(status)),
                    reason = watch_probes(&rep, &ctx, &env.all, started) => Outcome::Unhealthy(reason),
                    _ = stop.wait_for(|s| *s) => Outcome::Stop,
                };
                let was_ready = rep.ready();
                rep.update(|s| s.ready = false);
                if was_ready {
                    changed();
                }
                let grace = cfg.max_grace.map_or(rep.launch.grace, |m| m.min(rep.launch.grace));
                let reason = match outcome {
                    Outcome::Stop => {
                        terminate(&rep, &mut spawned, grace).await;
                        let _ = std::fs::remove_file(&rep.pid_path);
                        break;
                    }
                    Outcome::Unhealthy(reason) => {
                        process::log_note(&rep.log_path, &format!("{reason}; restarting"));
                        terminate(&rep, &mut spawned, grace).await;
                        reason
                    }
                    Outcome::Exited(how) => {
                        // Whatever else runs in the replica's process group goes with it.
                        process::signal_group(pid, libc::SIGKILL);
                        if let Mode::Engine { engine, .. } = &rep.launch.mode {
                            engine::remove_container(&engine.program, &rep.container_name()).await;
                        }
                        process::log_note(&rep.log_path, &how);
                        how
                    }
                };
                let _ = std::fs::remove_file(&rep.pid_path);
                let tail = process::tail(&rep.log_path, log_offset, TAIL_LINES);
                let message = if tail.is_empty() {
                    reason
                } else {
                    format!("{reason}; last output:\n{}", tail.join("\n"))
                };
                rep.update(|s| {
                    s.state = ReplicaState::CrashLoop;
                    s.restarts += 1;
                    s.last_error = Some(message);
                    s.pid = None;
                });
                changed();
                if started.elapsed() >= cfg.backoff_reset_after {
                    backoff.reset();
                }
            }
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    rep.update(|s| {
        s.ready = false;
        s.pid = None;
    });
    let _ = std::fs::remove_file(&rep.pid_path);
    let _ = ctx.events.send(Event::Stopped { port: rep.addr.port() });
    changed();
}

fn describe_exit(
    status: Result<std::io::Result<ExitStatus>, tokio::sync::oneshot::error::RecvError>,
) -> String {
    match status {
        Ok(Ok(s)) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("the process exited with status {code}"),
            (None, Some(sig)) => format!("the process was killed by signal {sig}"),
            _ => format!("the process ended: {s}"),
        },
        Ok(Err(e)) => format!("waiting for the process failed: {e}"),
        Err(_) => "the process was lost".into(),
    }
}

/// SIGTERM to the process group, SIGKILL after `grace`; then removes its container, if any.
async fn terminate(rep: &Replica, spawned: &mut Spawned, grace: Duration) {
    process::signal_group(spawned.pid, libc::SIGTERM);
    if tokio::time::timeout(grace, &mut spawned.exit).await.is_err() {
        process::signal_group(spawned.pid, libc::SIGKILL);
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut spawned.exit).await;
    }
    // Children that ignored SIGTERM but outlived the leader.
    process::signal_group(spawned.pid, libc::SIGKILL);
    if let Mode::Engine { engine, .. } = &rep.launch.mode {
        engine::remove_container(&engine.program, &rep.container_name()).await;
    }
}

/// The replica's environment: inherited host variables, then the pod's env expanded with the
/// Kubernetes rules, with the replica's own port.
fn replica_env(cfg: &LocalConfig, rep: &Replica) -> ReplicaEnv {
    let launch = &rep.launch;
    let runtime = matches!(launch.mode, Mode::Runtime { .. });
    let port = rep.addr.port().to_string();
    let mut pod: Vec<(String, String)> = launch
        .env
        .iter()
        .map(|(k, src)| {
            let v = match src {
                EnvSource::Value(v) => v.clone(),
                EnvSource::PodName => rep.id.clone(),
            };
            (k.clone(), v)
        })
        .collect();
    if !matches!(launch.mode, Mode::Engine { .. }) {
        // Each process listens on its own loopback port; earlier references see it too.
        for name in ["AIP_HTTP_PORT", "PORT"] {
            let mut found = false;
            for entry in pod.iter_mut().filter(|(k, _)| k == name) {
                entry.1 = port.clone();
                found = true;
            }
            if !found {
                pod.insert(0, (name.to_string(), port.clone()));
            }
        }
    }
    if runtime {
        let defaults = [
            ("PLATFORM_RUNTIME_HOST", cfg.host.to_string()),
            ("PLATFORM_CACHE_DIR", cfg.data_dir.join("cache").join("runtime").display().to_string()),
            ("PLATFORM_WORKERS", launch.requests.cpu_millis.div_ceil(1000).max(1).to_string()),
        ];
        for (k, v) in defaults {
            if !pod.iter().any(|(n, _)| n == k) {
                pod.push((k.to_string(), v));
            }
        }
    }
    let expanded = expand_env(&HashMap::new(), pod.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut all: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| cfg.inherits(k, runtime) && !expanded.iter().any(|(n, _)| n == k))
        .collect();
    all.sort();
    all.extend(expanded.iter().cloned());
    ReplicaEnv { all, pod: expanded }
}

/// A replica's environment.
struct ReplicaEnv {
    /// Everything the process gets.
    all: Vec<(String, String)>,
    /// The pod's own variables, expanded: what `$(VAR)` in command and args refers to.
    pod: Vec<(String, String)>,
}

async fn start_process(
    rep: &Replica,
    env: &ReplicaEnv,
    cfg: &LocalConfig,
    attempt: u32,
) -> Result<(Spawned, u64), String> {
    let launch = &rep.launch;
    let lookup = |name: &str| env.pod.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let exp = |s: &String| expand(s, lookup);
    let command: Vec<String> = launch.command.iter().map(exp).collect();
    let args: Vec<String> = launch.args.iter().map(exp).collect();

    let mut cmd = match &launch.mode {
        Mode::Runtime { exe } => {
            let mut cmd = Command::new(exe);
            cmd.arg("runtime").args(&args);
            cmd
        }
        Mode::Host => {
            let Some((program, rest)) = command.split_first() else {
                return Err("the container has no command".into());
            };
            let mut cmd = Command::new(program);
            cmd.args(rest).args(&args);
            if let Some(dir) = &launch.working_dir {
                cmd.current_dir(dir);
            }
            cmd
        }
        Mode::Engine { engine, image } => {
            engine::remove_container(&engine.program, &rep.container_name()).await;
            engine_command(engine, image, rep, cfg, &command, &args)
        }
    };
    cmd.env_clear().envs(env.all.iter().map(|(k, v)| (k, v)));

    std::fs::create_dir_all(rep.log_path.parent().unwrap_or(Path::new(".")))
        .map_err(|e| format!("cannot create the replica directory: {e}"))?;
    let (log, offset) = process::open_log(&rep.log_path, cfg.max_log_bytes)
        .map_err(|e| format!("cannot open the log {}: {e}", rep.log_path.display()))?;
    let (stdin, stdout, stderr) =
        process::log_stdio(&log).map_err(|e| format!("cannot set up the log: {e}"))?;
    cmd.stdin(stdin).stdout(stdout).stderr(stderr);
    let shown = format!("{:?} {:?}", cmd.get_program(), cmd.get_args().collect::<Vec<_>>());
    process::log_note(
        &rep.log_path,
        &format!("start #{attempt} of replica {} on {}: {shown}", rep.id, rep.addr),
    );
    let program = cmd.get_program().to_string_lossy().into_owned();
    let spawned = process::spawn(cmd, cfg.die_with_parent).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("cannot start `{program}`: not found"),
        _ => format!("cannot start `{program}`: {e}"),
    })?;
    Ok((spawned, offset))
}

fn engine_command(
    engine: &Engine,
    image: &str,
    rep: &Replica,
    cfg: &LocalConfig,
    command: &[String],
    args: &[String],
) -> Command {
    let launch = &rep.launch;
    let mut cmd = Command::new(&engine.program);
    cmd.args(["run", "--rm", "--name", &rep.container_name()]);
    cmd.args(["--label", &format!("platform.local/replica={}", rep.id)]);
    cmd.arg("-p").arg(format!("{}:{}:{}", cfg.host, rep.addr.port(), launch.container_port));
    let limits = if launch.limits.cpu_millis > 0 { launch.limits } else { launch.requests };
    if limits.cpu_millis > 0 {
        cmd.arg("--cpus").arg(format!("{:.3}", limits.cpu_millis as f64 / 1000.0));
    }
    if limits.memory_bytes > 0 {
        cmd.arg("--memory").arg(format!("{}b", limits.memory_bytes));
    }
    if launch.gpus > 0 {
        cmd.arg("--gpus").arg(launch.gpus.to_string());
    }
    if launch.drop_all_capabilities {
        cmd.args(["--cap-drop", "ALL"]);
    }
    if launch.no_new_privileges {
        cmd.args(["--security-opt", "no-new-privileges"]);
    }
    if launch.read_only_root {
        cmd.arg("--read-only");
    }
    // Values travel in the engine's own environment, not on its command line.
    for (name, _) in &launch.env {
        cmd.arg("-e").arg(name);
    }
    if let Some(dir) = &launch.working_dir {
        cmd.arg("-w").arg(dir);
    }
    match command.split_first() {
        Some((entry, rest)) => {
            cmd.arg("--entrypoint").arg(entry).arg(image).args(rest).args(args);
        }
        None => {
            cmd.arg(image).args(args);
        }
    }
    cmd
}

async fn run_check(
    p: &ProbeSpec,
    rep: &Replica,
    ctx: &Ctx,
    env: &[(String, String)],
    container: &str,
) -> Result<(), String> {
    let exec = match &rep.launch.mode {
        Mode::Engine { engine, .. } => ExecTarget::Container { engine: &engine.program, name: container },
        _ => ExecTarget::Host { env, working_dir: rep.launch.working_dir.as_deref() },
    };
    probe::check(p, rep.addr, &ctx.clients, exec).await
}

/// Runs the startup probe, then readiness and liveness, until liveness (or startup) fails:
/// returns why the replica must be restarted. Readiness only changes the ready flag.
async fn watch_probes(rep: &Replica, ctx: &Ctx, env: &[(String, String)], started: Instant) -> String {
    let launch = &rep.launch;
    let cfg = &ctx.cfg;
    let container = rep.container_name();
    let check = |p| run_check(p, rep, ctx, env, &container);

    if let Some(startup) = &launch.startup {
        tokio::time::sleep_until(started + startup.initial_delay).await;
        let period = cfg.readiness_period.unwrap_or(startup.period);
        let mut failures = 0;
        loop {
            match check(startup).await {
                Ok(()) => break,
                Err(why) => {
                    failures += 1;
                    if failures >= startup.failure_threshold {
                        return format!("startup probe failed {failures} times: {why}");
                    }
                }
            }
            tokio::time::sleep(period).await;
        }
    }
    let readiness = async {
        let Some(p) = &launch.readiness else {
            rep.update(|s| {
                s.ready = true;
                s.state = ReplicaState::Ready;
            });
            let _ = ctx.events.send(Event::Changed(rep.deployment.clone()));
            return std::future::pending::<()>().await;
        };
        tokio::time::sleep_until(started + p.initial_delay).await;
        let period = cfg.readiness_period.unwrap_or(p.period);
        let (mut ok, mut failed, mut ever_ready) = (0u32, 0u32, false);
        loop {
            let result = check(p).await;
            let mut flipped = false;
            match result {
                Ok(()) => {
                    ok += 1;
                    failed = 0;
                    if ok >= p.success_threshold && !rep.ready() {
                        rep.update(|s| {
                            s.ready = true;
                            s.state = ReplicaState::Ready;
                        });
                        ever_ready = true;
                        flipped = true;
                    }
                }
                Err(why) => {
                    ok = 0;
                    failed += 1;
                    if failed >= p.failure_threshold {
                        let was_ready = rep.ready();
                        let message = format!("{READINESS_FAILED} {failed} times: {why}");
                        rep.update(|s| {
                            if was_ready {
                                s.ready = false;
                                s.state = ReplicaState::Unready;
                                s.last_error = Some(message);
                            } else if s.last_error.as_deref().is_none_or(|e| e.starts_with(READINESS_FAILED))
                            {
                                // Why a replica does not become ready, unless a crash says more.
                                s.last_error = Some(message);
                            }
                        });
                        flipped = was_ready;
                    }
                }
            }
            if flipped {
                let _ = ctx.events.send(Event::Changed(rep.deployment.clone()));
            }
            // Until the first success, look more often than the period so that a replica is
            // routed to as soon as it is ready.
            let wait = if ever_ready { period } else { period.min(cfg.first_ready_poll) };
            tokio::time::sleep(wait).await;
        }
    };
    let liveness = async {
        let Some(p) = &launch.liveness else { return std::future::pending::<String>().await };
        tokio::time::sleep_until(started + p.initial_delay).await;
        let period = cfg.liveness_period.unwrap_or(p.period);
        let mut failed = 0u32;
        loop {
            match check(p).await {
                Ok(()) => failed = 0,
                Err(why) => {
                    failed += 1;
                    if failed >= p.failure_threshold {
                        return format!("liveness probe failed {failed} times: {why}");
                    }
                }
            }
            tokio::time::sleep(period).await;
        }
    };
    tokio::select! {
        _ = readiness => "readiness stopped".to_string(),
        reason = liveness => reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let delays: Vec<u64> = (0..9).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }
}
