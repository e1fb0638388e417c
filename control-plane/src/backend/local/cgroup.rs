//! Control groups of replica processes: their machine type's CPU and memory as limits, every
//! process of a replica killed together, and the CPU a replica or a container used. Works with
//! cgroup v1 (`cpu`, `cpuacct`, `memory` hierarchies, as on hybrid hosts) and v2.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::backend::Resources;

/// The CFS period of CPU limits (the kernel's and Kubernetes' default).
const CPU_PERIOD_US: u64 = 100_000;

/// Where this process's cgroups are, by controller.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Layout {
    V1 { cpu: PathBuf, cpuacct: PathBuf, memory: PathBuf },
    V2 { dir: PathBuf },
}

/// A mounted cgroup hierarchy: its file system type, mount point and (v1) controllers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mount {
    pub v2: bool,
    pub point: PathBuf,
    pub controllers: Vec<String>,
}

/// One line of `/proc/{pid}/cgroup`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Membership {
    pub v2: bool,
    pub controllers: Vec<String>,
    pub path: String,
}

/// The directories a process's `cpu`, `cpuacct` and `memory` controllers are in: v1 where both
/// `cpu` and `memory` hierarchies are mounted, else v2. Pure.
pub(crate) fn layout(mounts: &[Mount], own: &[Membership]) -> Result<Layout, String> {
    let v1 = |controller: &str| -> Option<PathBuf> {
        let mount = mounts.iter().find(|m| !m.v2 && m.controllers.iter().any(|c| c == controller))?;
        let member = own.iter().find(|m| !m.v2 && m.controllers.iter().any(|c| c == controller))?;
        Some(join(&mount.point, &member.path))
    };
    if let (Some(cpu), Some(memory)) = (v1("cpu"), v1("memory")) {
        let cpuacct = v1("cpuacct").unwrap_or_else(|| cpu.clone());
        return Ok(Layout::V1 { cpu, cpuacct, memory });
    }
    let mount =
        mounts.iter().find(|m| m.v2).ok_or("no cgroup v2 and no cgroup v1 cpu and memory hierarchies")?;
    let member = own.iter().find(|m| m.v2).ok_or("this process is in no cgroup v2")?;
    Ok(Layout::V2 { dir: join(&mount.point, &member.path) })
}

fn join(point: &Path, path: &str) -> PathBuf {
    point.join(path.trim_start_matches('/'))
}

fn mounts() -> Result<Vec<Mount>, String> {
    let infos = procfs::process::Process::myself()
        .and_then(|p| p.mountinfo())
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    Ok(infos
        .into_iter()
        .filter(|m| m.fs_type == "cgroup" || m.fs_type == "cgroup2")
        .map(|m| Mount {
            v2: m.fs_type == "cgroup2",
            point: m.mount_point.clone(),
            controllers: m.super_options.keys().cloned().collect(),
        })
        .collect())
}

fn memberships(pid: Option<u32>) -> Result<Vec<Membership>, String> {
    let process = match pid {
        None => procfs::process::Process::myself(),
        Some(pid) => procfs::process::Process::new(i32::try_from(pid).map_err(|e| e.to_string())?),
    };
    let groups =
        process.and_then(|p| p.cgroups()).map_err(|e| format!("cannot read the process's cgroups: {e}"))?;
    Ok(groups
        .into_iter()
        .map(|g| Membership {
            v2: g.hierarchy == 0,
            controllers: g.controllers.clone(),
            path: g.pathname.clone(),
        })
        .collect())
}

/// Where replicas' cgroups are made: `{name}` beside (v2) or beneath (v1) the platform's own.
#[derive(Debug, Clone)]
pub(crate) struct Cgroups {
    base: Layout,
}

