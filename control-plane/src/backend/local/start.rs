//! Starting a replica's process in its mode. The prebuilt runtime and host processes are
//! confined: their own cgroup with the machine type's limits, Landlock (no data directory,
//! writes only to their scratch directory), a cleared environment and, for host processes under
//! a root platform, an unprivileged user of their own. Containers run through the engine with
//! the pod template mapped onto `run`'s flags.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::cgroup::{Cgroups, ReplicaCgroup};
use super::engine::{self, Engine, Mount, RunSpec};
use super::gpu::Gpu;
use super::launch::{self, EnvSource, Launch, Mode};
use super::process::{self, Confinement, Spawned};
use super::replica::{Ctx, Replica};
use super::sandbox::{self, FsPolicy};
use super::{LocalConfig, logs};
use crate::manifests::expand::{expand, expand_env};

/// The host processes' `PATH`: the system's directories, nothing of the platform's own.
const HOST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the backend learnt of this machine once, for confining replicas.
pub(crate) struct HostSetup {
    /// Names this platform's containers and cgroups (a hash of its data directory).
    pub owner: String,
    /// Paths no replica may reach: the data directory, keys (real paths).
    pub hidden: Vec<PathBuf>,
    /// Inside the data directory, where uploaded artifacts are: replicas may read their own.
    pub artifact_dir: PathBuf,
    /// The prebuilt runtime's download cache (shared by its replicas).
    pub cache_dir: PathBuf,
    /// Where replicas' scratch directories (`HOME`, `TMPDIR`) are made.
    pub scratch_root: PathBuf,
    /// Replica cgroups, or why there are none (limits then go unenforced, with a warning).
    pub cgroups: Result<Cgroups, String>,
    /// Whether the kernel enforces Landlock.
    pub landlock: bool,
    /// The platform runs as root: host processes get users of their own.
    pub root: bool,
    /// The machine has GPUs: processes see only those they were given.
    pub has_gpus: bool,
}

impl HostSetup {
    /// Whether `path` (real) is among the paths no replica may reach, outside the artifacts.
    pub fn is_private(&self, path: &Path) -> bool {
        let path = sandbox::real(path);
        self.hidden.iter().any(|h| path.starts_with(h)) && !path.starts_with(&self.artifact_dir)
    }

    /// What the host cannot enforce for processes, to warn about at apply time.
    pub fn shortfalls(&self, mode: &Mode) -> Vec<String> {
        if matches!(mode, Mode::Engine { .. }) {
            return Vec::new();
        }
        let mut w = Vec::new();
        if !self.landlock {
            w.push(
                "this kernel has no Landlock: replica processes can read the platform's data directory \
                 (Linux 5.13+ with Landlock enabled confines them)"
                    .to_string(),
            );
        }
        if let Err(why) = &self.cgroups {
            w.push(format!("the machine type's CPU and memory limits are not enforced for processes: {why}"));
        }
        if matches!(mode, Mode::Host) && !self.root {
            w.push(
                "host processes run as the platform's own user (it does not run as root, so it cannot give \
                 them users of their own)"
                    .to_string(),
            );
        }
        w
    }
}

/// The uid (and gid) of a deployment's host processes: one per deployment, from systemd's
/// range for dynamic users (61184-65519), never the platform's own. Pure.
pub(crate) fn replica_uid(deployment: &str) -> u32 {
    const FIRST: u32 = 61_184;
    const COUNT: u64 = 65_519 - 61_184 + 1;
    FIRST + (crate::manifests::fnv1a(deployment.as_bytes()) % COUNT) as u32
}

/// Why a replica could not be started.
pub(crate) enum StartError {
    /// Tried again after the backoff.
    Failed(String),
    /// Cannot work whatever happens next (an image that breaks the pod's rules): the deploy fails.
    Fatal(String),
}

/// A started replica process.
pub(crate) struct Started {
    pub spawned: Spawned,
    /// Where this start's lines begin in the log.
    pub log_offset: u64,
    /// The container, for a replica in an engine.
    pub container: Option<(Engine, String)>,
}

