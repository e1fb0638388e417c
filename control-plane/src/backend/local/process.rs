//! Processes of replicas: spawning them in their own process group (dying with the platform on
//! Linux), waiting for them, signalling the group, pid files, and leftovers of a previous run.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// A started replica process.
pub(crate) struct Spawned {
    pub pid: u32,
    /// Completes when the process has exited (its status, or why waiting failed).
    pub exit: oneshot::Receiver<io::Result<ExitStatus>>,
    /// Its output, when piped.
    pub stdout: Option<std::process::ChildStdout>,
    pub stderr: Option<std::process::ChildStderr>,
}

/// How a replica's process is confined: prepared in the platform, applied by the child
/// between fork and exec.
#[derive(Debug, Default)]
pub(crate) struct Confinement {
    /// The `cgroup.procs` files of the replica's cgroups, open for writing: the child joins.
    pub cgroups: Vec<File>,
    /// The user and group the child becomes (the platform runs as root).
    pub user: Option<(u32, u32)>,
    /// A Landlock ruleset the child restricts itself with.
    pub landlock: Option<std::os::fd::OwnedFd>,
    /// Empty the capability bounding set, so that a child that stays root gets no
    /// capabilities from exec.
    pub drop_capabilities: bool,
}

type Job = (Command, bool, Confinement, oneshot::Sender<io::Result<Child>>);

/// All replicas are forked by one long-lived thread: `PR_SET_PDEATHSIG` fires when the *thread*
/// that forked a child exits, so forking from short-lived runtime threads would kill replicas.
fn spawner() -> &'static Mutex<mpsc::Sender<Job>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new().name("replica-spawner".into()).spawn(move || {
            while let Ok((mut cmd, die_with_parent, confinement, reply)) = rx.recv() {
                let _ = reply.send(spawn_here(&mut cmd, die_with_parent, confinement));
            }
        });
        if let Err(e) = spawned {
            tracing::error!("cannot start the replica spawner thread: {e}");
        }
        Mutex::new(tx)
    })
}