impl Cgroups {
    /// Prepares `{name}/` for replica cgroups with the CPU and memory controllers, or says why
    /// it cannot (not root, controllers not delegated, ...).
    pub fn new(name: &str) -> Result<Cgroups, String> {
        let own = layout(&mounts()?, &memberships(None)?)?;
        let base = match own {
            Layout::V1 { cpu, cpuacct, memory } => {
                Layout::V1 { cpu: cpu.join(name), cpuacct: cpuacct.join(name), memory: memory.join(name) }
            }
            // v2 keeps processes in leaves only: the platform's own cgroup holds the platform, so
            // replicas go into a sibling.
            Layout::V2 { dir } => {
                let parent = if dir.parent().is_some_and(|p| p.join("cgroup.procs").exists()) {
                    dir.parent().map(Path::to_path_buf).unwrap_or(dir)
                } else {
                    dir
                };
                Layout::V2 { dir: parent.join(name) }
            }
        };
        let cgroups = Cgroups { base };
        for dir in cgroups.dirs() {
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create the cgroup {}: {e}", dir.display()))?;
        }
        if let Layout::V2 { dir } = &cgroups.base {
            write(&dir.join("cgroup.subtree_control"), "+cpu +memory").map_err(|e| {
                format!("cannot enable the cpu and memory controllers in {}: {e}", dir.display())
            })?;
        }
        Ok(cgroups)
    }

    fn dirs(&self) -> Vec<PathBuf> {
        match &self.base {
            Layout::V1 { cpu, cpuacct, memory } => {
                let mut dirs = vec![cpu.clone(), memory.clone()];
                if cpuacct != cpu {
                    dirs.push(cpuacct.clone());
                }
                dirs
            }
            Layout::V2 { dir } => vec![dir.clone()],
        }
    }

    /// A cgroup for one replica with `limits` (zero: unlimited), replacing a leftover of the
    /// same name.
    pub fn create(&self, replica: &str, limits: Resources) -> Result<ReplicaCgroup, String> {
        let group = ReplicaCgroup {
            layout: match &self.base {
                Layout::V1 { cpu, cpuacct, memory } => Layout::V1 {
                    cpu: cpu.join(replica),
                    cpuacct: cpuacct.join(replica),
                    memory: memory.join(replica),
                },
                Layout::V2 { dir } => Layout::V2 { dir: dir.join(replica) },
            },
        };
        group.remove();
        for dir in group.dirs() {
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create the cgroup {}: {e}", dir.display()))?;
        }
        let quota = limits.cpu_millis.saturating_mul(CPU_PERIOD_US) / 1000;
        let set = |file: PathBuf, value: String| {
            write(&file, &value).map_err(|e| format!("cannot set {} to {value}: {e}", file.display()))
        };
        match &group.layout {
            Layout::V1 { cpu, memory, .. } => {
                if quota > 0 {
                    set(cpu.join("cpu.cfs_period_us"), CPU_PERIOD_US.to_string())?;
                    set(cpu.join("cpu.cfs_quota_us"), quota.max(1000).to_string())?;
                }
                if limits.memory_bytes > 0 {
                    set(memory.join("memory.limit_in_bytes"), limits.memory_bytes.to_string())?;
                }
            }
            Layout::V2 { dir } => {
                if quota > 0 {
                    set(dir.join("cpu.max"), format!("{} {CPU_PERIOD_US}", quota.max(1000)))?;
                }
                if limits.memory_bytes > 0 {
                    set(dir.join("memory.max"), limits.memory_bytes.to_string())?;
                }
            }
        }
        Ok(group)
    }

    /// Kills the processes of replica cgroups a previous run left behind and removes them.
    pub fn remove_leftovers(&self) -> Vec<String> {
        let mut removed = Vec::new();
        for base in self.dirs() {
            for entry in std::fs::read_dir(&base).into_iter().flatten().flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    let dir = entry.path();
                    kill_all_in(&dir);
                    if std::fs::remove_dir(&dir).is_ok() {
                        removed.push(dir.display().to_string());
                    }
                }
            }
        }
        removed
    }
}

/// The cgroup of one replica.
#[derive(Debug, Clone)]
pub(crate) struct ReplicaCgroup {
    layout: Layout,
}