/// A replica's environment.
pub(crate) struct ReplicaEnv {
    /// Everything the process (or the engine client) gets.
    pub all: Vec<(String, String)>,
    /// The pod's own variables, expanded: what `$(VAR)` in command and args refers to; what a
    /// container gets.
    pub pod: Vec<(String, String)>,
}

fn matches(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == p,
    })
}

/// The replica's environment: the pod's env expanded with the Kubernetes rules (with the
/// replica's own port for processes), and only what its mode needs of the platform's own.
pub(crate) fn replica_env(
    cfg: &LocalConfig,
    host: &HostSetup,
    rep: &Replica,
    gpus: &[Gpu],
    scratch: &Path,
) -> ReplicaEnv {
    let launch = &rep.launch;
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
    let process = !matches!(launch.mode, Mode::Engine { .. });
    if process {
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
    if matches!(launch.mode, Mode::Runtime { .. }) {
        let defaults = [
            ("PLATFORM_RUNTIME_HOST", cfg.host.to_string()),
            ("PLATFORM_CACHE_DIR", host.cache_dir.display().to_string()),
            ("PLATFORM_WORKERS", launch.requests.cpu_millis.div_ceil(1000).max(1).to_string()),
        ];
        for (k, v) in defaults {
            if !pod.iter().any(|(n, _)| n == k) {
                pod.push((k.to_string(), v));
            }
        }
    }
    if process && (!gpus.is_empty() || host.has_gpus) {
        // What a replica sees of the GPUs: its own (none when it asked for none).
        let visible = gpus.iter().map(|g| g.uuid.as_str()).collect::<Vec<_>>().join(",");
        pod.retain(|(k, _)| k != "CUDA_VISIBLE_DEVICES");
        pod.push(("CUDA_VISIBLE_DEVICES".into(), visible));
    }
    let expanded = expand_env(&HashMap::new(), pod.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let from_host = |patterns: &[String]| -> Vec<(String, String)> {
        std::env::vars().filter(|(k, _)| matches(patterns, k)).collect()
    };
    let mut all: Vec<(String, String)> = match launch.mode {
        Mode::Runtime { .. } => from_host(&cfg.runtime_inherit_env),
        Mode::Host => vec![("PATH".into(), HOST_PATH.into()), ("LANG".into(), "C.UTF-8".into())],
        Mode::Engine { .. } => from_host(&cfg.engine_inherit_env),
    };
    if process {
        for name in ["HOME", "TMPDIR"] {
            all.push((name.into(), scratch.display().to_string()));
        }
    }
    if launch.object_store_artifact && !matches!(launch.mode, Mode::Runtime { .. }) {
        all.extend(from_host(&cfg.artifact_env));
    }
    all.retain(|(k, _)| !expanded.iter().any(|(n, _)| n == k));
    all.sort();
    all.extend(expanded.iter().cloned());
    ReplicaEnv { all, pod: expanded }
}

/// The names of the variables a container gets: the pod's, and the artifact credentials.
fn container_env_names<'a>(cfg: &LocalConfig, launch: &Launch, env: &'a ReplicaEnv) -> Vec<&'a str> {
    let mut names: Vec<&str> = env.pod.iter().map(|(k, _)| k.as_str()).collect();
    if launch.object_store_artifact {
        names.extend(env.all.iter().filter(|(k, _)| matches(&cfg.artifact_env, k)).map(|(k, _)| k.as_str()));
    }
    names.sort_unstable();
    names.dedup();
    names
}

/// Makes the replica's scratch directory (`HOME` and `TMPDIR` of a process), owned by `owner`.
pub(crate) fn make_scratch(
    host: &HostSetup,
    replica: &str,
    owner: Option<(u32, u32)>,
) -> Result<PathBuf, String> {
    let dir = host.scratch_root.join(replica);
    let _ = std::fs::remove_dir_all(&dir);
    let made = std::fs::create_dir_all(&host.scratch_root)
        .and_then(|()| std::fs::set_permissions(&host.scratch_root, std::fs::Permissions::from_mode(0o711)))
        .and_then(|()| std::fs::create_dir(&dir))
        .and_then(|()| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)))
        .and_then(|()| match owner {
            Some((uid, gid)) => std::os::unix::fs::chown(&dir, Some(uid), Some(gid)),
            None => Ok(()),
        });
    made.map_err(|e| format!("cannot make the replica's scratch directory {}: {e}", dir.display()))?;
    Ok(dir)
}

