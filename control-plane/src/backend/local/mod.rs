//! The `local` backend: replicas as child processes of this machine.
//!
//! It interprets a Deployment's pod template: replicas, image or command, args, env, ports,
//! probes, resources, strategy and grace period.
//! - The runtime image (`platform-runtime...`) re-executes the platform's own binary as
//!   `platform runtime`.
//! - Any other image runs in docker or podman (`{engine} info` works), its port published on
//!   loopback; without a usable engine apply fails and says what to install.
//! - A pod template marked as a host process (an admin's `containerSpec.hostProcess`) runs its
//!   command as a sandboxed process on this machine, where `allow_host_processes` permits it.
//!
//! Each replica listens on its own loopback port (`AIP_HTTP_PORT` and `PORT`), logs to
//! `{data_dir}/replicas/{deployment}/{replica}.log` and records its pid (with its start time)
//! in `{replica}.pid`. Replicas run in their own process group and, on Linux, receive SIGTERM
//! when the platform dies; [`Local::new`] kills whatever a previous run left behind. The
//! machine type's CPU and memory are accounted against this machine's capacity.

mod cgroup;
mod cpu;
mod engine;
mod gpu;
mod images;
mod launch;
mod logs;
mod probe;
mod process;
mod replica;
mod sandbox;
mod start;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use tokio::sync::{OnceCell, mpsc};

pub use engine::{Dialect, Engine};
pub use gpu::{Gpu, GpuDetector, NvidiaSmi};

use super::{
    Backend, BackendError, DeploymentStatus, LogEntry, LogRequest, LogStream, ReplicaStatus, Resources,
};
use launch::{Launch, ParseContext};
use replica::{Ctx, Event, Replica};
use start::HostSetup;

/// Settings of the local backend.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// Root of the backend's files: `replicas/` (logs, pid files) and `cache/`.
    pub data_dir: PathBuf,
    /// Images whose repository starts with this run the platform's own runtime.
    pub runtime_image: String,
    /// The executable run as `{exe} runtime`; default: this process's own executable.
    pub runtime_exe: Option<PathBuf>,
    /// Container engines to try, in order; empty disables containers.
    pub container_engines: Vec<String>,
    /// Whether a pod template marked with `host_process_annotation` may run its command as a
    /// host process (`platform serve --allow-host-processes`). Without the mark, an image that
    /// is not the runtime always runs in a container engine.
    pub allow_host_processes: bool,
    /// The pod-template annotation that marks a host-process model.
    pub host_process_annotation: String,
    /// This machine's capacity; default: the CPUs this process may use and `MemTotal`.
    pub capacity: Option<Resources>,
    /// Factor on the CPU capacity (1.0: no overcommit).
    pub cpu_overcommit: f64,
    /// Factor on the memory capacity (1.0: no overcommit).
    pub memory_overcommit: f64,
    /// Address replicas listen on and are reached at.
    pub host: IpAddr,
    /// Variables of the platform's environment that runtime replicas get (`NAME`, or a prefix
    /// `NAME_*`): its logging, the object store's credentials to read `s3://` artifacts, the
    /// runtime's engine, onnxruntime library and shape-cache size.
    pub runtime_inherit_env: Vec<String>,
    /// Variables the container engine's client gets (to reach its daemon); the container
    /// itself gets only the pod's variables.
    pub engine_inherit_env: Vec<String>,
    /// Credentials passed to custom containers and host processes whose `AIP_STORAGE_URI` is
    /// `s3://`, as Vertex gives a container access to its artifact (empty: none).
    pub artifact_env: Vec<String>,
    /// Files and directories besides the data directory that no replica may read (keys).
    pub private_paths: Vec<PathBuf>,
    /// The `nvidia-smi` that lists this machine's GPUs.
    pub nvidia_smi: PathBuf,
    /// Arguments every container `run` gets, after the platform's own.
    pub container_run_args: Vec<String>,
    /// Overrides the period of readiness and startup probes (short in tests).
    pub readiness_period: Option<Duration>,
    /// Overrides the period of liveness probes.
    pub liveness_period: Option<Duration>,
    /// Until a replica is first ready, its readiness is checked at least this often.
    pub first_ready_poll: Duration,
    /// First restart delay; doubled after each crash up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// A replica that ran this long before crashing restarts with `backoff_initial` again.
    pub backoff_reset_after: Duration,
    /// Caps the pod's `terminationGracePeriodSeconds`.
    pub max_grace: Option<Duration>,
    /// On Linux, replicas get SIGTERM when the platform dies (`PR_SET_PDEATHSIG`).
    pub die_with_parent: bool,
    /// A replica log larger than this is rotated to `.log.1` when the replica (re)starts.
    pub max_log_bytes: u64,
    /// Told before a replica is stopped, so that it leaves routing and its requests in flight
    /// finish before SIGTERM (the gateway); the grace period bounds both together.
    pub drain: Option<super::Drainer>,
    /// Told after a replica's state changed (the controller's wake-up).
    pub on_change: Option<super::OnChange>,
}

