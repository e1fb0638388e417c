//! Secrets on disk (the token key, the first admin token, TLS keys): readable by the owner only.

use std::io::Write;
use std::path::Path;

/// Writes a secret readable only by the owner (mode 0600 on Unix), creating parent directories.
pub fn write(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}
