//! One builder per Kubernetes object shape the platform renders. The deployed-model renderer
//! ([`super::deployed_model`]), the endpoint renderer ([`super::exposure`]) and the install
//! renderer ([`super::install`]) all build their objects here, so a shape (the restricted
//! security context, a CPU autoscaler, a TLS Ingress, ...) is written once.

pub mod autoscaler;
pub mod container;
pub mod deployment;
pub mod disruption;
pub mod ingress;
pub mod network_policy;
pub mod probes;
pub mod security;
pub mod service;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// A selector on exactly these labels.
pub fn match_labels(labels: BTreeMap<String, String>) -> LabelSelector {
    LabelSelector { match_labels: Some(labels), match_expressions: None }
}