impl LocalConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> LocalConfig {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        LocalConfig {
            data_dir: data_dir.into(),
            runtime_image: "platform-runtime".into(),
            runtime_exe: None,
            container_engines: names(&["docker", "podman"]),
            allow_host_processes: false,
            host_process_annotation: format!("platform.dev/{}", crate::manifests::HOST_PROCESS_ANNOTATION),
            capacity: None,
            cpu_overcommit: 1.0,
            memory_overcommit: 1.0,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            runtime_inherit_env: names(&[
                "RUST_LOG",
                "RUST_BACKTRACE",
                "PLATFORM_LOG_FORMAT",
                "PLATFORM_ENGINE",
                "PLATFORM_ONNXRUNTIME_LIB",
                "PLATFORM_SHAPE_CACHE_SIZE",
                "AWS_*",
                "SSL_CERT_FILE",
                "SSL_CERT_DIR",
                "TZ",
            ]),
            engine_inherit_env: names(&[
                "PATH",
                "HOME",
                "TMPDIR",
                "XDG_RUNTIME_DIR",
                "DOCKER_*",
                "CONTAINER_HOST",
                "CONTAINERS_*",
            ]),
            artifact_env: names(&["AWS_*"]),
            private_paths: Vec::new(),
            nvidia_smi: PathBuf::from("nvidia-smi"),
            container_run_args: Vec::new(),
            readiness_period: None,
            liveness_period: None,
            first_ready_poll: Duration::from_millis(50),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            backoff_reset_after: Duration::from_secs(120),
            max_grace: None,
            die_with_parent: true,
            max_log_bytes: 16 << 20,
            drain: None,
            on_change: None,
        }
    }
}

/// The local backend. Dropping it kills its replicas at once; [`Local::shutdown`] stops them
/// gracefully.
pub struct Local {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: Arc<LocalConfig>,
    capacity: Resources,
    replicas_dir: PathBuf,
    runtime_exe: PathBuf,
    engine: OnceCell<Result<Engine, String>>,
    ctx: Arc<Ctx>,
    state: Mutex<State>,
    cpu: Mutex<cpu::CpuMeter>,
    /// Held while the backend lives: one platform process per data directory.
    _lock: std::fs::File,
}

#[derive(Default)]
struct State {
    deployments: BTreeMap<String, Dep>,
    ports: BTreeSet<u16>,
}

struct Dep {
    hash: String,
    launch: Arc<Launch>,
    desired: u32,
    /// Replicas of the current pod template.
    current: Vec<Arc<Replica>>,
    /// Replicas of older templates, serving until the current ones are ready.
    old: Vec<Arc<Replica>>,
    /// Replicas asked to stop, until their processes are gone.
    retiring: Vec<Arc<Replica>>,
    next_index: u64,
}

