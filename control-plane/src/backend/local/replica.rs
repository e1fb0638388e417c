//! One replica: its process, probes, restarts with backoff, and status.

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::LocalConfig;
use super::cgroup::ReplicaCgroup;
use super::engine::{self, Engine};
use super::gpu::{Gpu, GpuPool};
use super::images::Images;
use super::launch::{Launch, Mode, ProbeAction, ProbeSpec};
use super::logs;
use super::probe::{self, Clients, ExecTarget};
use super::process::{self, PidRecord};
use super::start::{self, HostSetup, StartError, Started};
use crate::backend::{ReplicaState, ReplicaStatus};

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
    pub host: HostSetup,
    pub images: Arc<Images>,
    pub gpus: Mutex<GpuPool>,
}

#[derive(Debug, Clone)]
struct Status {
    state: ReplicaState,
    ready: bool,
    restarts: u32,
    last_error: Option<String>,
    pid: Option<u32>,
    /// What the replica waits for before it can start (an image pull, a GPU).
    waiting: Option<String>,
    /// Why it cannot start whatever happens next.
    fatal: Option<String>,
    /// The host pid of its container's main process, once known.
    container_pid: Option<u32>,
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
    /// The replica's cgroup while it has one.
    cgroup: Mutex<Option<ReplicaCgroup>>,
    /// The container while one runs: engine and name.
    container: Mutex<Option<(Engine, String)>>,
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
                waiting: None,
                fatal: None,
                container_pid: None,
            }),
            stop,
            task: Mutex::new(None),
            cgroup: Mutex::new(None),
            container: Mutex::new(None),
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

    /// What the replica waits for, and why it cannot start, for the deployment's status.
    pub fn waiting_and_fatal(&self) -> (Option<String>, Option<String>) {
        let s = lock(&self.status);
        (s.waiting.clone(), s.fatal.clone())
    }

    pub(crate) fn set_waiting(&self, waiting: Option<String>) {
        lock(&self.status).waiting = waiting;
    }

    pub fn ready(&self) -> bool {
        lock(&self.status).ready
    }

    pub fn pid(&self) -> Option<u32> {
        lock(&self.status).pid
    }

    /// A key and the CPU time (nanoseconds) the replica used so far: its cgroup's, its
    /// container's, or its process's.
    pub async fn cpu_nanos(&self) -> Option<(u32, u64)> {
        let pid = self.pid()?;
        let cgroup = lock(&self.cgroup).clone();
        if let Some(c) = cgroup {
            return Some((pid, c.cpu_nanos()?));
        }
        let container = lock(&self.container).clone();
        if let Some((engine, name)) = container {
            let known = lock(&self.status).container_pid;
            let main = match known {
                Some(p) => p,
                None => {
                    let p = engine::container_pid(&engine, &name).await?;
                    lock(&self.status).container_pid = Some(p);
                    p
                }
            };
            return Some((main, super::cgroup::cpu_nanos_of(main)?));
        }
        let ticks = process::cpu_ticks(pid)?;
        Some((pid, (ticks as f64 * 1e9 / process::ticks_per_second()) as u64))
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

    /// Kills everything of the replica at once (when the backend is dropped without a
    /// shutdown): its process group, its cgroup, its container.
    pub fn kill_now(&self) {
        self.stop.send_replace(true);
        if let Some(pid) = self.pid() {
            process::signal_group(pid, libc::SIGKILL);
        }
        if let Some(c) = lock(&self.cgroup).as_ref() {
            c.kill_all();
        }
        if let Some((engine, name)) = lock(&self.container).as_ref() {
            let _ = std::process::Command::new(&engine.program)
                .args(&engine.global_args)
                .args(["rm", "-f", name])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }

    fn update(&self, f: impl FnOnce(&mut Status)) {
        f(&mut lock(&self.status));
    }

    /// The name of the replica's container: the platform's owner hash and the replica id.
    pub(crate) fn container_name(&self, owner: &str) -> String {
        format!("platform-{owner}-{}", self.id)
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

/// What a replica holds while its supervisor runs: its scratch directory, cgroup and GPUs.
struct Held {
    scratch: PathBuf,
    cgroup: Option<ReplicaCgroup>,
    gpus: Vec<Gpu>,
}

/// Takes the replica's scratch directory, cgroup and GPUs, waiting for GPUs to be free.
async fn hold(rep: &Replica, ctx: &Ctx, stop: &mut watch::Receiver<bool>) -> Result<Option<Held>, String> {
    let process = !matches!(rep.launch.mode, Mode::Engine { .. });
    let scratch = if process {
        start::make_scratch(&ctx.host, &rep.id, start::process_user(&ctx.host, rep))?
    } else {
        PathBuf::new()
    };
    let cgroup = match (&ctx.host.cgroups, process) {
        (Ok(cgroups), true) => Some(cgroups.create(&rep.id, rep.launch.limits_or_requests())?),
        _ => None,
    };
    *lock(&rep.cgroup) = cgroup.clone();
    let mut gpus = Vec::new();
    if rep.launch.gpus > 0 {
        loop {
            let taken = lock(&ctx.gpus).take(&rep.id, rep.launch.gpus);
            match taken {
                Ok(g) => {
                    rep.set_waiting(None);
                    gpus = g;
                    break;
                }
                Err(why) => {
                    rep.set_waiting(Some(why));
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.wait_for(|s| *s) => return Ok(None),
                    }
                }
            }
        }
    }
    Ok(Some(Held { scratch, cgroup, gpus }))
}

async fn supervise(rep: Arc<Replica>, ctx: Arc<Ctx>) {
    let mut stop = rep.stop.subscribe();
    let changed = || {
        let _ = ctx.events.send(Event::Changed(rep.deployment.clone()));
    };
    if let Some(dir) = rep.log_path.parent()
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        tracing::warn!(replica = %rep.id, "cannot create {}: {e}", dir.display());
    }
    match hold(&rep, &ctx, &mut stop).await {
        Ok(Some(held)) => run(&rep, &ctx, &held, &mut stop).await,
        Ok(None) => {}
        Err(why) => {
            logs::note(&rep.log_path, &why);
            rep.update(|s| {
                s.state = ReplicaState::Failed;
                s.last_error = Some(why);
            });
            changed();
            let _ = stop.wait_for(|s| *s).await;
        }
    }
    lock(&ctx.gpus).release(&rep.id);
    if let Some(c) = lock(&rep.cgroup).take() {
        c.remove();
    }
    let _ = std::fs::remove_dir_all(ctx.host.scratch_root.join(&rep.id));
    rep.update(|s| {
        s.ready = false;
        s.pid = None;
        s.waiting = None;
    });
    let _ = std::fs::remove_file(&rep.pid_path);
    let _ = ctx.events.send(Event::Stopped { port: rep.addr.port() });
    changed();
}

/// Starts the replica's process and restarts it with backoff until asked to stop.
/// The time SIGTERM still gets when draining took the whole grace period.
const DRAIN_OVERRUN: Duration = Duration::from_secs(2);

async fn run(rep: &Arc<Replica>, ctx: &Arc<Ctx>, held: &Held, stop: &mut watch::Receiver<bool>) {
    let cfg = &ctx.cfg;
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
        let env = start::replica_env(cfg, &ctx.host, rep, &held.gpus, &held.scratch);
        match start::start(rep, ctx, &env, &held.scratch, held.cgroup.as_ref(), &held.gpus, attempt).await {
            Err(_) if *stop.borrow() => break,
            Err(e) => {
                let (why, fatal) = match e {
                    StartError::Failed(why) => (why, false),
                    StartError::Fatal(why) => (why, true),
                };
                logs::note(&rep.log_path, &why);
                rep.update(|s| {
                    s.state = ReplicaState::Failed;
                    s.ready = false;
                    s.last_error = Some(why.clone());
                    s.fatal = fatal.then_some(why);
                    s.waiting = None;
                    s.pid = None;
                });
                changed();
            }
            Ok(Started { mut spawned, log_offset, container }) => {
                let pid = spawned.pid;
                *lock(&rep.container) = container.clone();
                rep.update(|s| {
                    s.state = ReplicaState::Starting;
                    s.ready = false;
                    s.fatal = None;
                    s.pid = Some(pid);
                    s.container_pid = None;
                });
                let record = PidRecord {
                    pid,
                    start_time: process::start_time(pid),
                    port: rep.addr.port(),
                    container: container.as_ref().map(|(_, name)| name.clone()),
                    engine: container.as_ref().map(|(engine, _)| engine.program.clone()),
                    engine_args: container
                        .as_ref()
                        .map(|(engine, _)| engine.global_args.clone())
                        .unwrap_or_default(),
                };
                if let Err(e) = process::write_pid_file(&rep.pid_path, &record) {
                    tracing::warn!(replica = %rep.id, "cannot write {}: {e}", rep.pid_path.display());
                }
                let outcome = tokio::select! {
                    status = &mut spawned.exit => Outcome::Exited(describe_exit(status)),
                    reason = watch_probes(rep, ctx, &env.all, held, started, log_offset) => Outcome::Unhealthy(reason),
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
                        // Out of routing first, SIGTERM once its requests are answered; the
                        // grace period covers both, as a pod's preStop hook and SIGTERM share it
                        // (and, as the kubelet, 2 s more for SIGTERM when the drain used it up).
                        let draining = Instant::now();
                        if let Some(drain) = &cfg.drain {
                            drain.0.drain(rep.addr, grace).await;
                        }
                        let left = grace.saturating_sub(draining.elapsed()).max(DRAIN_OVERRUN.min(grace));
                        terminate(rep, Some(&mut spawned), held, left).await;
                        break;
                    }
                    Outcome::Unhealthy(reason) => {
                        logs::note(&rep.log_path, &format!("{reason}; restarting"));
                        terminate(rep, Some(&mut spawned), held, grace).await;
                        reason
                    }
                    Outcome::Exited(how) => {
                        // Whatever else the replica started goes with it.
                        process::signal_group(spawned.pid, libc::SIGKILL);
                        terminate(rep, None, held, Duration::ZERO).await;
                        logs::note(&rep.log_path, &how);
                        how
                    }
                };
                let _ = std::fs::remove_file(&rep.pid_path);
                // The log pump may still be writing the last lines.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let tail = logs::tail_since(&rep.log_path, log_offset, TAIL_LINES);
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

/// Stops the replica: a container through its engine (SIGTERM, SIGKILL after `grace`); a
/// process still running by SIGTERM to its process group, SIGKILL after `grace`; then whatever
/// is left in its group and cgroup.
async fn terminate(rep: &Replica, running: Option<&mut process::Spawned>, held: &Held, grace: Duration) {
    let container = lock(&rep.container).take();
    if let Some((engine, name)) = &container {
        engine::stop_container(engine, name, grace).await;
    }
    if let Some(spawned) = running {
        if container.is_none() {
            process::signal_group(spawned.pid, libc::SIGTERM);
        }
        if tokio::time::timeout(grace, &mut spawned.exit).await.is_err() {
            process::signal_group(spawned.pid, libc::SIGKILL);
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut spawned.exit).await;
        }
        // Children that ignored SIGTERM but outlived the leader.
        process::signal_group(spawned.pid, libc::SIGKILL);
    }
    if let Some(c) = &held.cgroup {
        c.kill_all();
    }
}

async fn run_check(
    p: &ProbeSpec,
    rep: &Replica,
    ctx: &Ctx,
    env: &[(String, String)],
    held: &Held,
) -> Result<(), String> {
    if let (ProbeAction::Exec(command), Mode::Host) = (&p.action, &rep.launch.mode) {
        return start::exec_probe(rep, ctx, command, env, &held.scratch, held.cgroup.as_ref(), p.timeout)
            .await;
    }
    let container = lock(&rep.container).clone();
    let exec = match &container {
        Some((engine, name)) => ExecTarget::Container { engine, name },
        None => ExecTarget::None,
    };
    probe::check(p, rep.addr, &ctx.clients, exec).await
}

/// Runs the startup probe, then readiness and liveness, until liveness (or startup) fails:
/// returns why the replica must be restarted. Readiness only changes the ready flag.
async fn watch_probes(
    rep: &Replica,
    ctx: &Ctx,
    env: &[(String, String)],
    held: &Held,
    started: Instant,
    log_offset: u64,
) -> String {
    let launch = &rep.launch;
    let cfg = &ctx.cfg;
    let check = |p| run_check(p, rep, ctx, env, held);

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
                        let mut message = format!("{READINESS_FAILED} {failed} times: {why}");
                        if !ever_ready {
                            // Why a server is not ready is often in what it printed.
                            let tail = logs::tail_since(&rep.log_path, log_offset, TAIL_LINES);
                            if !tail.is_empty() {
                                message = format!("{message}; last output:\n{}", tail.join("\n"));
                            }
                        }
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
