//! Backends make rendered Deployments true: `local` runs replicas as processes on this machine,
//! `kubernetes` applies the objects to a cluster. Both read the same objects.

pub mod kubernetes;
pub mod local;

use std::fmt;
use std::net::SocketAddr;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use serde::Serialize;

pub use kubernetes::Kubernetes;
pub use local::{Local, LocalConfig};

use crate::manifests::{Rendered, RenderedEndpoint};

/// How far back a backend's CPU measure reaches (metrics-server's default resolution).
pub const CPU_WINDOW: std::time::Duration = std::time::Duration::from_secs(15);

/// What runs a rendered Deployment.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Make the world match `deployment` (create, scale, or replace replicas when the pod
    /// template changed). Returns warnings about fields this backend cannot honour.
    async fn apply(&self, deployment: &Deployment) -> Result<Vec<String>, BackendError>;
    /// Remove everything of this deployment name. Deleting an unknown name is not an error.
    async fn delete(&self, name: &str) -> Result<(), BackendError>;
    /// Current replicas with their state and address (ready replicas get routed to).
    async fn status(&self, name: &str) -> Result<DeploymentStatus, BackendError>;
    /// Change only the replica count (autoscaler).
    async fn scale(&self, name: &str, replicas: u32) -> Result<(), BackendError>;
    /// Names of deployments this backend runs (for garbage collection after a restart).
    async fn list(&self) -> Result<Vec<String>, BackendError>;

    /// The mean CPU, in cores, that each ready replica of a deployment used over the last
    /// [`CPU_WINDOW`], for autoscaling on CPU; `None` when the backend does not measure it (on
    /// Kubernetes a HorizontalPodAutoscaler scales on CPU instead) or has no sample yet.
    async fn cpu_per_replica(&self, _name: &str) -> Option<f64> {
        None
    }

    /// Whether the platform's autoscaler sets the replica count for a CPU target, measuring
    /// with [`Backend::cpu_per_replica`]; otherwise the rendered HorizontalPodAutoscaler does.
    fn measures_cpu(&self) -> bool {
        false
    }

    /// Whether a deployed model may autoscale on the GPU duty cycle here: on Kubernetes a
    /// HorizontalPodAutoscaler reads it from a metrics adapter (the DCGM exporter's
    /// `DCGM_FI_DEV_GPU_UTIL`); a backend that cannot measure it refuses the metric.
    fn scales_on_gpu_duty_cycle(&self) -> bool {
        false
    }

    /// Make every object of a deployed model true. A backend that runs only the Deployment
    /// (the default) says which objects it left aside.
    async fn apply_rendered(&self, rendered: &Rendered) -> Result<Vec<String>, BackendError> {
        let mut warnings = self.apply(&rendered.deployment).await?;
        warnings.extend(ignored_objects(rendered));
        Ok(warnings)
    }

    /// What `apply_rendered` would warn about, without applying (for dry runs of edits).
    async fn check(&self, rendered: &Rendered) -> Result<Vec<String>, BackendError> {
        Ok(ignored_objects(rendered).into_iter().collect())
    }

    /// Make an endpoint's routing objects (Ingress, NetworkPolicy) true. Nothing to do where the
    /// platform's own gateway is the only way in (the default).
    async fn apply_endpoint(&self, _endpoint: &RenderedEndpoint) -> Result<Vec<String>, BackendError> {
        Ok(vec![])
    }

    /// Remove an endpoint's routing objects. Deleting unknown ones is not an error.
    async fn delete_endpoint(&self, _endpoint_id: &str) -> Result<(), BackendError> {
        Ok(())
    }

    /// The log lines of a deployment's replicas: the last `request.tail` lines, then, when
    /// `request.follow`, every new line until the stream is dropped or the deployment is gone.
    async fn logs(&self, name: &str, _request: &LogRequest) -> Result<LogStream, BackendError> {
        Err(BackendError::Other(format!("{name}: this backend does not keep replica logs")))
    }
}

/// Who must let go of a replica before it is stopped: the gateway, which stops routing to it
/// and waits for its requests in flight. A backend calls it before SIGTERM (the drain).
#[async_trait]
pub trait Drain: Send + Sync {
    /// Returns once nothing is sent to `address` any more and its requests in flight finished,
    /// or after `grace`.
    async fn drain(&self, address: SocketAddr, grace: std::time::Duration);
}

/// A [`Drain`] in a backend's settings.
#[derive(Clone)]
pub struct Drainer(pub std::sync::Arc<dyn Drain>);

impl fmt::Debug for Drainer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Drainer")
    }
}

/// Told whenever a replica's state changes (started, ready, unready, exited), so that the
/// controller acts at once (publishes a ready replica, finishes a deploy) rather than at its next
/// period.
#[derive(Clone)]
pub struct OnChange(pub std::sync::Arc<dyn Fn() + Send + Sync>);

impl fmt::Debug for OnChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OnChange")
    }
}