impl Dep {
    fn per_replica(&self) -> Resources {
        self.launch.requests
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Local {
    /// Starts the backend on `cfg.data_dir`, first killing replicas (and their process groups
    /// and containers) that a previous run of the platform left behind.
    pub async fn new(cfg: LocalConfig) -> Result<Local, BackendError> {
        let replicas_dir = cfg.data_dir.join("replicas");
        std::fs::create_dir_all(&replicas_dir)
            .map_err(|e| BackendError::io(format!("cannot create {}", replicas_dir.display()), e))?;
        let lock_file = process::lock_dir(&replicas_dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock => BackendError::Other(format!(
                "{} is in use by another platform process; give each one its own data directory",
                cfg.data_dir.display()
            )),
            _ => BackendError::io(format!("cannot lock {}", replicas_dir.display()), e),
        })?;
        let killed = process::kill_leftovers(&replicas_dir, Duration::from_secs(10)).await;
        for k in &killed {
            tracing::warn!("killed a replica left over by a previous run: {k}");
        }
        let host = host_setup(&cfg);
        if let Ok(cgroups) = &host.cgroups {
            for dir in cgroups.remove_leftovers() {
                tracing::warn!("removed a replica cgroup left over by a previous run: {dir}");
            }
        }
        let _ = std::fs::remove_dir_all(&host.scratch_root);
        let runtime_exe = match &cfg.runtime_exe {
            Some(p) => p.clone(),
            None => std::env::current_exe()
                .map_err(|e| BackendError::io("cannot find the platform's own executable", e))?,
        };
        let capacity = match cfg.capacity {
            Some(c) => c,
            None => detect_capacity(),
        };
        let capacity = Resources {
            cpu_millis: (capacity.cpu_millis as f64 * cfg.cpu_overcommit.max(0.0)) as u64,
            memory_bytes: (capacity.memory_bytes as f64 * cfg.memory_overcommit.max(0.0)) as u64,
        };
        let detector = NvidiaSmi { program: cfg.nvidia_smi.clone() };
        let gpus = gpu::GpuPool::new(
            tokio::task::spawn_blocking(move || detector.detect())
                .await
                .unwrap_or_else(|e| Err(e.to_string())),
        );
        if gpus.total() > 0 {
            tracing::info!(gpus = ?gpus.gpus(), "GPUs for replicas");
        }
        let host = HostSetup { has_gpus: gpus.total() > 0, ..host };
        let clients = probe::Clients::new().map_err(BackendError::Other)?;
        let (events, rx) = mpsc::unbounded_channel();
        let cfg = Arc::new(cfg);
        let inner = Arc::new(Inner {
            ctx: Arc::new(Ctx {
                cfg: cfg.clone(),
                clients,
                events,
                host,
                images: Arc::new(images::Images::default()),
                gpus: Mutex::new(gpus),
            }),
            cfg,
            capacity,
            replicas_dir,
            runtime_exe,
            engine: OnceCell::new(),
            state: Mutex::new(State::default()),
            cpu: Mutex::new(cpu::CpuMeter::default()),
            _lock: lock_file,
        });
        tokio::spawn(handle_events(Arc::downgrade(&inner), rx));
        if !inner.cfg.container_engines.is_empty() {
            // Containers a previous run left behind go before any new one starts.
            let weak = Arc::downgrade(&inner);
            tokio::spawn(async move {
                if let Some(inner) = weak.upgrade() {
                    let _ = inner.engine().await;
                }
            });
        }
        Ok(Local { inner })
    }

    /// The GPUs this machine gives replicas.
    pub fn gpus(&self) -> Vec<Gpu> {
        lock(&self.inner.ctx.gpus).gpus().to_vec()
    }

    /// This machine's capacity for replicas (with overcommit applied).
    pub fn capacity(&self) -> Resources {
        self.inner.capacity
    }

    /// What the deployments' desired replicas take of the capacity.
    pub fn allocated(&self) -> Resources {
        let state = lock(&self.inner.state);
        state
            .deployments
            .values()
            .fold(Resources::default(), |acc, d| acc.plus(d.per_replica().times(d.desired)))
    }

    /// The pid of a replica's process, while it runs.
    pub fn pid(&self, deployment: &str, replica: &str) -> Option<u32> {
        let state = lock(&self.inner.state);
        let dep = state.deployments.get(deployment)?;
        dep.current.iter().chain(&dep.old).find(|r| r.id == replica).and_then(|r| r.pid())
    }

    /// Where a replica's stdout and stderr go.
    pub fn log_path(&self, deployment: &str, replica: &str) -> PathBuf {
        self.inner.replicas_dir.join(deployment).join(format!("{replica}.log"))
    }

    /// The container engine replicas of non-runtime images use, or why there is none.
    pub async fn container_engine(&self) -> Result<Engine, String> {
        self.inner.engine().await.clone()
    }

    /// Stops every replica gracefully (SIGTERM, then SIGKILL after the grace period).
    pub async fn shutdown(&self) {
        let replicas: Vec<Arc<Replica>> = {
            let mut state = lock(&self.inner.state);
            let deps = std::mem::take(&mut state.deployments);
            deps.into_values().flat_map(|d| d.current.into_iter().chain(d.old).chain(d.retiring)).collect()
        };
        stop_all(&replicas).await;
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let state = lock(&self.inner.state);
        for dep in state.deployments.values() {
            for r in dep.current.iter().chain(&dep.old).chain(&dep.retiring) {
                r.kill_now();
            }
        }
    }
}

async fn stop_all(replicas: &[Arc<Replica>]) {
    for r in replicas {
        r.request_stop();
    }
    for r in replicas {
        r.wait_stopped().await;
    }
}

impl Inner {
    /// The container engine, set up once; the containers a previous run left go first.
    async fn engine(&self) -> &Result<Engine, String> {
        self.engine
            .get_or_init(|| async {
                let engine =
                    engine::detect(&self.cfg.container_engines, &self.cfg.container_run_args).await?;
                for name in engine::remove_owned(&engine, &self.ctx.host.owner).await {
                    tracing::warn!("removed a container left over by a previous run: {name}");
                }
                Ok(engine)
            })
            .await
    }

