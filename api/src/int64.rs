//! proto3 JSON writes 64-bit integers as strings and reads either form: [`Int64`], a
//! `serde_with` adapter, so that `Option<Int64>` and `Vec<Int64>` compose.

use serde::{Deserialize, Deserializer, Serializer};
use serde_with::{DeserializeAs, SerializeAs};

/// For `i64` fields with `#[serde_as(as = "Int64")]`: `"42"` out, `"42"` or `42` in.
pub struct Int64;

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrNumber {
    String(String),
    Number(i64),
}

impl SerializeAs<i64> for Int64 {
    fn serialize_as<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }
}

impl<'de> DeserializeAs<'de, i64> for Int64 {
    fn deserialize_as<D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        match StringOrNumber::deserialize(d)? {
            StringOrNumber::Number(n) => Ok(n),
            StringOrNumber::String(s) => s
                .trim()
                .parse()
                .map_err(|_| serde::de::Error::custom(format!("`{s}` is not a 64-bit integer"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use serde_with::serde_as;

    use super::Int64;

    #[serde_as]
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct T {
        #[serde_as(as = "Int64")]
        a: i64,
        #[serde_as(as = "Option<Int64>")]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        b: Option<i64>,
    }

    #[test]
    fn int64_is_a_string_out_and_either_in() {
        assert_eq!(serde_json::to_string(&T { a: 5, b: Some(7) }).unwrap(), r#"{"a":"5","b":"7"}"#);
        assert_eq!(serde_json::from_str::<T>(r#"{"a":5}"#).unwrap(), T { a: 5, b: None });
        assert_eq!(serde_json::from_str::<T>(r#"{"a":"5","b":9}"#).unwrap(), T { a: 5, b: Some(9) });
        assert!(serde_json::from_str::<T>(r#"{"a":"x"}"#).unwrap_err().to_string().contains("not a 64-bit"));
    }
}
