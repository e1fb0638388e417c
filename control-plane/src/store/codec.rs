//! How typed fields become columns and back: JSON text, microsecond timestamps, enum names.
//! Decoding happens once, here; a value that does not decode is a [`StoreError::Corrupt`]
//! naming its row, never a default.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Result, StoreError, Timestamp};

/// The JSON text stored for a value.
pub(crate) fn to_json<T: Serialize>(value: &T) -> String {
    // Records hold only string-keyed maps, numbers and strings: serializing cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

/// A JSON column of `row`.
pub(crate) fn from_json<T: DeserializeOwned>(text: &str, row: &str, column: &'static str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| corrupt(row, column, e))
}

/// A nullable JSON column of `row`.
pub(crate) fn from_opt_json<T: DeserializeOwned>(
    text: Option<String>,
    row: &str,
    column: &'static str,
) -> Result<Option<T>> {
    text.map(|t| from_json(&t, row, column)).transpose()
}

/// A time column (microseconds since the Unix epoch) of `row`.
pub(crate) fn timestamp(micros: i64, row: &str, column: &'static str) -> Result<Timestamp> {
    Timestamp::from_unix_micros(micros)
        .ok_or_else(|| corrupt(row, column, format!("{micros} microseconds is out of range")))
}

pub(crate) fn opt_timestamp(
    micros: Option<i64>,
    row: &str,
    column: &'static str,
) -> Result<Option<Timestamp>> {
    micros.map(|m| timestamp(m, row, column)).transpose()
}

/// An enum column of `row`, by its stored name.
pub(crate) fn name_of<T>(
    text: &str,
    row: &str,
    column: &'static str,
    parse: fn(&str) -> Option<T>,
) -> Result<T> {
    parse(text).ok_or_else(|| corrupt(row, column, format!("{text:?} is not a known value")))
}

pub(crate) fn corrupt(row: &str, column: &'static str, reason: impl ToString) -> StoreError {
    StoreError::Corrupt { row: row.to_owned(), column, reason: reason.to_string() }
}
