//! Container engines (Podman, Docker): whether one is usable and what it needs on this host
//! (ulimits within the host's limits, runc where crun cannot work), the `run` arguments a
//! replica's pod template maps to, image presence and pulls, and the containers a previous run
//! left behind.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::process::Command;

/// Label of every container this backend starts: the hash of its data directory, so that two
/// platforms on one machine never touch each other's containers.
pub(crate) const OWNER_LABEL: &str = "platform.local/data-dir";
/// Label naming the replica a container runs.
pub(crate) const REPLICA_LABEL: &str = "platform.local/replica";

/// Which command-line dialect an engine speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Podman,
    Docker,
}

/// A usable container engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    /// The program, e.g. `docker` or `/usr/bin/podman`.
    pub program: PathBuf,
    pub dialect: Dialect,
    /// Arguments before the subcommand (`--runtime runc`).
    pub global_args: Vec<String>,
    /// Arguments every `run` gets (ulimits within the host's hard limits, the admin's own).
    pub run_args: Vec<String>,
}

impl Engine {
    pub fn name(&self) -> String {
        self.program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    /// `{program} {global args} {args}`.
    pub(crate) fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.global_args).args(args).stdin(Stdio::null()).kill_on_drop(true);
        cmd
    }

    /// Runs a short engine command; its stdout, or its first error line.
    pub(crate) async fn output<I, S>(&self, args: I, timeout: Duration) -> Result<String, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = self.command(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        run(cmd, &self.name(), timeout).await
    }
}

async fn run(mut cmd: Command, name: &str, timeout: Duration) -> Result<String, String> {
    let shown = format!(
        "{name} {}",
        cmd.as_std().get_args().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
    );
    let child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound { "not installed".to_string() } else { e.to_string() }
    })?;
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| format!("`{shown}` did not answer within {}s", timeout.as_secs()))?
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    Err(format!(
        "`{shown}` failed ({}){}",
        out.status,
        if first.is_empty() { String::new() } else { format!(": {first}") }
    ))
}

/// The first engine of `candidates` whose `info` command works (the CLI alone is not enough:
/// its daemon must answer), set up for this host, or why none is usable.
pub(crate) async fn detect(candidates: &[String], extra_run_args: &[String]) -> Result<Engine, String> {
    if candidates.is_empty() {
        return Err("container engines are disabled (--container-engine none)".into());
    }
    let mut reasons = Vec::new();
    for candidate in candidates {
        match setup(candidate, extra_run_args).await {
            Ok(engine) => return Ok(engine),
            Err(why) => reasons.push(format!("{candidate}: {why}")),
        }
    }
    Err(reasons.join("; "))
}

async fn setup(program: &str, extra_run_args: &[String]) -> Result<Engine, String> {
    let mut engine = Engine {
        program: PathBuf::from(program),
        dialect: Dialect::Docker,
        global_args: Vec::new(),
        run_args: Vec::new(),
    };
    let version = engine.output(["--version"], Duration::from_secs(15)).await?;
    if version.to_ascii_lowercase().contains("podman") {
        engine.dialect = Dialect::Podman;
    }
    engine.output(["info"], Duration::from_secs(30)).await?;
    if engine.dialect == Dialect::Podman {
        let runtime =
            engine.output(["info", "--format", "{{.Host.OCIRuntime.Name}}"], Duration::from_secs(30)).await?;
        if runtime.trim() == "crun" && hybrid_cgroups() {
            if !which("runc") {
                return Err("podman's runtime crun cannot run containers on this host's hybrid cgroups \
                            (\"cgroups in hybrid mode not supported\"); install runc (apt-get install runc)"
                    .into());
            }
            engine.global_args = vec!["--runtime".into(), "runc".into()];
        }
    }
    engine.run_args = ulimit_args(hard_limit(libc::RLIMIT_NOFILE), hard_limit(libc::RLIMIT_NPROC), pid_max());
    engine.run_args.extend(extra_run_args.iter().cloned());
    Ok(engine)
}

/// `--ulimit` arguments within this host's hard limits: rootful containers otherwise get the
/// engine's defaults, which a host with lower limits refuses (`setrlimit RLIMIT_NOFILE:
/// Operation not permitted`). Process counts above `pid_max` are refused too. Pure.
pub(crate) fn ulimit_args(nofile: Option<u64>, nproc: Option<u64>, pid_max: Option<u64>) -> Vec<String> {
    let mut args = Vec::new();
    let nofile = nofile.unwrap_or(1 << 20).min(1 << 20);
    args.extend(["--ulimit".to_string(), format!("nofile={nofile}:{nofile}")]);
    let nproc = nproc.unwrap_or(u64::MAX).min(pid_max.unwrap_or(32_768));
    args.extend(["--ulimit".to_string(), format!("nproc={nproc}:{nproc}")]);
    args
}

