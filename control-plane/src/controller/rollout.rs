//! Pure decisions of the controller: how far a rollout is, and when it has failed.

use std::time::Duration;

use crate::backend::{DeploymentStatus, ReplicaState};
use api::Code;

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Waiting { percent: u32, message: String },
    Ready,
    Failed { code: Code, message: String },
}

/// Judges a rollout that needs `min` ready replicas of the current template. A replica that
/// crashed `max_restarts` times without the rollout becoming ready fails it at once: waiting
/// for the timeout would only repeat the crash.
pub fn judge(
    status: &DeploymentStatus,
    min: u32,
    elapsed: Duration,
    timeout: Duration,
    max_restarts: u32,
    cancel: bool,
) -> Verdict {
    if cancel {
        return Verdict::Failed { code: Code::Cancelled, message: "the operation was cancelled".into() };
    }
    let ready = status.ready_current();
    if ready >= min.max(1) {
        return Verdict::Ready;
    }
    if let Some(failure) = &status.failure {
        return Verdict::Failed { code: Code::FailedPrecondition, message: failure.clone() };
    }
    if let Some(r) = status.replicas.iter().find(|r| r.current && !r.ready && r.restarts >= max_restarts) {
        let why = r.last_error.as_deref().unwrap_or("no output");
        return Verdict::Failed {
            code: Code::FailedPrecondition,
            message: format!("replica {} crashed {} times before it became ready: {why}", r.id, r.restarts),
        };
    }
    let problem = status.replicas.iter().filter(|r| r.current && !r.ready).find_map(|r| match r.state {
        ReplicaState::CrashLoop | ReplicaState::Failed => {
            r.last_error.as_ref().map(|e| format!("replica {} is {}: {e}", r.id, r.state))
        }
        // Started again after a crash, or failing its readiness probe: why it is not ready.
        ReplicaState::Starting | ReplicaState::Unready => {
            r.last_error.as_ref().map(|e| format!("replica {} is not ready: {e}", r.id))
        }
        ReplicaState::Ready => None,
    });
    if elapsed >= timeout {
        let why = problem.unwrap_or_else(|| format!("{ready} of {min} replicas became ready"));
        return Verdict::Failed {
            code: Code::DeadlineExceeded,
            message: format!("the deployment did not become ready within {}s: {why}", timeout.as_secs()),
        };
    }
    let percent = 10 + 80 * ready / min.max(1);
    let mut message = format!("{ready} of {min} replicas ready");
    if let Some(p) = &status.progress {
        message.push_str("; ");
        message.push_str(p);
    }
    if let Some(p) = problem {
        message.push_str("; ");
        message.push_str(&p);
    }
    Verdict::Waiting { percent, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ReplicaStatus;

    fn replica(id: &str, state: ReplicaState, error: Option<&str>) -> ReplicaStatus {
        ReplicaStatus {
            id: id.into(),
            address: "127.0.0.1:1".parse().unwrap(),
            ready: state == ReplicaState::Ready,
            restarts: 0,
            last_error: error.map(str::to_string),
            state,
            current: true,
        }
    }

    #[test]
    fn a_replica_that_keeps_crashing_fails_the_rollout_before_the_timeout() {
        let mut crashing = replica("r0", ReplicaState::CrashLoop, Some("exit status 1: no model.onnx"));
        crashing.restarts = 2;
        let status = DeploymentStatus { desired: 1, replicas: vec![crashing.clone()], ..Default::default() };
        let hour = Duration::from_secs(3600);
        assert!(matches!(judge(&status, 1, Duration::ZERO, hour, 3, false), Verdict::Waiting { .. }));
        crashing.restarts = 3;
        let status = DeploymentStatus { desired: 1, replicas: vec![crashing], ..Default::default() };
        match judge(&status, 1, Duration::ZERO, hour, 3, false) {
            Verdict::Failed { code, message } => {
                assert_eq!(code, Code::FailedPrecondition);
                assert_eq!(
                    message,
                    "replica r0 crashed 3 times before it became ready: exit status 1: no model.onnx"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rollouts_wait_succeed_and_time_out_with_the_cause() {
        let s = |r: Vec<ReplicaStatus>| DeploymentStatus {
            desired: r.len() as u32,
            replicas: r,
            ..Default::default()
        };
        let minute = Duration::from_secs(60);
        let one_ready =
            s(vec![replica("r0", ReplicaState::Ready, None), replica("r1", ReplicaState::Starting, None)]);
        assert_eq!(
            judge(&one_ready, 2, Duration::ZERO, minute, 3, false),
            Verdict::Waiting { percent: 50, message: "1 of 2 replicas ready".into() }
        );
        assert_eq!(judge(&one_ready, 1, Duration::ZERO, minute, 3, false), Verdict::Ready);
        let crashing = s(vec![replica("r0", ReplicaState::CrashLoop, Some("exit status 1: boom"))]);
        match judge(&crashing, 1, minute, minute, 3, false) {
            Verdict::Failed { code, message } => {
                assert_eq!(code, Code::DeadlineExceeded);
                assert!(message.contains("replica r0 is CrashLoop: exit status 1: boom"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            judge(&one_ready, 2, Duration::ZERO, minute, 3, true),
            Verdict::Failed { code: Code::Cancelled, .. }
        ));
        // A pull in progress is shown; a pull that failed fails the rollout at once.
        let pulling = DeploymentStatus { progress: Some("pulling image srv:1".into()), ..one_ready.clone() };
        assert_eq!(
            judge(&pulling, 2, Duration::ZERO, minute, 3, false),
            Verdict::Waiting { percent: 50, message: "1 of 2 replicas ready; pulling image srv:1".into() }
        );
        let missing = DeploymentStatus { failure: Some("cannot pull image `srv:1`".into()), ..one_ready };
        assert_eq!(
            judge(&missing, 2, Duration::ZERO, minute, 3, false),
            Verdict::Failed { code: Code::FailedPrecondition, message: "cannot pull image `srv:1`".into() }
        );
    }
}