    fn dir(&self, deployment: &str) -> PathBuf {
        self.replicas_dir.join(deployment)
    }

    /// Free capacity for `name`: the total less what the other deployments take.
    fn available_for(&self, state: &State, name: &str) -> Resources {
        let others = state
            .deployments
            .iter()
            .filter(|(n, _)| n.as_str() != name)
            .fold(Resources::default(), |acc, (_, d)| acc.plus(d.per_replica().times(d.desired)));
        self.capacity.minus(others)
    }

    fn check_fits(
        &self,
        state: &State,
        name: &str,
        launch: &Launch,
        replicas: u32,
    ) -> Result<(), BackendError> {
        let needed = launch.requests.times(replicas);
        let available = self.available_for(state, name);
        if !needed.fits_in(available) {
            return Err(BackendError::Insufficient { needed, available });
        }
        let held: u32 = state
            .deployments
            .iter()
            .filter(|(n, _)| n.as_str() != name)
            .map(|(_, d)| d.launch.gpus.saturating_mul(d.desired))
            .sum();
        let shortage = lock(&self.ctx.gpus).shortage(
            launch.gpus.saturating_mul(replicas),
            held,
            launch.accelerator.as_deref(),
        );
        match shortage {
            Some(why) => Err(BackendError::Gpus(why)),
            None => Ok(()),
        }
    }

    fn new_replica(
        &self,
        state: &mut State,
        name: &str,
        dep_hash: &str,
        launch: &Arc<Launch>,
        index: u64,
    ) -> Result<Arc<Replica>, BackendError> {
        let port = free_port(self.cfg.host, &state.ports)?;
        state.ports.insert(port);
        let dir = self.dir(name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| BackendError::io(format!("cannot create {}", dir.display()), e))?;
        let id = format!("{name}-{}-{index}", &dep_hash[..dep_hash.len().min(8)]);
        Ok(Replica::start(
            id,
            name.to_string(),
            SocketAddr::new(self.cfg.host, port),
            launch.clone(),
            &dir,
            self.ctx.clone(),
        ))
    }

    /// Starts or stops replicas of the current template to match `desired`, and retires old
    /// replicas as current ones become ready (never fewer ready replicas than desired while a
    /// replacement is under way, unless the strategy is Recreate).
    fn reconcile(&self, state: &mut State, name: &str) -> Result<(), BackendError> {
        let Some(mut dep) = state.deployments.remove(name) else { return Ok(()) };
        let result = self.reconcile_dep(state, name, &mut dep);
        state.deployments.insert(name.to_string(), dep);
        result
    }