fn hard_limit(resource: libc::__rlimit_resource_t) -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass.
    let ok = unsafe { libc::getrlimit(resource, &mut limit) } == 0;
    (ok && limit.rlim_max != libc::RLIM_INFINITY).then_some(limit.rlim_max)
}

fn pid_max() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/kernel/pid_max").ok()?.trim().parse().ok()
}

/// cgroup v1 controllers with the unified hierarchy mounted beside them.
fn hybrid_cgroups() -> bool {
    let Ok(mounts) = procfs::process::Process::myself().and_then(|p| p.mountinfo()) else { return false };
    let v1 = mounts.iter().any(|m| m.fs_type == "cgroup");
    let v2 = mounts.iter().any(|m| m.fs_type == "cgroup2");
    v1 && v2
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Removes a container, ignoring errors (it may be gone already).
pub(crate) async fn remove_container(engine: &Engine, name: &str) {
    let _ = engine.output(["rm", "-f", name], Duration::from_secs(60)).await;
}

/// Stops a container: SIGTERM, SIGKILL after `grace`; then removes it.
pub(crate) async fn stop_container(engine: &Engine, name: &str, grace: Duration) {
    let secs = grace.as_secs().to_string();
    let _ = engine.output(["stop", "-t", secs.as_str(), name], grace + Duration::from_secs(30)).await;
    remove_container(engine, name).await;
}

/// Removes every container labelled with `owner`: what a previous run left behind.
pub(crate) async fn remove_owned(engine: &Engine, owner: &str) -> Vec<String> {
    let filter = format!("label={OWNER_LABEL}={owner}");
    let Ok(names) = engine
        .output(["ps", "-a", "--filter", filter.as_str(), "--format", "{{.Names}}"], Duration::from_secs(60))
        .await
    else {
        return Vec::new();
    };
    let names: Vec<String> =
        names.lines().map(str::trim).filter(|n| !n.is_empty()).map(String::from).collect();
    for name in &names {
        remove_container(engine, name).await;
    }
    names
}

/// The host pid of a running container's main process.
pub(crate) async fn container_pid(engine: &Engine, name: &str) -> Option<u32> {
    let out =
        engine.output(["inspect", "--format", "{{.State.Pid}}", name], Duration::from_secs(30)).await.ok()?;
    out.trim().parse().ok().filter(|p| *p > 0)
}

/// What the platform needs to know of a local image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageConfig {
    /// The image's `USER`, empty when it runs as root by default.
    pub user: String,
}

