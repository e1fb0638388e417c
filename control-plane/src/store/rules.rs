//! The database-independent parts of the store: value checks and etags.

use std::collections::BTreeSet;

use super::{DEFAULT_ALIAS, EndpointKey, Operation, Result, StoreError, TrafficSplit};

/// A fresh opaque etag: 16 random hex digits.
pub(crate) fn new_etag() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// A random decimal id of `digits` digits (1 to 18, no leading zero), as Vertex generates ids
/// of models, endpoints, deployed models and operations.
pub fn new_numeric_id(digits: u32) -> String {
    let low = 10u64.pow(digits.clamp(1, 18) - 1);
    rand::random_range(low..low * 10).to_string()
}

pub(crate) fn check_id(value: &str, what: &str) -> Result<()> {
    if value.is_empty() {
        Err(StoreError::InvalidArgument(format!("{what} must not be empty")))
    } else {
        Ok(())
    }
}

/// Checked, deduplicated and sorted aliases; with `default` added when `with_default`.
pub(crate) fn normalize_aliases(aliases: &[String], with_default: bool) -> Result<Vec<String>> {
    let mut set = BTreeSet::new();
    for alias in aliases {
        api::check_alias(alias).map_err(|e| StoreError::InvalidArgument(e.to_string()))?;
        set.insert(alias.clone());
    }
    if with_default {
        set.insert(DEFAULT_ALIAS.to_owned());
    }
    Ok(set.into_iter().collect())
}

/// The percentage a traffic split gives to `id` (0 when absent).
pub(crate) fn split_percent(split: &TrafficSplit, id: &str) -> i32 {
    split.get(id).copied().unwrap_or(0)
}

/// The split without `id`.
pub(crate) fn split_without(split: &TrafficSplit, id: &str) -> TrafficSplit {
    split.iter().filter(|(k, _)| k.as_str() != id).map(|(k, v)| (k.clone(), *v)).collect()
}

/// Checks a traffic split of `endpoint`: percents 0..=100 that sum to 100 (or no entries),
/// naming only `deployed` ids.
pub(crate) fn check_split(split: &TrafficSplit, deployed: &[String], endpoint: &EndpointKey) -> Result<()> {
    for (id, percent) in split {
        if !(0..=100).contains(percent) {
            return Err(StoreError::InvalidArgument(format!(
                "traffic split: the percentage of deployed model {id} must be an integer from 0 to 100, not {percent}"
            )));
        }
        if !deployed.iter().any(|d| d == id) {
            return Err(StoreError::InvalidArgument(format!(
                "traffic split: {id} is not a deployed model of {} (or it is being undeployed)",
                endpoint.name()
            )));
        }
    }
    let sum: i32 = split.values().sum();
    if !split.is_empty() && sum != 100 {
        return Err(StoreError::InvalidArgument(format!(
            "traffic split percentages must sum to 100, not {sum} (or the split must be empty)"
        )));
    }
    Ok(())
}

/// Done operations carry exactly one of error and response; pending ones neither.
pub(crate) fn check_operation_result(op: &Operation) -> Result<()> {
    match (op.done, op.error.is_some(), op.response.is_some()) {
        (true, true, false) | (true, false, true) | (false, false, false) => Ok(()),
        (true, _, _) => Err(StoreError::InvalidArgument(
            "a done operation has exactly one of error and response".to_owned(),
        )),
        (false, _, _) => Err(StoreError::InvalidArgument(
            "an operation that is not done has neither error nor response".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_are_checked_and_sorted() {
        let aliases = normalize_aliases(&["v2".into(), "golden".into(), "v2".into()], true).unwrap();
        assert_eq!(aliases, ["default", "golden", "v2"]);
        assert!(normalize_aliases(&["2".into()], false).is_err());
    }

    #[test]
    fn numeric_ids_have_their_length() {
        for _ in 0..100 {
            let id = new_numeric_id(18);
            assert_eq!(id.len(), 18);
            assert!(!id.starts_with('0'));
        }
        assert_eq!(new_numeric_id(1).len(), 1);
    }

    #[test]
    fn etags_differ() {
        assert_ne!(new_etag(), new_etag());
        assert_eq!(new_etag().len(), 16);
    }

    #[test]
    fn splits_sum_to_100_over_deployed_models() {
        let key = EndpointKey::new("p", "l", "e");
        let deployed = ["1".to_string(), "2".to_string()];
        let split = |pairs: &[(&str, i32)]| pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        assert!(check_split(&split(&[("1", 40), ("2", 60)]), &deployed, &key).is_ok());
        assert!(check_split(&split(&[]), &deployed, &key).is_ok());
        assert!(check_split(&split(&[("1", 40)]), &deployed, &key).is_err());
        assert!(check_split(&split(&[("3", 100)]), &deployed, &key).is_err());
        assert!(check_split(&split(&[("1", 120), ("2", -20)]), &deployed, &key).is_err());
    }
}