    fn reconcile_dep(&self, state: &mut State, name: &str, dep: &mut Dep) -> Result<(), BackendError> {
        dep.retiring.retain(|r| !r.finished());
        let desired = dep.desired as usize;
        while dep.current.len() < desired {
            let r = self.new_replica(state, name, &dep.hash, &dep.launch, dep.next_index)?;
            dep.next_index += 1;
            dep.current.push(r);
        }
        if dep.current.len() > desired {
            // Scale down: not-ready replicas first, then the newest.
            let mut order: Vec<usize> = (0..dep.current.len()).collect();
            order.sort_by_key(|&i| (dep.current[i].ready(), std::cmp::Reverse(i)));
            let mut victims: Vec<usize> = order.into_iter().take(dep.current.len() - desired).collect();
            victims.sort_unstable_by(|a, b| b.cmp(a));
            for i in victims {
                let r = dep.current.remove(i);
                r.request_stop();
                dep.retiring.push(r);
            }
        }
        if !dep.old.is_empty() {
            let ready_current = dep.current.iter().filter(|r| r.ready()).count();
            let keep = if dep.launch.recreate { 0 } else { desired.saturating_sub(ready_current) };
            // Old replicas that are not ready serve nobody: they go first.
            dep.old.sort_by_key(|r| std::cmp::Reverse(r.ready()));
            while dep.old.len() > keep || dep.old.last().is_some_and(|r| !r.ready()) {
                let Some(r) = dep.old.pop() else { break };
                r.request_stop();
                dep.retiring.push(r);
            }
        }
        Ok(())
    }
}

async fn handle_events(inner: Weak<Inner>, mut rx: mpsc::UnboundedReceiver<Event>) {
    while let Some(event) = rx.recv().await {
        let Some(inner) = inner.upgrade() else { return };
        let mut state = lock(&inner.state);
        match event {
            Event::Changed(name) => {
                if let Err(e) = inner.reconcile(&mut state, &name) {
                    tracing::warn!(deployment = %name, "cannot reconcile: {e}");
                }
                if let Some(on_change) = &inner.cfg.on_change {
                    (on_change.0)();
                }
            }
            Event::Stopped { port } => {
                state.ports.remove(&port);
            }
        }
    }
}

impl Local {
    /// What this backend would run for `deployment`, with its warnings.
    async fn parse(&self, deployment: &Deployment) -> Result<launch::Parsed, BackendError> {
        let inner = &self.inner;
        let no_engine = Err("not needed".to_string());
        let engine =
            if launch::needs_engine(deployment, &inner.cfg.runtime_image, &inner.cfg.host_process_annotation)
            {
                inner.engine().await
            } else {
                &no_engine
            };
        let ctx = ParseContext {
            runtime_image: &inner.cfg.runtime_image,
            runtime_exe: inner.runtime_exe.clone(),
            engine,
            allow_host_processes: inner.cfg.allow_host_processes,
            host_process_annotation: &inner.cfg.host_process_annotation,
        };
        let mut parsed = launch::parse(deployment, &ctx)?;
        let host = &inner.ctx.host;
        if let Some(a) = &parsed.launch.artifact
            && host.is_private(&a.host)
        {
            return Err(BackendError::Invalid(format!(
                "{}: AIP_STORAGE_URI {} is among the platform's private files (its data directory or keys); \
                 replicas read only uploaded artifacts there",
                parsed.name,
                a.host.display()
            )));
        }
        parsed.warnings.extend(host.shortfalls(&parsed.launch.mode));
        let gpus = lock(&inner.ctx.gpus).gpus().to_vec();
        if let (Some(wanted), Some(first)) = (&parsed.launch.accelerator, gpus.first())
            && parsed.launch.gpus > 0
            && !gpu::is_kind(first, wanted)
        {
            parsed.warnings.push(format!(
                "the machine type asks for {wanted}; this machine's GPUs are {}: replicas get those",
                first.name
            ));
        }
        Ok(parsed)
    }
}

#[async_trait]
impl Backend for Local {
    async fn check(&self, rendered: &crate::manifests::Rendered) -> Result<Vec<String>, BackendError> {
        let mut warnings = self.parse(&rendered.deployment).await?.warnings;
        warnings.extend(super::ignored_objects(rendered));
        Ok(warnings)
    }

