//! What the cluster's objects say about a deployment's replicas. Pure: the backend fetches the
//! Deployment, its ReplicaSets, Pods and EndpointSlices, and these functions read them.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;

use crate::backend::{DeploymentStatus, ReplicaState, ReplicaStatus};
use crate::manifests::CONTAINER_NAME;
use crate::manifests::spec::DEFAULT_PORT;

/// A container that crashed this recently is still crash-looping, even if it answers its
/// readiness probe between crashes: the kubelet itself only forgets a crash (resets its
/// restart backoff) after ten minutes of running.
pub const CRASH_MEMORY_SECONDS: i64 = 600;

/// Waiting reasons that mean the image cannot be run, and will not be until someone acts.
const IMAGE_FAILURES: [&str; 5] = [
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "ErrImageNeverPull",
];

/// The revision annotation the Deployment controller puts on a Deployment and its ReplicaSets.
const REVISION: &str = "deployment.kubernetes.io/revision";

/// The `pod-template-hash` of the Deployment's current ReplicaSet, when it is known.
pub fn current_template_hash(deployment: &Deployment, replica_sets: &[ReplicaSet]) -> Option<String> {
    let revision = deployment.metadata.annotations.as_ref()?.get(REVISION)?;
    replica_sets
        .iter()
        .find(|rs| rs.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)) == Some(revision))
        .and_then(|rs| rs.metadata.labels.as_ref()?.get("pod-template-hash").cloned())
}

/// Pod name -> address of the endpoints the EndpointSlices mark ready: only these may be
/// routed to (the same set a Service would send traffic to).
pub fn ready_endpoints(slices: &[EndpointSlice]) -> BTreeMap<String, IpAddr> {
    let mut ready = BTreeMap::new();
    for slice in slices {
        for endpoint in &slice.endpoints {
            let is_ready = endpoint.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false);
            let pod = endpoint.target_ref.as_ref().filter(|r| r.kind.as_deref() == Some("Pod"));
            let (Some(pod), true) = (pod, is_ready) else { continue };
            let Some(name) = pod.name.clone() else { continue };
            if let Some(ip) = endpoint.addresses.iter().find_map(|a| a.parse::<IpAddr>().ok()) {
                ready.insert(name, ip);
            }
        }
    }
    ready
}

/// One pod as a replica. `logs` are the last lines of the previous run of a crash-looping
/// container, when the backend fetched them.
pub fn replica(
    pod: &Pod,
    ready_endpoints: &BTreeMap<String, IpAddr>,
    current_hash: Option<&str>,
    logs: Option<&str>,
    now: Timestamp,
) -> ReplicaStatus {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let container =
        spec.and_then(|s| s.containers.iter().find(|c| c.name == CONTAINER_NAME).or(s.containers.first()));
    let port = container
        .and_then(|c| c.ports.as_ref())
        .and_then(|p| p.first())
        .map(|p| p.container_port)
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(DEFAULT_PORT as u16);
    let status = pod.status.as_ref();
    let pod_ip = status.and_then(|s| s.pod_ip.as_deref()).and_then(|ip| ip.parse::<IpAddr>().ok());
    let address = SocketAddr::new(
        ready_endpoints.get(&name).copied().or(pod_ip).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        port,
    );
    let container_status: Option<&ContainerStatus> = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| Some(c.name.as_str()) == container.map(|c| c.name.as_str())));
    let restarts = container_status.map(|c| u32::try_from(c.restart_count).unwrap_or(0)).unwrap_or(0);
    let current = match (current_hash, pod.metadata.labels.as_ref().and_then(|l| l.get("pod-template-hash")))
    {
        (Some(want), Some(have)) => want == have,
        _ => true,
    };
    let pod_ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));

    let (state, last_error) = classify(pod, container_status, logs, now);
    let routable = pod_ready && state == ReplicaState::Ready && ready_endpoints.contains_key(&name);
    ReplicaStatus {
        id: name,
        address,
        ready: routable,
        restarts,
        last_error,
        state: if state == ReplicaState::Ready && !routable { ReplicaState::Starting } else { state },
        current,
    }
}