/// The user a replica's processes run as, when not the platform's.
pub(crate) fn process_user(host: &HostSetup, rep: &Replica) -> Option<(u32, u32)> {
    (matches!(rep.launch.mode, Mode::Host) && host.root).then(|| {
        let uid = replica_uid(&rep.deployment);
        (uid, uid)
    })
}

/// What a process of the replica may touch, joined to its cgroup.
pub(crate) fn confinement(
    host: &HostSetup,
    rep: &Replica,
    scratch: &Path,
    cgroup: Option<&ReplicaCgroup>,
) -> Result<Confinement, String> {
    let mut write = vec![scratch.to_path_buf(), PathBuf::from("/dev/shm")];
    if matches!(rep.launch.mode, Mode::Runtime { .. }) {
        std::fs::create_dir_all(&host.cache_dir)
            .map_err(|e| format!("cannot create the runtime's cache {}: {e}", host.cache_dir.display()))?;
        write.push(sandbox::real(&host.cache_dir));
    }
    let mut read = vec![PathBuf::from("/")];
    if let Some(a) = &rep.launch.artifact {
        read.push(sandbox::real(&a.host));
    }
    let policy = FsPolicy {
        read,
        write: write.iter().map(|p| sandbox::real(p)).collect(),
        hidden: host.hidden.clone(),
    };
    let landlock = if host.landlock { sandbox::ruleset(&policy)? } else { None };
    let cgroups = match cgroup {
        Some(c) => c.procs_files().map_err(|e| format!("cannot join the replica's cgroup: {e}"))?,
        None => Vec::new(),
    };
    let drop_capabilities = host.root && matches!(rep.launch.mode, Mode::Runtime { .. });
    Ok(Confinement { cgroups, user: process_user(host, rep), landlock, drop_capabilities })
}