    async fn apply(&self, deployment: &Deployment) -> Result<Vec<String>, BackendError> {
        let inner = &self.inner;
        let parsed = self.parse(deployment).await?;
        let name = parsed.name.clone();
        let mut state = lock(&inner.state);
        inner.check_fits(&state, &name, &parsed.launch, parsed.replicas)?;
        match state.deployments.get_mut(&name) {
            Some(dep) if dep.hash == parsed.template_hash => {
                dep.desired = parsed.replicas;
            }
            Some(dep) => {
                // A new pod template: new replicas; the old ones serve until these are ready.
                dep.hash = parsed.template_hash;
                dep.launch = Arc::new(parsed.launch);
                dep.desired = parsed.replicas;
                let previous: Vec<Arc<Replica>> = dep.current.drain(..).collect();
                dep.old.extend(previous);
            }
            None => {
                state.deployments.insert(
                    name.clone(),
                    Dep {
                        hash: parsed.template_hash,
                        launch: Arc::new(parsed.launch),
                        desired: parsed.replicas,
                        current: Vec::new(),
                        old: Vec::new(),
                        retiring: Vec::new(),
                        next_index: 0,
                    },
                );
            }
        }
        inner.reconcile(&mut state, &name)?;
        Ok(parsed.warnings)
    }

    async fn delete(&self, name: &str) -> Result<(), BackendError> {
        lock(&self.inner.cpu).forget(name);
        let removed = lock(&self.inner.state).deployments.remove(name);
        if let Some(dep) = removed {
            let replicas: Vec<Arc<Replica>> =
                dep.current.into_iter().chain(dep.old).chain(dep.retiring).collect();
            stop_all(&replicas).await;
        }
        if launch::valid_name(name) {
            let dir = self.inner.dir(name);
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .map_err(|e| BackendError::io(format!("cannot remove {}", dir.display()), e))?;
            }
        }
        Ok(())
    }

    async fn status(&self, name: &str) -> Result<DeploymentStatus, BackendError> {
        let state = lock(&self.inner.state);
        let dep = state.deployments.get(name).ok_or_else(|| BackendError::NotFound(name.to_string()))?;
        let mut replicas: Vec<ReplicaStatus> = dep.current.iter().map(|r| r.status()).collect();
        replicas.extend(dep.old.iter().map(|r| ReplicaStatus { current: false, ..r.status() }));
        let (mut progress, mut failure) = (None, None);
        for (waiting, fatal) in dep.current.iter().map(|r| r.waiting_and_fatal()) {
            progress = progress.or(waiting);
            failure = failure.or(fatal);
        }
        Ok(DeploymentStatus { replicas, desired: dep.desired, progress, failure })
    }

    async fn scale(&self, name: &str, replicas: u32) -> Result<(), BackendError> {
        let inner = &self.inner;
        let mut state = lock(&inner.state);
        let launch = state
            .deployments
            .get(name)
            .map(|d| d.launch.clone())
            .ok_or_else(|| BackendError::NotFound(name.to_string()))?;
        inner.check_fits(&state, name, &launch, replicas)?;
        if let Some(dep) = state.deployments.get_mut(name) {
            dep.desired = replicas;
        }
        inner.reconcile(&mut state, name)
    }

    async fn list(&self) -> Result<Vec<String>, BackendError> {
        Ok(lock(&self.inner.state).deployments.keys().cloned().collect())
    }

    fn measures_cpu(&self) -> bool {
        true
    }

    /// Measured on each ready replica's cgroup (every process of it), its container's cgroup,
    /// or its process.
    async fn cpu_per_replica(&self, name: &str) -> Option<f64> {
        let replicas: Vec<Arc<Replica>> = {
            let state = lock(&self.inner.state);
            state.deployments.get(name)?.current.iter().filter(|r| r.ready()).cloned().collect()
        };
        let mut counters = Vec::new();
        for r in replicas {
            if let Some(c) = r.cpu_nanos().await {
                counters.push(c);
            }
        }
        let now = std::time::Instant::now();
        lock(&self.inner.cpu).record(name, now, &counters, 1e9)
    }