/// The state of a pod and why it failed, when it did.
fn classify(
    pod: &Pod,
    container: Option<&ContainerStatus>,
    logs: Option<&str>,
    now: Timestamp,
) -> (ReplicaState, Option<String>) {
    let status = pod.status.as_ref();
    let unschedulable = status.and_then(|s| s.conditions.as_ref()).and_then(|c| {
        c.iter().find(|c| {
            c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable")
        })
    });
    if let Some(condition) = unschedulable {
        let message = condition.message.clone().unwrap_or_default();
        return (ReplicaState::Failed, Some(format!("Unschedulable: {message}")));
    }
    if status.and_then(|s| s.phase.as_deref()) == Some("Failed") {
        let reason = status.and_then(|s| s.reason.clone()).unwrap_or_else(|| "Failed".into());
        let message = status.and_then(|s| s.message.clone()).unwrap_or_default();
        return (
            ReplicaState::Failed,
            Some(format!("{reason}: {message}").trim_end_matches([':', ' ']).to_string()),
        );
    }
    let Some(container) = container else {
        return (ReplicaState::Starting, None);
    };
    let waiting = container.state.as_ref().and_then(|s| s.waiting.as_ref());
    let waiting_reason = waiting.and_then(|w| w.reason.as_deref()).unwrap_or_default();
    if IMAGE_FAILURES.contains(&waiting_reason) {
        let message = waiting.and_then(|w| w.message.clone()).unwrap_or_default();
        return (
            ReplicaState::Failed,
            Some(format!("{waiting_reason}: {message}").trim_end_matches([':', ' ']).to_string()),
        );
    }
    let last = container.last_state.as_ref().and_then(|s| s.terminated.as_ref());
    let crashed_recently = last.is_some_and(|t| {
        t.finished_at.as_ref().is_none_or(|at| now.as_second() - at.0.as_second() < CRASH_MEMORY_SECONDS)
    });
    if waiting_reason == "CrashLoopBackOff" || (container.restart_count > 0 && crashed_recently) {
        let mut why = String::from("CrashLoopBackOff");
        if let Some(t) = last {
            why.push_str(&format!(": exited with code {}", t.exit_code));
            if let Some(reason) = t.reason.as_deref().filter(|r| !r.is_empty()) {
                why.push_str(&format!(" ({reason})"));
            }
            if let Some(message) = t.message.as_deref().filter(|m| !m.trim().is_empty()) {
                why.push_str(&format!(": {}", message.trim()));
            }
        }
        why.push_str(&format!(", restarted {} times", container.restart_count));
        if let Some(logs) = logs.map(str::trim_end).filter(|l| !l.is_empty()) {
            why.push_str("; last log lines:\n");
            why.push_str(logs);
        }
        return (ReplicaState::CrashLoop, Some(why));
    }
    if container.ready {
        return (ReplicaState::Ready, None);
    }
    // Running but not ready: starting, or failing its readiness probe; either way not routed.
    (ReplicaState::Starting, None)
}

fn model_container_status(pod: &Pod) -> Option<&ContainerStatus> {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.iter().find(|c| c.name == CONTAINER_NAME).or(c.first()))
}

/// Whether the backend should fetch a pod's previous logs: its container crash-loops.
pub fn needs_logs(pod: &Pod, now: Timestamp) -> bool {
    matches!(classify(pod, model_container_status(pod), None, now).0, ReplicaState::CrashLoop)
}

/// How many times the model container restarted (which run its previous logs belong to).
pub fn restart_count(pod: &Pod) -> i32 {
    model_container_status(pod).map_or(0, |c| c.restart_count)
}

/// The replicas of a deployment from its objects.
pub fn deployment_status(
    deployment: &Deployment,
    replica_sets: &[ReplicaSet],
    pods: &[Pod],
    slices: &[EndpointSlice],
    logs: &BTreeMap<String, String>,
    now: Timestamp,
) -> DeploymentStatus {
    let ready = ready_endpoints(slices);
    let hash = current_template_hash(deployment, replica_sets);
    let mut replicas: Vec<ReplicaStatus> = pods
        .iter()
        // Terminating pods are on their way out: never routed to, never counted.
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            let name = p.metadata.name.clone().unwrap_or_default();
            replica(p, &ready, hash.as_deref(), logs.get(&name).map(String::as_str), now)
        })
        .collect();
    replicas.sort_by(|a, b| a.id.cmp(&b.id));
    let desired =
        deployment.spec.as_ref().and_then(|s| s.replicas).map_or(1, |n| u32::try_from(n).unwrap_or(0));
    DeploymentStatus { replicas, desired, ..Default::default() }
}
