//! What a replica process may touch of this machine's file system, enforced by Landlock: read
//! and execute everywhere except the platform's private paths (the data directory, keys), write
//! only beneath its own scratch directory (and the runtime's cache), and the usual devices.
//! The ruleset is built in the platform and applied by the child between fork and exec.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use landlock::{ABI, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, Scope, path_beneath_rules};

/// The newest Landlock ABI the rules use; older kernels enforce what they know (best effort).
/// ABI 6 (Linux 6.12) also keeps a replica from signalling processes outside it (the platform)
/// and from reaching abstract UNIX sockets outside it.
const ABI_VERSION: ABI = ABI::V6;

/// Devices that programs expect to open whatever else they may not.
const DEVICES: [&str; 6] = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"];

/// The paths a replica may use.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FsPolicy {
    /// Readable and executable beneath these (files or directories).
    pub read: Vec<PathBuf>,
    /// Fully usable beneath these.
    pub write: Vec<PathBuf>,
    /// Reachable through no grant above them: a grant that contains one is split into the parts
    /// that do not. Only a grant at or beneath a hidden path reaches inside it (the runtime's
    /// artifact and cache).
    pub hidden: Vec<PathBuf>,
}

impl FsPolicy {
    /// The read and write grants as rule paths, split around the hidden paths. `list` gives a
    /// directory's entries.
    pub fn rules(&self, list: &dyn Fn(&Path) -> Vec<PathBuf>) -> (Vec<PathBuf>, Vec<PathBuf>) {
        let expand = |grants: &[PathBuf]| {
            let mut out = Vec::new();
            for g in grants {
                if self.hidden.iter().any(|h| g.starts_with(h)) {
                    // An explicit grant inside a hidden path.
                    out.push(g.clone());
                } else {
                    around(g, &self.hidden, list, &mut out);
                }
            }
            out
        };
        (expand(&self.read), expand(&self.write))
    }
}

/// The parts of `grant` that contain no hidden path: `grant` itself, or its entries split
/// recursively.
fn around(grant: &Path, hidden: &[PathBuf], list: &dyn Fn(&Path) -> Vec<PathBuf>, out: &mut Vec<PathBuf>) {
    if hidden.iter().any(|h| h == grant) {
        return;
    }
    if !hidden.iter().any(|h| h.starts_with(grant)) {
        out.push(grant.to_path_buf());
        return;
    }
    for entry in list(grant) {
        around(&entry, hidden, list, out);
    }
}

/// A directory's entries, except symbolic links (one could lead into a hidden path; what they
/// point to is reached through its own grant).
fn entries(dir: &Path) -> Vec<PathBuf> {
    let Ok(read) = std::fs::read_dir(dir) else { return Vec::new() };
    read.flatten().filter(|e| e.file_type().is_ok_and(|t| !t.is_symlink())).map(|e| e.path()).collect()
}

/// A path with symbolic links resolved where it exists (Landlock sees real paths).
pub(crate) fn real(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

/// Whether this kernel enforces Landlock (checked once).
pub(crate) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let created =
            Ruleset::default().handle_access(AccessFs::from_all(ABI_VERSION)).and_then(|r| r.create());
        created.is_ok_and(|c| Option::<OwnedFd>::from(c).is_some())
    })
}

/// The ruleset of `policy`, or `None` where the kernel has no Landlock.
pub(crate) fn ruleset(policy: &FsPolicy) -> Result<Option<OwnedFd>, String> {
    let (read, write) = policy.rules(&entries);
    let build = || -> Result<Option<OwnedFd>, landlock::RulesetError> {
        let created = Ruleset::default()
            .handle_access(AccessFs::from_all(ABI_VERSION))?
            .scope(Scope::from_all(ABI_VERSION))?
            .create()?
            .add_rules(path_beneath_rules(&read, AccessFs::from_read(ABI_VERSION)))?
            .add_rules(path_beneath_rules(&write, AccessFs::from_all(ABI_VERSION)))?
            .add_rules(path_beneath_rules(DEVICES, AccessFs::from_file(ABI_VERSION)))?;
        Ok(created.into())
    };
    build().map_err(|e| format!("cannot build the Landlock rules of the replica: {e}"))
}

/// Between fork and exec: no new privileges (required to restrict oneself), then the ruleset.
/// Only system calls, as the child of a multi-threaded process must.
///
/// # Safety
/// Call only in the child, between fork and exec.
pub(crate) unsafe fn restrict_self(ruleset: &OwnedFd) -> io::Result<()> {
    // SAFETY: plain system calls on a descriptor the caller owns.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn tree() -> BTreeMap<PathBuf, Vec<PathBuf>> {
        let p = PathBuf::from;
        BTreeMap::from([
            (p("/"), vec![p("/usr"), p("/tmp"), p("/etc")]),
            (p("/tmp"), vec![p("/tmp/a"), p("/tmp/run")]),
            (p("/tmp/run"), vec![p("/tmp/run/data"), p("/tmp/run/server.py")]),
            (p("/tmp/run/data"), vec![p("/tmp/run/data/jwt.key"), p("/tmp/run/data/cache")]),
        ])
    }

    #[test]
    fn grants_are_split_around_hidden_paths() {
        let t = tree();
        let list = |d: &Path| t.get(d).cloned().unwrap_or_default();
        let policy = FsPolicy {
            read: vec!["/".into()],
            write: vec!["/tmp/scratch".into(), "/tmp/run/data/cache".into()],
            hidden: vec!["/tmp/run/data".into()],
        };
        let (read, write) = policy.rules(&list);
        let names: Vec<&str> = read.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(names, ["/usr", "/tmp/a", "/tmp/run/server.py", "/etc"]);
        assert!(!read.iter().any(|p| p.starts_with("/tmp/run/data")), "{read:?}");
        // An explicit grant inside the hidden path stays (the runtime's cache).
        assert_eq!(write, [PathBuf::from("/tmp/scratch"), PathBuf::from("/tmp/run/data/cache")]);
        // Nothing hidden: the grant as it is.
        let open = FsPolicy { read: vec!["/".into()], ..Default::default() };
        assert_eq!(open.rules(&list).0, [PathBuf::from("/")]);
    }
}