    async fn logs(&self, name: &str, request: &LogRequest) -> Result<LogStream, BackendError> {
        use futures_util::StreamExt;
        if !launch::valid_name(name) {
            return Err(BackendError::NotFound(name.to_string()));
        }
        let dir = self.inner.dir(name);
        let known = lock(&self.inner.state).deployments.contains_key(name);
        if !known && !dir.exists() {
            return Err(BackendError::NotFound(name.to_string()));
        }
        let mut last: Vec<LogEntry> = logs::in_dir(&dir, request.replica.as_deref())
            .iter()
            .flat_map(|(id, path)| logs::last(path, id, request.tail))
            .collect();
        last.sort_by(|a, b| a.time.cmp(&b.time));
        let last: Vec<LogEntry> = last.split_off(last.len().saturating_sub(request.tail));
        if !request.follow {
            return Ok(futures_util::stream::iter(last).boxed());
        }
        let (tx, rx) = mpsc::channel::<LogEntry>(256);
        let weak = Arc::downgrade(&self.inner);
        let name = name.to_string();
        let only = request.replica.clone();
        tokio::spawn(async move {
            let mut followers: std::collections::BTreeMap<String, logs::Follower> = Default::default();
            for (id, path) in logs::in_dir(&dir, only.as_deref()) {
                followers.insert(id.clone(), logs::Follower::from_end(&path, &id));
            }
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let Some(inner) = weak.upgrade() else { return };
                let running = lock(&inner.state).deployments.contains_key(&name);
                drop(inner);
                // Replicas started since.
                for (id, path) in logs::in_dir(&dir, only.as_deref()) {
                    followers.entry(id.clone()).or_insert_with(|| logs::Follower::from_start(&path, &id));
                }
                let mut batch: Vec<LogEntry> = followers.values_mut().flat_map(|f| f.poll()).collect();
                batch.sort_by(|a, b| a.time.cmp(&b.time));
                for entry in batch {
                    if tx.send(entry).await.is_err() {
                        return;
                    }
                }
                if !running {
                    return;
                }
            }
        });
        let followed =
            futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
        Ok(futures_util::stream::iter(last).chain(followed).boxed())
    }
}

/// The ports replicas listen on, as Nomad's dynamic ports: below the kernel's usual ephemeral
/// range (32768-60999), so an outgoing connection of another program cannot take a replica's port
/// between this pick and the replica's bind, or while it restarts.
const REPLICA_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port that no replica of this backend uses and nothing listens on now, tried from a random
/// start in [`REPLICA_PORTS`].
fn free_port(host: IpAddr, taken: &BTreeSet<u16>) -> Result<u16, BackendError> {
    use std::hash::{BuildHasher, Hasher};
    let span = REPLICA_PORTS.end - REPLICA_PORTS.start;
    let start =
        (std::collections::hash_map::RandomState::new().build_hasher().finish() % u64::from(span)) as u16;
    (0..span)
        .map(|i| REPLICA_PORTS.start + (start + i) % span)
        .find(|port| !taken.contains(port) && TcpListener::bind(SocketAddr::new(host, *port)).is_ok())
        .ok_or_else(|| {
            BackendError::Other(format!(
                "no free port for a replica in {}-{} on {host}",
                REPLICA_PORTS.start,
                REPLICA_PORTS.end - 1
            ))
        })
}

/// The CPUs this process may use and the machine's memory.
fn detect_capacity() -> Resources {
    use procfs::Current;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let memory = procfs::Meminfo::current().map_or(4 << 30, |m| m.mem_total);
    Resources { cpu_millis: cpus * 1000, memory_bytes: memory }
}

/// What the backend needs to know of this machine to confine replicas.
fn host_setup(cfg: &LocalConfig) -> HostSetup {
    let data = sandbox::real(&cfg.data_dir);
    let owner = format!("{:08x}", crate::manifests::fnv1a(data.as_os_str().as_encoded_bytes()) as u32);
    let mut hidden = vec![data.clone()];
    hidden.extend(cfg.private_paths.iter().map(|p| sandbox::real(p)));
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let cgroups = cgroup::Cgroups::new(&format!("platform-{owner}"));
    if let Err(why) = &cgroups {
        tracing::warn!("replica processes get no cgroups, so their CPU and memory are not limited: {why}");
    }
    HostSetup {
        scratch_root: std::env::temp_dir().join(format!("platform-replicas-{owner}")),
        owner,
        hidden,
        artifact_dir: data.join("artifacts"),
        cache_dir: data.join("cache").join("runtime"),
        cgroups,
        landlock: sandbox::available(),
        root,
        has_gpus: false,
    }
}

/// Paths a test or tool may want to look at.
pub fn replica_dir(data_dir: &Path, deployment: &str) -> PathBuf {
    data_dir.join("replicas").join(deployment)
}
