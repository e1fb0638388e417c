//! Parsing of edited manifests into typed objects of the kinds the platform renders, and the
//! problems an edit can have. Fields the types do not know are problems too: silently dropping
//! a misspelt field would lose the user's edit.

use std::fmt;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{Metadata, Resource};
use serde::Deserialize;
use serde_json::Value;

/// One thing wrong with an edited manifest, at a path like
/// `Deployment/spec/template/spec/containers/0/securityContext/privileged`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem of an edited manifest, in document order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", display_problems(.0))]
pub struct Problems(pub Vec<Problem>);

fn display_problems(problems: &[Problem]) -> String {
    problems.iter().map(Problem::to_string).collect::<Vec<_>>().join("\n")
}

/// The typed object of each kind the platform renders; kinds, API versions and metadata come
/// from `k8s_openapi`'s [`Resource`] and [`Metadata`], not from a table kept by hand.
macro_rules! objects {
    ($($kind:ident),+ $(,)?) => {
        /// One typed object of the kinds the platform renders.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Object {
            $($kind(Box<$kind>),)+
        }

        impl Object {
            /// `(apiVersion, kind)` of every kind the platform renders, in document order.
            pub const KINDS: &[(&str, &str)] = &[$((<$kind as Resource>::API_VERSION, <$kind as Resource>::KIND),)+];

            pub fn kind(&self) -> &'static str {
                match self {
                    $(Object::$kind(_) => <$kind as Resource>::KIND,)+
                }
            }

            pub fn metadata(&self) -> &ObjectMeta {
                match self {
                    $(Object::$kind(o) => o.metadata(),)+
                }
            }

            pub(crate) fn metadata_mut(&mut self) -> &mut ObjectMeta {
                match self {
                    $(Object::$kind(o) => o.metadata_mut(),)+
                }
            }

            /// The typed object of `kind`; None for a kind the platform does not render.
            fn from_value(kind: &str, value: Value) -> Option<Result<Object, serde_json::Error>> {
                $(if kind == <$kind as Resource>::KIND {
                    return Some(serde_json::from_value(value).map(|o| Object::$kind(Box::new(o))));
                })+
                None
            }

            fn to_value(&self) -> Result<Value, serde_json::Error> {
                match self {
                    $(Object::$kind(o) => serde_json::to_value(o),)+
                }
            }
        }

        $(impl From<$kind> for Object {
            fn from(o: $kind) -> Object {
                Object::$kind(Box::new(o))
            }
        })+
    };
}

objects!(Deployment, Service, HorizontalPodAutoscaler, PodDisruptionBudget, Ingress, NetworkPolicy);

/// `a, b, c`.
pub(crate) fn kind_list(kinds: &[&str]) -> String {
    kinds.join(", ")
}

/// Parses multi-document YAML into typed objects of the platform's kinds.
pub fn parse(yaml: &str) -> Result<Vec<Object>, Problems> {
    let mut objects = Vec::new();
    let mut problems = Vec::new();
    for (i, document) in serde_norway::Deserializer::from_str(yaml).enumerate() {
        let at = format!("document {}", i + 1);
        let value = match Value::deserialize(document) {
            Ok(Value::Null) => continue,
            Ok(value) => value,
            Err(e) => {
                problems.push(Problem::new(at, format!("not valid YAML: {e}")));
                // The YAML parser cannot resynchronise after a syntax error.
                break;
            }
        };
        let api_version = value.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_string();
        let kind = value.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
        let Some((expected_version, kind)) = Object::KINDS.iter().find(|(_, k)| *k == kind) else {
            let message = if kind.is_empty() {
                "has no kind".to_string()
            } else {
                let known: Vec<&str> = Object::KINDS.iter().map(|k| k.1).collect();
                format!("kind {kind} is not one the platform manages (allowed: {})", kind_list(&known))
            };
            problems.push(Problem::new(format!("{at}/kind"), message));
            continue;
        };
        if api_version != *expected_version {
            problems.push(Problem::new(
                format!("{kind}/apiVersion"),
                format!("must be {expected_version}, not `{api_version}`"),
            ));
            continue;
        }
        match Object::from_value(kind, value.clone()) {
            Some(Ok(object)) => {
                if let Ok(typed) = object.to_value() {
                    unknown_fields(&value, &typed, kind, &mut problems);
                }
                objects.push(object);
            }
            Some(Err(e)) => problems.push(Problem::new(*kind, e.to_string())),
            None => {}
        }
    }
    if problems.is_empty() { Ok(objects) } else { Err(Problems(problems)) }
}

/// Reports keys of `input` that did not survive the typed round trip.
fn unknown_fields(input: &Value, typed: &Value, path: &str, problems: &mut Vec<Problem>) {
    match (input, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let here = format!("{path}/{key}");
                match b.get(key) {
                    Some(t) => unknown_fields(value, t, &here, problems),
                    None if value.is_null() => {}
                    None => problems.push(Problem::new(here, "unknown field")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                unknown_fields(x, y, &format!("{path}/{i}"), problems);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_the_types() {
        assert_eq!(
            Object::KINDS,
            &[
                ("apps/v1", "Deployment"),
                ("v1", "Service"),
                ("autoscaling/v2", "HorizontalPodAutoscaler"),
                ("policy/v1", "PodDisruptionBudget"),
                ("networking.k8s.io/v1", "Ingress"),
                ("networking.k8s.io/v1", "NetworkPolicy"),
            ]
        );
        let service: Object = Service::default().into();
        assert_eq!(service.kind(), "Service");
    }
}
