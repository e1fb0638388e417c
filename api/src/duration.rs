//! `google.protobuf.Duration` as proto3 JSON writes it (`"1800s"`, `"1.5s"`), also read in the
//! forms people write (`"30m"`, `"1h 30m"`). The one parser of durations in requests.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration from a request or a stored spec.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

/// A text that is not a duration, with how to write one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a duration ({reason}); write it like \"1800s\" or \"30m\"")]
pub struct DurationError {
    pub text: String,
    pub reason: String,
}

impl Duration {
    pub fn from_secs(secs: u64) -> Duration {
        Duration(std::time::Duration::from_secs(secs))
    }

    pub fn get(self) -> std::time::Duration {
        self.0
    }

    /// Whole seconds, rounded up (Kubernetes fields such as `progressDeadlineSeconds`).
    pub fn whole_seconds_up(self) -> u64 {
        self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0)
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Duration, DurationError> {
        let t = text.trim();
        let error = |reason: String| DurationError { text: text.to_string(), reason };
        if let Some(secs) = t.strip_suffix('s').and_then(|n| n.parse::<f64>().ok()) {
            return if secs.is_finite() && secs >= 0.0 {
                std::time::Duration::try_from_secs_f64(secs).map(Duration).map_err(|e| error(e.to_string()))
            } else {
                Err(error("negative or not finite".into()))
            };
        }
        humantime::parse_duration(t).map(Duration).map_err(|e| error(e.to_string()))
    }
}

impl fmt::Display for Duration {
    /// Proto3 JSON: seconds with up to nine fractional digits and an `s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (secs, nanos) = (self.0.as_secs(), self.0.subsec_nanos());
        if nanos == 0 {
            write!(f, "{secs}s")
        } else {
            let fraction = format!("{nanos:09}");
            write!(f, "{secs}.{}s", fraction.trim_end_matches('0'))
        }
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Duration {
        Duration(d)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for Duration {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("A duration such as \"1800s\" or \"1.5s\" (also \"30m\")."))
            .examples(["1800s"])
            .into()
    }
}

impl utoipa::ToSchema for Duration {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vertex_and_human_forms_parse_and_print_as_vertex_writes_them() {
        let d = |t: &str| t.parse::<Duration>().map(Duration::get);
        assert_eq!(d("1800s").unwrap(), std::time::Duration::from_secs(1800));
        assert_eq!(d("1.5s").unwrap(), std::time::Duration::from_millis(1500));
        assert_eq!(d("30m").unwrap(), std::time::Duration::from_secs(1800));
        assert_eq!(d("1h 30m").unwrap(), std::time::Duration::from_secs(5400));
        assert!(d("soon").unwrap_err().to_string().contains("\"1800s\""));
        assert!(d("-3s").is_err());
        assert_eq!("30m".parse::<Duration>().unwrap().to_string(), "1800s");
        assert_eq!(Duration(std::time::Duration::from_millis(1500)).to_string(), "1.5s");
        assert_eq!(Duration(std::time::Duration::from_millis(1500)).whole_seconds_up(), 2);
        let json: Duration = serde_json::from_str("\"2m\"").unwrap();
        assert_eq!(serde_json::to_string(&json).unwrap(), "\"120s\"");
        assert!(
            serde_json::from_str::<Duration>("\"x\"").unwrap_err().to_string().contains("not a duration")
        );
    }
}