fn spawn_here(cmd: &mut Command, die_with_parent: bool, confinement: Confinement) -> io::Result<Child> {
    use std::os::fd::AsRawFd;
    cmd.process_group(0);
    let parent = std::process::id();
    let cgroups: Vec<i32> = confinement.cgroups.iter().map(|f| f.as_raw_fd()).collect();
    // SAFETY: the closure runs between fork and exec and makes only system calls (write,
    // setgroups, setgid, setuid, prctl, getppid, _exit, landlock_restrict_self); the files and
    // the ruleset it uses stay open in the platform until the spawn has returned.
    unsafe {
        cmd.pre_exec(move || {
            let _keep = &confinement;
            // Join the cgroups while still privileged to write to them.
            for fd in &cgroups {
                if libc::write(*fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            if confinement.drop_capabilities {
                // Capabilities past the kernel's last answer EINVAL: nothing to drop there.
                for cap in 0..64 {
                    libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
                }
                libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
            }
            if let Some((uid, gid)) = confinement.user
                && (libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0)
            {
                return Err(io::Error::last_os_error());
            }
            // After the change of user, which clears the parent-death signal.
            #[cfg(target_os = "linux")]
            if die_with_parent {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The platform may have died between fork and prctl.
                if libc::getppid() as u32 != parent {
                    libc::_exit(1);
                }
            }
            #[cfg(not(target_os = "linux"))]
            let _ = (die_with_parent, parent);
            if let Some(ruleset) = &confinement.landlock {
                super::sandbox::restrict_self(ruleset)?;
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Spawns `cmd` in its own process group, confined, from the spawner thread, and a thread that
/// waits for it.
pub(crate) async fn spawn(
    cmd: Command,
    die_with_parent: bool,
    confinement: Confinement,
) -> io::Result<Spawned> {
    let (tx, rx) = oneshot::channel();
    {
        let sender = spawner().lock().map_err(|_| io::Error::other("the replica spawner is poisoned"))?;
        sender
            .send((cmd, die_with_parent, confinement, tx))
            .map_err(|_| io::Error::other("the replica spawner thread is gone"))?;
    }
    let mut child = rx.await.map_err(|_| io::Error::other("the replica spawner thread is gone"))??;
    let pid = child.id();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (exit_tx, exit_rx) = oneshot::channel();
    std::thread::Builder::new().name(format!("replica-wait-{pid}")).spawn(move || {
        let _ = exit_tx.send(child.wait());
    })?;
    Ok(Spawned { pid, exit: exit_rx, stdout, stderr })
}

/// Sends `signal` to the process group `pgid`; a group that is gone is not an error.
pub(crate) fn signal_group(pgid: u32, signal: i32) {
    if let Ok(pgid) = i32::try_from(pgid)
        && pgid > 1
    {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// Whether a process runs (exists and is not a zombie).
pub(crate) fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|s| s.state != 'Z' && s.state != 'X')
}

fn stat(pid: u32) -> Option<procfs::process::Stat> {
    procfs::process::Process::new(i32::try_from(pid).ok()?).ok()?.stat().ok()
}

/// When the process started (clock ticks since boot), to tell a pid from a reused one.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|s| s.starttime)
}

/// CPU the process has used so far (user and system, in clock ticks).
pub(crate) fn cpu_ticks(pid: u32) -> Option<u64> {
    stat(pid).map(|s| s.utime + s.stime)
}

/// Clock ticks per second, the unit of `/proc/{pid}/stat` times.
pub(crate) fn ticks_per_second() -> f64 {
    procfs::ticks_per_second() as f64
}

/// What `{replica}.pid` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PidRecord {
    pub pid: u32,
    /// `/proc` start time of the process; absent off Linux.
    pub start_time: Option<u64>,
    pub port: u16,
    /// Container name and engine program, when the replica runs in a container.
    #[serde(default)]
    pub container: Option<String>,
    #[serde(default)]
    pub engine: Option<PathBuf>,
    /// The engine's global arguments (`--runtime runc`), which removing the container needs too.
    #[serde(default)]
    pub engine_args: Vec<String>,
}

pub(crate) fn write_pid_file(path: &Path, record: &PidRecord) -> io::Result<()> {
    let tmp = path.with_extension("pid.tmp");
    let text = serde_json::to_vec(record).map_err(io::Error::other)?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

pub(crate) fn read_pid_file(path: &Path) -> Option<PidRecord> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Takes an exclusive lock on `{dir}/.lock` (released when the file is closed, also when the
/// process dies); `WouldBlock` when another process holds it.
pub(crate) fn lock_dir(dir: &Path) -> io::Result<File> {
    let file = OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(".lock"))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Kills what a previous run of the platform left behind in `replicas_dir` (pid files whose
/// process groups still run, containers) and removes the pid files. Returns what was killed.
pub(crate) async fn kill_leftovers(replicas_dir: &Path, grace: Duration) -> Vec<String> {
    let mut killed = Vec::new();
    let mut waiting = Vec::new();
    let Ok(deployments) = std::fs::read_dir(replicas_dir) else { return killed };
    for dep in deployments.flatten() {
        let Ok(files) = std::fs::read_dir(dep.path()) else { continue };
        for file in files.flatten() {
            let path = file.path();
            let ext = path.extension().and_then(|e| e.to_str());
            if ext == Some("tmp") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if ext != Some("pid") {
                continue;
            }
            if let Some(rec) = read_pid_file(&path) {
                let what = format!("{} (pid {})", path.display(), rec.pid);
                let exists = alive(rec.pid);
                // A zombie (the replica died with the previous run and init has not reaped it
                // yet) is not running: nothing to wait for, only its group to clear below.
                let ours = match (rec.start_time, start_time(rec.pid)) {
                    (Some(recorded), Some(now)) => exists && recorded == now,
                    // Off Linux nothing tells a reused pid apart: trust the record.
                    (None, _) => exists,
                    (Some(_), None) => false,
                };
                if ours {
                    signal_group(rec.pid, libc::SIGTERM);
                    waiting.push(rec.pid);
                    killed.push(what);
                } else if !exists {
                    // The leader is gone, but members of its group may live on; a pid that is
                    // still some group's id cannot have been reused.
                    signal_group(rec.pid, libc::SIGKILL);
                }
                if let (Some(name), Some(program)) = (&rec.container, &rec.engine) {
                    let engine = super::engine::Engine {
                        program: program.clone(),
                        dialect: super::engine::Dialect::Docker,
                        global_args: rec.engine_args.clone(),
                        run_args: Vec::new(),
                    };
                    super::engine::remove_container(&engine, name).await;
                    killed.push(format!("container {name}"));
                }
            }
            let _ = std::fs::remove_file(&path);
        }
    }
    let deadline = tokio::time::Instant::now() + grace;
    while waiting.iter().any(|p| alive(*p)) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for pid in waiting {
        signal_group(pid, libc::SIGKILL);
    }
    killed
}