/// Starts the replica's process (`attempt` counts its starts).
pub(crate) async fn start(
    rep: &Replica,
    ctx: &Ctx,
    env: &ReplicaEnv,
    scratch: &Path,
    cgroup: Option<&ReplicaCgroup>,
    gpus: &[Gpu],
    attempt: u32,
) -> Result<Started, StartError> {
    let cfg = &ctx.cfg;
    let launch = &rep.launch;
    let lookup = |name: &str| env.pod.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let exp = |s: &String| expand(s, lookup);
    let command: Vec<String> = launch.command.iter().map(exp).collect();
    let args: Vec<String> = launch.args.iter().map(exp).collect();

    let (mut cmd, confinement, container) = match &launch.mode {
        Mode::Runtime { exe } => {
            let mut cmd = Command::new(exe);
            cmd.arg("runtime").args(&args).current_dir(scratch);
            (cmd, confinement(&ctx.host, rep, scratch, cgroup).map_err(StartError::Failed)?, None)
        }
        Mode::Host => {
            let Some((program, rest)) = command.split_first() else {
                return Err(StartError::Failed("the container has no command".into()));
            };
            let mut cmd = Command::new(program);
            cmd.args(rest).args(&args);
            cmd.current_dir(launch.working_dir.as_deref().map_or(scratch, Path::new));
            (cmd, confinement(&ctx.host, rep, scratch, cgroup).map_err(StartError::Failed)?, None)
        }
        Mode::Engine { engine, image } => {
            let config = ctx
                .images
                .ready(engine, image, launch.pull_policy, |line| rep.set_waiting(Some(line.to_string())))
                .await
                .map_err(StartError::Fatal)?;
            rep.set_waiting(None);
            let user = launch::container_user(launch, image, &config.user).map_err(StartError::Fatal)?;
            let name = rep.container_name(&ctx.host.owner);
            engine::remove_container(engine, &name).await;
            let mut mounts: Vec<Mount> = launch.mounts.clone();
            if let Some(a) = &launch.artifact {
                mounts.push(Mount::ReadOnly { host: a.host.clone(), container: a.container.clone() });
            }
            let indices: Vec<u32> = gpus.iter().map(|g| g.index).collect();
            let limits = launch.limits_or_requests();
            let spec = RunSpec {
                name: &name,
                labels: vec![
                    (engine::OWNER_LABEL, ctx.host.owner.clone()),
                    (engine::REPLICA_LABEL, rep.id.clone()),
                ],
                publish: format!("{}:{}:{}", cfg.host, rep.addr.port(), launch.container_port),
                image,
                command: &command,
                args: &args,
                env_names: container_env_names(cfg, launch, env),
                working_dir: launch.working_dir.as_deref(),
                cpu_millis: limits.cpu_millis,
                memory_bytes: limits.memory_bytes,
                shm_bytes: launch.shm_bytes,
                mounts: &mounts,
                user,
                groups: &launch.supplemental_groups,
                drop_all_capabilities: launch.drop_all_capabilities,
                add_capabilities: &launch.add_capabilities,
                no_new_privileges: launch.no_new_privileges,
                read_only_root: launch.read_only_root,
                gpus: &indices,
            };
            let mut cmd = Command::new(&engine.program);
            cmd.args(engine::run_args(engine, &spec));
            (cmd, Confinement::default(), Some((engine.clone(), name)))
        }
    };
    cmd.env_clear().envs(env.all.iter().map(|(k, v)| (k, v)));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());

    let log_offset = logs::size(&rep.log_path);
    let shown = format!("{:?} {:?}", cmd.get_program(), cmd.get_args().collect::<Vec<_>>());
    logs::note(&rep.log_path, &format!("start #{attempt} of replica {} on {}: {shown}", rep.id, rep.addr));
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut spawned = process::spawn(cmd, cfg.die_with_parent, confinement).await.map_err(|e| {
        StartError::Failed(match e.kind() {
            std::io::ErrorKind::NotFound => format!("cannot start `{program}`: not found"),
            _ => format!("cannot start `{program}`: {e}"),
        })
    })?;
    if !launch.keep_output {
        logs::note(&rep.log_path, logs::OUTPUT_NOT_KEPT);
    }
    tokio::spawn(logs::pump(
        rep.log_path.clone(),
        cfg.max_log_bytes,
        launch.keep_output,
        spawned.stdout.take(),
        spawned.stderr.take(),
    ));
    Ok(Started { spawned, log_offset, container })
}

/// Runs an exec probe's command as a process of the replica (its user, Landlock, cgroup and
/// environment): `Ok` when it exits 0.
pub(crate) async fn exec_probe(
    rep: &Replica,
    ctx: &Ctx,
    command: &[String],
    env: &[(String, String)],
    scratch: &Path,
    cgroup: Option<&ReplicaCgroup>,
    timeout: std::time::Duration,
) -> Result<(), String> {
    let Some((program, rest)) = command.split_first() else {
        return Err("exec probe without a command".into());
    };
    let mut cmd = Command::new(program);
    cmd.args(rest).env_clear().envs(env.iter().map(|(k, v)| (k, v)));
    cmd.current_dir(rep.launch.working_dir.as_deref().map_or(scratch, Path::new));
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let confinement = confinement(&ctx.host, rep, scratch, cgroup)?;
    let mut spawned = process::spawn(cmd, ctx.cfg.die_with_parent, confinement)
        .await
        .map_err(|e| format!("exec {program:?}: {e}"))?;
    match tokio::time::timeout(timeout, &mut spawned.exit).await {
        Ok(Ok(Ok(status))) if status.success() => Ok(()),
        Ok(Ok(Ok(status))) => Err(format!("exec {command:?}: {status}")),
        Ok(_) => Err(format!("exec {command:?}: the process was lost")),
        Err(_) => {
            process::signal_group(spawned.pid, libc::SIGKILL);
            Err(format!("exec {command:?}: did not finish within {timeout:?}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_deployment_gets_a_user_of_its_own_outside_the_platforms() {
        let (a, b) = (replica_uid("ep-a-dm-1"), replica_uid("ep-b-dm-1"));
        assert!((61_184..=65_519).contains(&a) && (61_184..=65_519).contains(&b));
        assert_ne!(a, b);
        assert_eq!(a, replica_uid("ep-a-dm-1"), "stable across restarts");
    }
}
