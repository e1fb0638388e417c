//! A PodDisruptionBudget: voluntary evictions (node drains, upgrades) take one pod at a time.

use std::collections::BTreeMap;

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::match_labels;

/// At most one of the selected pods unavailable. `maxUnavailable` rather than `minAvailable`:
/// it stays right whatever an autoscaler does to the replica count.
pub fn one_at_a_time(metadata: ObjectMeta, selector: BTreeMap<String, String>) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata,
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(match_labels(selector)),
            ..Default::default()
        }),
        status: None,
    }
}
