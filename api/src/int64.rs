//! proto3 JSON writes 64-bit integers as strings and reads either form.

use serde::{Deserialize, Deserializer, Serializer};

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrNumber {
    String(String),
    Number(i64),
}

fn parse<E: serde::de::Error>(v: StringOrNumber) -> Result<i64, E> {
    match v {
        StringOrNumber::Number(n) => Ok(n),
        StringOrNumber::String(s) => {
            s.trim().parse().map_err(|_| E::custom(format!("`{s}` is not a 64-bit integer")))
        }
    }
}

/// For `i64` fields: `"42"` out, `"42"` or `42` in.
pub mod string {
    use super::*;

    pub fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        parse(StringOrNumber::deserialize(d)?)
    }
}

/// For `Option<i64>` fields.
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&v.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        match Option::<StringOrNumber>::deserialize(d)? {
            Some(v) => parse(v).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct T {
        #[serde(with = "super::string")]
        a: i64,
        #[serde(with = "super::option", default, skip_serializing_if = "Option::is_none")]
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