impl ReplicaCgroup {
    fn dirs(&self) -> Vec<PathBuf> {
        Cgroups { base: self.layout.clone() }.dirs()
    }

    /// The `cgroup.procs` files, opened for writing: a child joins by writing `0` into each.
    pub fn procs_files(&self) -> io::Result<Vec<File>> {
        self.dirs().iter().map(|d| OpenOptions::new().write(true).open(d.join("cgroup.procs"))).collect()
    }

    /// Kills every process in the cgroup (also those that left the replica's process group).
    pub fn kill_all(&self) {
        for dir in self.dirs() {
            kill_all_in(&dir);
        }
    }

    /// Removes the cgroup (once its processes are gone).
    pub fn remove(&self) {
        for dir in self.dirs() {
            if dir.exists() {
                kill_all_in(&dir);
                let _ = std::fs::remove_dir(&dir);
            }
        }
    }

    /// CPU time used by every process of the replica so far, in nanoseconds.
    pub fn cpu_nanos(&self) -> Option<u64> {
        cpu_nanos_in(&self.layout)
    }
}

fn cpu_nanos_in(layout: &Layout) -> Option<u64> {
    match layout {
        Layout::V1 { cpuacct, .. } => {
            std::fs::read_to_string(cpuacct.join("cpuacct.usage")).ok()?.trim().parse().ok()
        }
        Layout::V2 { dir } => {
            let stat = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
            let usec =
                stat.lines().find_map(|l| l.strip_prefix("usage_usec "))?.trim().parse::<u64>().ok()?;
            Some(usec.saturating_mul(1000))
        }
    }
}

/// CPU time used so far by the cgroup that `pid` is in (a container's), in nanoseconds.
pub(crate) fn cpu_nanos_of(pid: u32) -> Option<u64> {
    cpu_nanos_in(&layout(&mounts().ok()?, &memberships(Some(pid)).ok()?).ok()?)
}

fn kill_all_in(dir: &Path) {
    if dir.join("cgroup.kill").exists() {
        let _ = write(&dir.join("cgroup.kill"), "1");
        return;
    }
    for _ in 0..10 {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let pids: Vec<i32> = procs.split_whitespace().filter_map(|p| p.parse().ok()).collect();
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    OpenOptions::new().write(true).open(path)?.write_all(value.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(v2: bool, point: &str, controllers: &[&str]) -> Mount {
        Mount { v2, point: point.into(), controllers: controllers.iter().map(|c| c.to_string()).collect() }
    }

    fn member(v2: bool, controllers: &[&str], path: &str) -> Membership {
        Membership { v2, controllers: controllers.iter().map(|c| c.to_string()).collect(), path: path.into() }
    }

    #[test]
    fn hybrid_hosts_use_v1_and_unified_hosts_v2() {
        let hybrid = [
            mount(false, "/sys/fs/cgroup/cpu,cpuacct", &["rw", "cpu", "cpuacct"]),
            mount(false, "/sys/fs/cgroup/memory", &["rw", "memory"]),
            mount(true, "/sys/fs/cgroup/unified", &[]),
        ];
        let own = [
            member(false, &["cpu", "cpuacct"], "/"),
            member(false, &["memory"], "/sandbox/1"),
            member(true, &[], "/"),
        ];
        assert_eq!(
            layout(&hybrid, &own),
            Ok(Layout::V1 {
                cpu: "/sys/fs/cgroup/cpu,cpuacct".into(),
                cpuacct: "/sys/fs/cgroup/cpu,cpuacct".into(),
                memory: "/sys/fs/cgroup/memory/sandbox/1".into(),
            })
        );
        let unified = [mount(true, "/sys/fs/cgroup", &[])];
        let own = [member(true, &[], "/system.slice/platform.service")];
        assert_eq!(
            layout(&unified, &own),
            Ok(Layout::V2 { dir: "/sys/fs/cgroup/system.slice/platform.service".into() })
        );
        assert!(layout(&[], &own).is_err());
    }
}
