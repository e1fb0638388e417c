//! Container engines (docker, podman): whether one is usable, and the arguments that run a
//! replica's container with its port published on loopback.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// A usable container engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    /// The program, e.g. `docker` or `/usr/bin/podman`.
    pub program: PathBuf,
}

impl Engine {
    pub fn name(&self) -> String {
        self.program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

/// The first engine of `candidates` whose `info` command works (the CLI alone is not enough:
/// its daemon must answer), or why none does.
pub(crate) async fn detect(candidates: &[String]) -> Result<Engine, String> {
    if candidates.is_empty() {
        return Err("container engines are disabled".into());
    }
    let mut reasons = Vec::new();
    for candidate in candidates {
        match check(candidate).await {
            Ok(()) => return Ok(Engine { program: PathBuf::from(candidate) }),
            Err(why) => reasons.push(format!("{candidate}: {why}")),
        }
    }
    Err(reasons.join("; "))
}

async fn check(program: &str) -> Result<(), String> {
    let mut cmd = Command::new(program);
    cmd.arg("info").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound { "not installed".to_string() } else { e.to_string() }
    })?;
    let out = tokio::time::timeout(Duration::from_secs(15), child.wait_with_output())
        .await
        .map_err(|_| format!("`{program} info` did not answer within 15 s"))?
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    Err(format!(
        "`{program} info` failed ({}){}",
        out.status,
        if first.is_empty() { String::new() } else { format!(": {first}") }
    ))
}

/// Removes a container, ignoring errors (it may be gone already).
pub(crate) async fn remove_container(engine: &std::path::Path, name: &str) {
    let mut cmd = Command::new(engine);
    cmd.args(["rm", "-f", name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if let Ok(child) = cmd.spawn() {
        let _ = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await;
    }
}
