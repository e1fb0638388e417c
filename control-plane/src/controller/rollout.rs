//! Pure decisions of the controller: how far a rollout is, when it has failed, and the traffic
//! split that remains when a deployed model goes away.

use std::time::Duration;

use crate::backend::{DeploymentStatus, ReplicaState};
use crate::endpoints::traffic::TrafficSplit;

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Waiting { percent: u32, message: String },
    Ready,
    Failed { code: &'static str, message: String },
}

/// Judges a rollout that needs `min` ready replicas of the current template.
pub fn judge(
    status: &DeploymentStatus,
    min: u32,
    elapsed: Duration,
    timeout: Duration,
    cancel: bool,
) -> Verdict {
    if cancel {
        return Verdict::Failed { code: "CANCELLED", message: "the operation was cancelled".into() };
    }
    let ready = status.ready_current();
    if ready >= min.max(1) {
        return Verdict::Ready;
    }
    let problem = status
        .replicas
        .iter()
        .filter(|r| r.current && matches!(r.state, ReplicaState::CrashLoop | ReplicaState::Failed))
        .find_map(|r| r.last_error.as_ref().map(|e| format!("replica {} is {}: {e}", r.id, r.state)));
    if elapsed >= timeout {
        let why = problem.unwrap_or_else(|| format!("{ready} of {min} replicas became ready"));
        return Verdict::Failed {
            code: "DEADLINE_EXCEEDED",
            message: format!("the deployment did not become ready within {}s: {why}", timeout.as_secs()),
        };
    }
    let percent = 10 + 80 * ready / min.max(1);
    let mut message = format!("{ready} of {min} replicas ready");
    if let Some(p) = problem {
        message.push_str("; ");
        message.push_str(&p);
    }
    Verdict::Waiting { percent, message }
}

/// The split after `id` is gone: its share goes to the others in proportion (largest
/// remainders first), so that it still sums to 100; empty when nothing else had traffic.
pub fn split_without(split: &TrafficSplit, id: &str) -> TrafficSplit {
    let rest: Vec<(&String, i32)> = split.iter().filter(|(k, _)| *k != id).map(|(k, v)| (k, *v)).collect();
    let total: i32 = rest.iter().map(|(_, v)| *v).sum();
    if total <= 0 {
        return TrafficSplit::new();
    }
    let mut shares: Vec<(String, i32, i32)> =
        rest.iter().map(|(k, v)| ((*k).clone(), v * 100 / total, (v * 100) % total)).collect();
    let mut missing = 100 - shares.iter().map(|(_, s, _)| *s).sum::<i32>();
    let mut order: Vec<usize> = (0..shares.len()).collect();
    order.sort_by(|a, b| shares[*b].2.cmp(&shares[*a].2).then(a.cmp(b)));
    for ix in order {
        if missing <= 0 {
            break;
        }
        shares[ix].1 += 1;
        missing -= 1;
    }
    shares.into_iter().map(|(k, s, _)| (k, s)).collect()
}

/// `"1800s"`, `"30m"`, `"1h 30m"`: a duration as Vertex (proto3 JSON) or a person writes it.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let parsed = match t.strip_suffix('s').and_then(|n| n.parse::<f64>().ok()) {
        Some(secs) if secs.is_finite() && secs >= 0.0 => Ok(Duration::from_secs_f64(secs)),
        _ => humantime::parse_duration(t).map_err(|e| e.to_string()),
    };
    parsed.map_err(|e| format!("`{text}` is not a duration ({e}); write it like \"1800s\" or \"30m\""))
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
    fn rollouts_wait_succeed_and_time_out_with_the_cause() {
        let s = |r: Vec<ReplicaStatus>| DeploymentStatus { desired: r.len() as u32, replicas: r };
        let minute = Duration::from_secs(60);
        let one_ready =
            s(vec![replica("r0", ReplicaState::Ready, None), replica("r1", ReplicaState::Starting, None)]);
        assert_eq!(
            judge(&one_ready, 2, Duration::ZERO, minute, false),
            Verdict::Waiting { percent: 50, message: "1 of 2 replicas ready".into() }
        );
        assert_eq!(judge(&one_ready, 1, Duration::ZERO, minute, false), Verdict::Ready);
        let crashing = s(vec![replica("r0", ReplicaState::CrashLoop, Some("exit status 1: boom"))]);
        match judge(&crashing, 1, minute, minute, false) {
            Verdict::Failed { code, message } => {
                assert_eq!(code, "DEADLINE_EXCEEDED");
                assert!(message.contains("replica r0 is CrashLoop: exit status 1: boom"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            judge(&one_ready, 2, Duration::ZERO, minute, true),
            Verdict::Failed { code: "CANCELLED", .. }
        ));
    }

    #[test]
    fn a_removed_share_is_spread_over_the_rest() {
        let split = |p: &[(&str, i32)]| p.iter().map(|(k, v)| (k.to_string(), *v)).collect::<TrafficSplit>();
        assert_eq!(split_without(&split(&[("a", 50), ("b", 50)]), "b"), split(&[("a", 100)]));
        assert_eq!(split_without(&split(&[("a", 100)]), "a"), split(&[]));
        let three = split_without(&split(&[("a", 10), ("b", 10), ("c", 10), ("d", 70)]), "d");
        assert_eq!(three.values().sum::<i32>(), 100);
        assert_eq!(three, split(&[("a", 34), ("b", 33), ("c", 33)]));
        assert_eq!(split_without(&split(&[("a", 0), ("b", 100)]), "b"), split(&[]));
    }

    #[test]
    fn timeouts_take_vertex_and_human_forms() {
        assert_eq!(parse_timeout("1800s").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_timeout("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_timeout("30m").unwrap(), Duration::from_secs(1800));
        assert!(parse_timeout("soon").unwrap_err().contains("1800s"));
    }
}