/// The image's configuration when it is on this machine, `None` when it is not.
pub(crate) async fn inspect_image(engine: &Engine, image: &str) -> Result<Option<ImageConfig>, String> {
    match engine
        .output(["image", "inspect", "--format", "{{.Config.User}}", image], Duration::from_secs(60))
        .await
    {
        Ok(user) => Ok(Some(ImageConfig { user: user.trim().to_string() })),
        Err(e)
            if e.contains("No such image")
                || e.contains("image not known")
                || e.contains("no such image") =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Pulls an image, calling `progress` with each line the engine prints; the error names the
/// image and carries the engine's last lines.
pub(crate) async fn pull(engine: &Engine, image: &str, progress: impl Fn(&str)) -> Result<(), String> {
    let mut cmd = engine.command(["pull", image]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot pull image `{image}`: {e}"))?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(format!("cannot pull image `{image}`: no output"));
    };
    let mut out = tokio::io::BufReader::new(stdout).lines();
    let mut err = tokio::io::BufReader::new(stderr).lines();
    let mut last: Vec<String> = Vec::new();
    let (mut out_open, mut err_open) = (true, true);
    while out_open || err_open {
        let line = tokio::select! {
            l = out.next_line(), if out_open => l.unwrap_or(None).or_else(|| { out_open = false; None }),
            l = err.next_line(), if err_open => l.unwrap_or(None).or_else(|| { err_open = false; None }),
        };
        if let Some(line) = line.map(|l| l.trim().to_string()).filter(|l| !l.is_empty()) {
            progress(&line);
            last.push(line);
            if last.len() > 3 {
                last.remove(0);
            }
        }
    }
    let status = child.wait().await.map_err(|e| format!("cannot pull image `{image}`: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("cannot pull image `{image}`: {}", last.join("; "))) }
}

/// A volume of the replica's container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mount {
    /// A host file or directory, read-only (an artifact).
    ReadOnly { host: PathBuf, container: String },
    /// A memory-backed directory of at most `bytes` (`emptyDir` with `medium: Memory`).
    Tmpfs { container: String, bytes: Option<u64> },
    /// A directory on disk that lives as long as the container (`emptyDir`).
    Scratch { container: String },
}

/// Everything one `run` needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RunSpec<'a> {
    pub name: &'a str,
    pub labels: Vec<(&'a str, String)>,
    pub publish: String,
    pub image: &'a str,
    pub command: &'a [String],
    pub args: &'a [String],
    /// Variables passed by name (their values travel in the engine's own environment).
    pub env_names: Vec<&'a str>,
    pub working_dir: Option<&'a str>,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub shm_bytes: Option<u64>,
    pub mounts: &'a [Mount],
    /// `uid[:gid]`.
    pub user: Option<String>,
    pub groups: &'a [i64],
    pub drop_all_capabilities: bool,
    pub add_capabilities: &'a [String],
    pub no_new_privileges: bool,
    pub read_only_root: bool,
    /// GPU indices on this machine.
    pub gpus: &'a [u32],
}

/// The arguments of `{engine} run` for a replica. Pure.
pub(crate) fn run_args(engine: &Engine, spec: &RunSpec<'_>) -> Vec<String> {
    let mut a: Vec<String> = engine.global_args.clone();
    a.extend(["run", "--rm", "--pull", "never", "--name", spec.name].map(String::from));
    for (k, v) in &spec.labels {
        a.extend(["--label".to_string(), format!("{k}={v}")]);
    }
    a.extend(["-p".to_string(), spec.publish.clone()]);
    a.extend(engine.run_args.iter().cloned());
    if spec.cpu_millis > 0 {
        a.extend(["--cpus".to_string(), format!("{:.3}", spec.cpu_millis as f64 / 1000.0)]);
    }
    if spec.memory_bytes > 0 {
        a.extend(["--memory".to_string(), format!("{}b", spec.memory_bytes)]);
    }
    if let Some(bytes) = spec.shm_bytes {
        a.extend(["--shm-size".to_string(), format!("{bytes}b")]);
    }
    for m in spec.mounts {
        match m {
            Mount::ReadOnly { host, container } => {
                a.extend(["-v".to_string(), format!("{}:{container}:ro", host.display())]);
            }
            Mount::Tmpfs { container, bytes } => {
                let size = bytes.map(|b| format!(":size={b}")).unwrap_or_default();
                a.extend(["--tmpfs".to_string(), format!("{container}{size}")]);
            }
            Mount::Scratch { container } => a.extend(["-v".to_string(), container.clone()]),
        }
    }
    if let Some(user) = &spec.user {
        a.extend(["--user".to_string(), user.clone()]);
    }
    for g in spec.groups {
        a.extend(["--group-add".to_string(), g.to_string()]);
    }
    if spec.drop_all_capabilities {
        a.extend(["--cap-drop".to_string(), "ALL".to_string()]);
    }
    for cap in spec.add_capabilities {
        a.extend(["--cap-add".to_string(), cap.clone()]);
    }
    if spec.no_new_privileges {
        a.extend(["--security-opt".to_string(), "no-new-privileges".to_string()]);
    }
    if spec.read_only_root {
        a.push("--read-only".to_string());
    }
    if !spec.gpus.is_empty() {
        let list = spec.gpus.iter().map(u32::to_string).collect::<Vec<_>>();
        match engine.dialect {
            // Docker reads the value as CSV: the quotes keep `device=0,1` one field.
            Dialect::Docker => a.extend(["--gpus".to_string(), format!("\"device={}\"", list.join(","))]),
            // Podman takes NVIDIA GPUs as CDI devices (`nvidia-ctk cdi generate`).
            Dialect::Podman => {
                for gpu in list {
                    a.extend(["--device".to_string(), format!("nvidia.com/gpu={gpu}")]);
                }
            }
        }
    }
    for name in &spec.env_names {
        a.extend(["-e".to_string(), name.to_string()]);
    }
    if let Some(dir) = spec.working_dir {
        a.extend(["-w".to_string(), dir.to_string()]);
    }
    match spec.command.split_first() {
        Some((entry, rest)) => {
            a.extend(["--entrypoint".to_string(), entry.clone(), spec.image.to_string()]);
            a.extend(rest.iter().cloned());
        }
        None => a.push(spec.image.to_string()),
    }
    a.extend(spec.args.iter().cloned());
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(dialect: Dialect) -> Engine {
        Engine {
            program: "podman".into(),
            dialect,
            global_args: vec!["--runtime".into(), "runc".into()],
            run_args: ulimit_args(Some(20_000), Some(96_364), Some(32_768)),
        }
    }

    fn has(args: &[String], pair: &[&str]) -> bool {
        args.windows(pair.len()).any(|w| w.iter().zip(pair).all(|(a, b)| a == b))
    }

    #[test]
    fn the_pod_template_maps_onto_run_flags() {
        let command = vec!["python3".to_string(), "/app/server.py".to_string()];
        let args = vec!["--port".to_string(), "9000".to_string()];
        let mounts = vec![
            Mount::ReadOnly {
                host: "/data/artifacts/ab/model.onnx".into(),
                container: "/mnt/models/model.onnx".into(),
            },
            Mount::Tmpfs { container: "/cache".into(), bytes: Some(1 << 20) },
        ];
        let spec = RunSpec {
            name: "platform-1234-ep-x-dm-1-abcd-0",
            labels: vec![(OWNER_LABEL, "1234".into()), (REPLICA_LABEL, "ep-x-dm-1-abcd-0".into())],
            publish: "127.0.0.1:20001:9000".into(),
            image: "localhost/srv:1",
            command: &command,
            args: &args,
            env_names: vec!["AIP_HTTP_PORT", "GREETING"],
            working_dir: Some("/app"),
            cpu_millis: 250,
            memory_bytes: 1 << 30,
            shm_bytes: Some(64 << 20),
            mounts: &mounts,
            user: Some("1000:1000".into()),
            groups: &[2000],
            drop_all_capabilities: true,
            add_capabilities: &["NET_BIND_SERVICE".to_string()],
            no_new_privileges: true,
            read_only_root: true,
            gpus: &[0, 1],
        };
        let a = run_args(&engine(Dialect::Podman), &spec);
        assert_eq!(a[..8], ["--runtime", "runc", "run", "--rm", "--pull", "never", "--name", spec.name]);
        for pair in [
            &["--label", "platform.local/data-dir=1234"][..],
            &["-p", "127.0.0.1:20001:9000"],
            &["--ulimit", "nofile=20000:20000"],
            &["--ulimit", "nproc=32768:32768"],
            &["--cpus", "0.250"],
            &["--memory", "1073741824b"],
            &["--shm-size", "67108864b"],
            &["-v", "/data/artifacts/ab/model.onnx:/mnt/models/model.onnx:ro"],
            &["--tmpfs", "/cache:size=1048576"],
            &["--user", "1000:1000"],
            &["--group-add", "2000"],
            &["--cap-drop", "ALL"],
            &["--cap-add", "NET_BIND_SERVICE"],
            &["--security-opt", "no-new-privileges"],
            &["--device", "nvidia.com/gpu=0"],
            &["--device", "nvidia.com/gpu=1"],
            &["-e", "GREETING"],
            &["-w", "/app"],
            &["--entrypoint", "python3", "localhost/srv:1", "/app/server.py", "--port", "9000"],
        ] {
            assert!(has(&a, pair), "{pair:?} missing from {a:?}");
        }
        assert!(a.contains(&"--read-only".to_string()));
        let docker = run_args(&engine(Dialect::Docker), &RunSpec { command: &[], ..spec });
        assert!(has(&docker, &["--gpus", "\"device=0,1\""]), "{docker:?}");
        assert!(docker.ends_with(&["localhost/srv:1".to_string(), "--port".to_string(), "9000".to_string()]));
    }

    #[test]
    fn ulimits_stay_within_the_hosts_limits() {
        assert_eq!(
            ulimit_args(Some(20_000), Some(96_364), Some(32_768)),
            ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]
        );
        assert_eq!(
            ulimit_args(None, None, Some(4_194_304)),
            ["--ulimit", "nofile=1048576:1048576", "--ulimit", "nproc=4194304:4194304"]
        );
    }
}
