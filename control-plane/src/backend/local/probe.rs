//! Running one probe against a replica.

use std::net::SocketAddr;
use std::process::Stdio;

use tokio::net::TcpStream;

use super::engine::Engine;

use super::launch::{ProbeAction, ProbeSpec};

/// How an exec probe reaches the replica (host processes run theirs confined, elsewhere).
pub(crate) enum ExecTarget<'a> {
    /// `{engine} exec {container} command...`.
    Container { engine: &'a Engine, name: &'a str },
    /// The replica has nowhere to run commands.
    None,
}

/// HTTP clients for probes: plain, and one that accepts any certificate (as the kubelet does
/// for HTTPS probes).
#[derive(Clone)]
pub(crate) struct Clients {
    pub http: reqwest::Client,
    pub https: reqwest::Client,
}

impl Clients {
    pub fn new() -> Result<Clients, String> {
        let base = || reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::limited(10));
        Ok(Clients {
            http: base().build().map_err(|e| e.to_string())?,
            https: base().tls_danger_accept_invalid_certs(true).build().map_err(|e| e.to_string())?,
        })
    }
}

/// Runs the probe once: `Ok` on success, else why it failed.
pub(crate) async fn check(
    probe: &ProbeSpec,
    addr: SocketAddr,
    clients: &Clients,
    exec: ExecTarget<'_>,
) -> Result<(), String> {
    match &probe.action {
        ProbeAction::Http { path, https, headers } => {
            let (client, scheme) = if *https { (&clients.https, "https") } else { (&clients.http, "http") };
            let url = format!("{scheme}://{addr}{path}");
            let mut req = client.get(&url).timeout(probe.timeout).header("user-agent", "platform-probe/1.0");
            for (k, v) in headers {
                req = req.header(k.as_str(), v.as_str());
            }
            match req.send().await {
                Ok(resp) if (200..400).contains(&resp.status().as_u16()) => Ok(()),
                Ok(resp) => Err(format!("GET {path}: HTTP {}", resp.status().as_u16())),
                Err(e) if e.is_timeout() => Err(format!("GET {path}: no answer within {:?}", probe.timeout)),
                Err(e) if e.is_connect() => Err(format!("GET {path}: connection refused on {addr}")),
                Err(e) => Err(format!("GET {path}: {e}")),
            }
        }
        ProbeAction::Tcp => match tokio::time::timeout(probe.timeout, TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("TCP {addr}: {e}")),
            Err(_) => Err(format!("TCP {addr}: no connection within {:?}", probe.timeout)),
        },
        ProbeAction::Exec(command) => {
            let Some(program) = command.first() else {
                return Err("exec probe without a command".into());
            };
            let mut cmd = match exec {
                ExecTarget::Container { engine, name } => {
                    let mut cmd = engine.command(["exec"]);
                    cmd.arg(name).args(command);
                    cmd
                }
                ExecTarget::None => {
                    return Err(format!("exec {program:?}: the replica has nowhere to run commands"));
                }
            };
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).kill_on_drop(true);
            let child = cmd.spawn().map_err(|e| format!("exec {program:?}: {e}"))?;
            match tokio::time::timeout(probe.timeout, child.wait_with_output()).await {
                Ok(Ok(out)) if out.status.success() => Ok(()),
                Ok(Ok(out)) => Err(format!("exec {command:?}: {}", out.status)),
                Ok(Err(e)) => Err(format!("exec {command:?}: {e}")),
                Err(_) => Err(format!("exec {command:?}: did not finish within {:?}", probe.timeout)),
            }
        }
    }
}
