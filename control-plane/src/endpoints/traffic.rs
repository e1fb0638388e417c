//! Vertex's traffic-split rules, as pure functions: a split maps deployed model ids to
//! percents that sum to 100, or is empty (no traffic). On deploy, the key `"0"` stands for the
//! model being deployed; undeploying a model that still receives traffic is refused unless
//! the request's split takes that traffic away.

pub use crate::store::TrafficSplit;

/// A split that breaks the rules, with what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SplitError(pub String);

impl api::Coded for SplitError {
    fn code(&self) -> api::Code {
        api::Code::InvalidArgument
    }
}

/// Checks that `split` only names `deployed` models, has percents in 0..=100, and sums to 100
/// (or is empty).
pub fn validate(split: &TrafficSplit, deployed: &[&str]) -> Result<(), SplitError> {
    for (id, percent) in split {
        if !deployed.contains(&id.as_str()) {
            return Err(SplitError(format!(
                "trafficSplit names `{id}`, which is not deployed on this endpoint; deployed: [{}]",
                deployed.join(", ")
            )));
        }
        if !(0..=100).contains(percent) {
            return Err(SplitError(format!(
                "trafficSplit gives `{id}` {percent}%; percents go from 0 to 100"
            )));
        }
    }
    let total: i32 = split.values().sum();
    if !split.is_empty() && total != 100 {
        return Err(SplitError(format!("trafficSplit percents sum to {total}; they must sum to 100")));
    }
    Ok(())
}

/// The endpoint's split after deploying `new_id`: the request's split with `"0"` replaced by
/// `new_id`, or the current split unchanged when the request gives none.
pub fn after_deploy(
    current: &TrafficSplit,
    requested: &TrafficSplit,
    new_id: &str,
    already_deployed: &[&str],
) -> Result<TrafficSplit, SplitError> {
    if requested.is_empty() {
        // The first model of an endpoint takes all traffic, as Vertex does when the split is empty.
        if current.is_empty() && already_deployed.is_empty() {
            return Ok(TrafficSplit::from([(new_id.to_string(), 100)]));
        }
        return Ok(current.clone());
    }
    let split: TrafficSplit = requested
        .iter()
        .map(|(id, p)| (if id == "0" { new_id.to_string() } else { id.clone() }, *p))
        .collect();
    let mut deployed: Vec<&str> = already_deployed.to_vec();
    deployed.push(new_id);
    validate(&split, &deployed)?;
    Ok(split)
}

/// The endpoint's split after undeploying `id`.
pub fn after_undeploy(
    current: &TrafficSplit,
    requested: &TrafficSplit,
    id: &str,
    deployed: &[&str],
) -> Result<TrafficSplit, SplitError> {
    let remaining: Vec<&str> = deployed.iter().copied().filter(|d| *d != id).collect();
    if remaining.is_empty() {
        return Ok(TrafficSplit::new());
    }
    let split = if requested.is_empty() { current.clone() } else { requested.clone() };
    if split.get(id).is_some_and(|p| *p > 0) {
        return Err(SplitError(format!(
            "deployed model `{id}` still receives {}% of the traffic; send a trafficSplit that gives it 0, or change the endpoint's split first",
            split[id]
        )));
    }
    let split: TrafficSplit = split.into_iter().filter(|(k, _)| k != id).collect();
    validate(&split, &remaining)?;
    Ok(split)
}

/// The split after `id` is gone: its share goes to the others in proportion (largest
/// remainders first), so that it still sums to 100; empty when nothing else had traffic.
pub fn redistribute_without(split: &TrafficSplit, id: &str) -> TrafficSplit {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn split(pairs: &[(&str, i32)]) -> TrafficSplit {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn splits_sum_to_100_over_deployed_models() {
        assert!(validate(&split(&[("1", 50), ("2", 50)]), &["1", "2"]).is_ok());
        assert!(validate(&split(&[]), &["1"]).is_ok());
        assert_eq!(
            validate(&split(&[("1", 50), ("2", 40)]), &["1", "2"]).unwrap_err().0,
            "trafficSplit percents sum to 90; they must sum to 100"
        );
        assert!(validate(&split(&[("9", 100)]), &["1"]).unwrap_err().0.contains("not deployed"));
        assert!(validate(&split(&[("1", 120), ("2", -20)]), &["1", "2"]).is_err());
    }

    #[test]
    fn deploy_replaces_zero_with_the_new_model() {
        let current = split(&[("1", 100)]);
        let next = after_deploy(&current, &split(&[("0", 20), ("1", 80)]), "2", &["1"]).unwrap();
        assert_eq!(next, split(&[("1", 80), ("2", 20)]));
        // No split in the request: unchanged, so the new model gets no traffic...
        assert_eq!(after_deploy(&current, &split(&[]), "2", &["1"]).unwrap(), current);
        // ...except for an endpoint's first model, which takes it all.
        assert_eq!(after_deploy(&split(&[]), &split(&[]), "1", &[]).unwrap(), split(&[("1", 100)]));
        assert!(after_deploy(&current, &split(&[("0", 20)]), "2", &["1"]).is_err());
    }

    #[test]
    fn undeploy_is_refused_while_the_model_has_traffic() {
        let current = split(&[("1", 70), ("2", 30)]);
        let err = after_undeploy(&current, &split(&[]), "2", &["1", "2"]).unwrap_err();
        assert!(err.0.contains("still receives 30%"), "{}", err.0);
        let next = after_undeploy(&current, &split(&[("1", 100), ("2", 0)]), "2", &["1", "2"]).unwrap();
        assert_eq!(next, split(&[("1", 100)]));
        // The last model always leaves an empty split.
        assert_eq!(after_undeploy(&split(&[("1", 100)]), &split(&[]), "1", &["1"]).unwrap(), split(&[]));
    }

    #[test]
    fn a_removed_share_is_spread_over_the_rest() {
        assert_eq!(redistribute_without(&split(&[("a", 50), ("b", 50)]), "b"), split(&[("a", 100)]));
        assert_eq!(redistribute_without(&split(&[("a", 100)]), "a"), split(&[]));
        let three = redistribute_without(&split(&[("a", 10), ("b", 10), ("c", 10), ("d", 70)]), "d");
        assert_eq!(three.values().sum::<i32>(), 100);
        assert_eq!(three, split(&[("a", 34), ("b", 33), ("c", 33)]));
        assert_eq!(redistribute_without(&split(&[("a", 0), ("b", 100)]), "b"), split(&[]));
    }
}