/// Which log lines of a deployment to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRequest {
    /// One replica only.
    pub replica: Option<String>,
    /// How many of the last lines (of all replicas together, by time).
    pub tail: usize,
    /// Keep the stream open and send new lines as they are written.
    pub follow: bool,
}

/// One line a replica (or the platform about it) wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    pub replica: String,
    /// RFC 3339, UTC; empty when unknown.
    pub time: String,
    /// `stdout`, `stderr`, or `platform` for the platform's notes (starts, restarts).
    pub stream: String,
    pub text: String,
}

/// Log entries as they come.
pub type LogStream = futures_util::stream::BoxStream<'static, LogEntry>;

/// The warning of a backend that runs only the Deployment (and Service) of a deployed model.
pub fn ignored_objects(rendered: &Rendered) -> Option<String> {
    let ignored: Vec<&str> = [
        rendered.hpa.as_ref().map(|_| "HorizontalPodAutoscaler (the platform's autoscaler scales instead)"),
        rendered.pdb.as_ref().map(|_| "PodDisruptionBudget"),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!ignored.is_empty()).then(|| format!("not used by this backend: {}", ignored.join(", ")))
}

/// The replicas of one deployment.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStatus {
    /// Every replica, including those of an older pod template still serving while their
    /// replacements start (see [`ReplicaStatus::current`]).
    pub replicas: Vec<ReplicaStatus>,
    /// The desired replica count.
    pub desired: u32,
    /// What the deployment waits for before its replicas can start (an image pull's progress).
    pub progress: Option<String>,
    /// Why the deployment cannot become ready whatever happens next (an image that cannot be
    /// pulled, an image that breaks the pod's rules): a deploy fails at once with this.
    pub failure: Option<String>,
}

impl DeploymentStatus {
    /// Addresses of the ready replicas: where the gateway may send requests.
    pub fn ready_addresses(&self) -> Vec<SocketAddr> {
        self.replicas.iter().filter(|r| r.ready).map(|r| r.address).collect()
    }

    /// Ready replicas of the current pod template.
    pub fn ready_current(&self) -> u32 {
        self.replicas.iter().filter(|r| r.ready && r.current).count() as u32
    }

    /// Whether the rollout is complete: `desired` ready replicas, all of the current template.
    pub fn is_settled(&self) -> bool {
        self.replicas.len() as u32 == self.desired && self.ready_current() == self.desired
    }
}

/// One replica.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    pub id: String,
    pub address: SocketAddr,
    pub ready: bool,
    /// How often the replica's process was restarted.
    pub restarts: u32,
    /// Why it last stopped or failed, with the last lines of its output.
    pub last_error: Option<String>,
    pub state: ReplicaState,
    /// Whether it runs the deployment's current pod template (false while it is being replaced).
    pub current: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReplicaState {
    /// Started, not ready yet.
    Starting,
    /// Passing its readiness probe.
    Ready,
    /// Was ready, now failing its readiness probe (not routed to, not restarted).
    Unready,
    /// Exited (or failed its liveness probe) and waits for its next restart.
    CrashLoop,
    /// Could not be started at all; retried with backoff.
    Failed,
}

impl fmt::Display for ReplicaState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ReplicaState::Starting => "Starting",
            ReplicaState::Ready => "Ready",
            ReplicaState::Unready => "Unready",
            ReplicaState::CrashLoop => "CrashLoop",
            ReplicaState::Failed => "Failed",
        };
        f.write_str(s)
    }
}

/// CPU and memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

impl Resources {
    pub fn times(self, n: u32) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_mul(u64::from(n)),
            memory_bytes: self.memory_bytes.saturating_mul(u64::from(n)),
        }
    }

    pub fn plus(self, o: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_add(o.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(o.memory_bytes),
        }
    }

    pub fn minus(self, o: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_sub(o.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_sub(o.memory_bytes),
        }
    }

    pub fn fits_in(self, o: Resources) -> bool {
        self.cpu_millis <= o.cpu_millis && self.memory_bytes <= o.memory_bytes
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gib = self.memory_bytes as f64 / (1u64 << 30) as f64;
        write!(
            f,
            "{} vCPU and {:.2} GiB memory",
            crate::manifests::quantity::format_cpu(self.cpu_millis),
            gib
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("deployment {0} not found")]
    NotFound(String),
    #[error("not enough capacity on this machine: the deployment needs {needed}, only {available} is free")]
    Insufficient { needed: Resources, available: Resources },
    #[error("invalid deployment: {0}")]
    Invalid(String),
    /// Not enough GPUs on this machine, or none at all.
    #[error("{0}")]
    Gpus(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The cluster holds something that contradicts the request (HTTP 409).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The backend's credentials may not do this (HTTP 401/403).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Any other answer of the Kubernetes API (5xx, timeouts, transport errors as code 0).
    #[error("{action}: the Kubernetes API failed ({code}): {message}")]
    Api { action: String, code: u16, message: String },
    #[error("{0}")]
    Other(String),
}

impl BackendError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> BackendError {
        BackendError::Io { context: context.into(), source }
    }
}
