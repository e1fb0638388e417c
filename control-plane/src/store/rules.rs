//! The database-independent parts of the store: value checks, JSON columns, etags, names.

use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};

use super::records::{DEFAULT_ALIAS, EndpointKey, ModelKey, Operation, Timestamp};
use super::{Result, StoreError};

/// The text stored for a JSON column; `null` is stored as `{}`.
pub(crate) fn json_text(value: &Value) -> String {
    match value {
        Value::Null => "{}".to_owned(),
        other => other.to_string(),
    }
}

/// The text stored for a nullable JSON column; `Some(null)` is stored as NULL.
pub(crate) fn json_opt_text(value: &Option<Value>) -> Option<String> {
    match value {
        None | Some(Value::Null) => None,
        Some(other) => Some(other.to_string()),
    }
}

pub(crate) fn parse_json(text: &str, column: &str) -> Result<Value> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::corrupt(format!("column {column} holds bad JSON: {e}")))
}

pub(crate) fn parse_opt_json(text: Option<String>, column: &str) -> Result<Option<Value>> {
    text.map(|t| parse_json(&t, column)).transpose()
}

pub(crate) fn timestamp(micros: i64) -> Result<Timestamp> {
    Timestamp::from_unix_micros(micros)
        .ok_or_else(|| StoreError::corrupt(format!("timestamp {micros} (microseconds) is out of range")))
}

pub(crate) fn opt_timestamp(micros: Option<i64>) -> Result<Option<Timestamp>> {
    micros.map(timestamp).transpose()
}

/// A fresh opaque etag: 16 hex digits from a randomly keyed hash of a process-wide counter
/// and the time, so that two writers never hand out the same one.
pub(crate) fn new_etag() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_i64(Timestamp::now().unix_micros());
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

pub(crate) fn check_one_of(value: &str, allowed: &[&str], what: &str) -> Result<()> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(StoreError::InvalidArgument(format!(
            "unknown {what} {value:?}: use one of {}",
            allowed.join(", ")
        )))
    }
}

pub(crate) fn check_id(value: &str, what: &str) -> Result<()> {
    if value.is_empty() {
        Err(StoreError::InvalidArgument(format!("{what} must not be empty")))
    } else {
        Ok(())
    }
}

/// Vertex's alias format, `[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]`: so an alias never looks like a
/// version id.
pub(crate) fn check_alias(alias: &str) -> Result<()> {
    let ok = match alias.as_bytes() {
        [first, middle @ .., last] => {
            alias.len() <= 128
                && first.is_ascii_lowercase()
                && middle.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                && (last.is_ascii_lowercase() || last.is_ascii_digit())
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidArgument(format!(
            "invalid version alias {alias:?}: it must match [a-z][a-zA-Z0-9-]{{0,126}}[a-z0-9]"
        )))
    }
}

/// Checked, deduplicated and sorted aliases; with `default` added when `with_default`.
pub(crate) fn normalize_aliases(aliases: &[String], with_default: bool) -> Result<Vec<String>> {
    let mut set = BTreeSet::new();
    for alias in aliases {
        check_alias(alias)?;
        set.insert(alias.clone());
    }
    if with_default {
        set.insert(DEFAULT_ALIAS.to_owned());
    }
    Ok(set.into_iter().collect())
}

/// The percentage a traffic split gives to `id` (0 when absent).
pub(crate) fn split_percent(split: &Value, id: &str) -> u64 {
    split.get(id).and_then(Value::as_u64).unwrap_or(0)
}

/// The split without `id`.
pub(crate) fn split_without(split: &Value, id: &str) -> Value {
    let mut map = split.as_object().cloned().unwrap_or_default();
    map.remove(id);
    Value::Object(map)
}

/// Checks a traffic split of `endpoint`: an object of `{deployedModelId: percent}`, integers
/// 0..=100 that sum to 100 (or no entries), naming only `deployed` ids.
pub(crate) fn check_split(split: &Value, deployed: &[String], endpoint: &EndpointKey) -> Result<Value> {
    let map = match split {
        Value::Null => return Ok(Value::Object(Map::new())),
        Value::Object(map) => map,
        other => {
            return Err(StoreError::InvalidArgument(format!(
                "a traffic split must be a JSON object of deployedModelId: percent, not {other}"
            )));
        }
    };
    let mut sum = 0;
    for (id, percent) in map {
        let Some(p) = percent.as_u64().filter(|p| *p <= 100) else {
            return Err(StoreError::InvalidArgument(format!(
                "traffic split: the percentage of deployed model {id} must be an integer from 0 to 100, not {percent}"
            )));
        };
        if !deployed.iter().any(|d| d == id) {
            return Err(StoreError::InvalidArgument(format!(
                "traffic split: {id} is not a deployed model of {} (or it is being undeployed)",
                endpoint.name()
            )));
        }
        sum += p;
    }
    if !map.is_empty() && sum != 100 {
        return Err(StoreError::InvalidArgument(format!(
            "traffic split percentages must sum to 100, not {sum} (or the split must be empty)"
        )));
    }
    Ok(split.clone())
}

/// Done operations carry exactly one of error and response; pending ones neither.
pub(crate) fn check_operation_result(op: &Operation) -> Result<()> {
    let error = op.error.as_ref().is_some_and(|v| !v.is_null());
    let response = op.response.as_ref().is_some_and(|v| !v.is_null());
    match (op.done, error, response) {
        (true, true, false) | (true, false, true) | (false, false, false) => Ok(()),
        (true, _, _) => Err(StoreError::InvalidArgument(
            "a done operation has exactly one of error and response".to_owned(),
        )),
        (false, _, _) => Err(StoreError::InvalidArgument(
            "an operation that is not done has neither error nor response".to_owned(),
        )),
    }
}

pub(crate) fn version_name(key: &ModelKey, version_id: i64) -> String {
    format!("{}@{version_id}", key.name())
}

pub(crate) fn alias_name(key: &ModelKey, alias: &str) -> String {
    format!("{}@{alias}", key.name())
}

pub(crate) fn deployed_model_name(endpoint: &EndpointKey, deployed_model_id: &str) -> String {
    format!("{}/deployedModels/{deployed_model_id}", endpoint.name())
}

pub(crate) fn operation_name(project: &str, location: &str, operation_id: &str) -> String {
    format!("projects/{project}/locations/{location}/operations/{operation_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases() {
        for good in ["default", "golden", "v2", "a-b", "aB-3x", "ab"] {
            assert!(check_alias(good).is_ok(), "{good}");
        }
        for bad in ["", "a", "2", "12", "-a", "a-", "Ab", "aB", "a_b", "a.b", &"a".repeat(129)] {
            assert!(check_alias(bad).is_err(), "{bad}");
        }
        assert!(check_alias(&"a".repeat(128)).is_ok());
    }

    #[test]
    fn etags_differ() {
        assert_ne!(new_etag(), new_etag());
        assert_eq!(new_etag().len(), 16);
    }
}
