//! A NetworkPolicy that admits only some callers to the pods it selects.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::match_labels;

/// Pods with `pod_labels` in the namespace called `namespace` (by its
/// `kubernetes.io/metadata.name` label).
pub fn pods_in_namespace(namespace: &str, pod_labels: BTreeMap<String, String>) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(namespace_named(namespace)),
        pod_selector: Some(match_labels(pod_labels)),
        ip_block: None,
    }
}

/// Every pod of the namespace called `namespace`.
pub fn namespace(namespace: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(namespace_named(namespace)),
        pod_selector: None,
        ip_block: None,
    }
}

fn namespace_named(name: &str) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
    match_labels(BTreeMap::from([("kubernetes.io/metadata.name".to_string(), name.to_string())]))
}

/// Admits to the pods `selected` picks only traffic from `from` (anyone when None) to `ports`
/// (every port when None); all other incoming traffic is dropped.
pub fn admit_only(
    metadata: ObjectMeta,
    selected: BTreeMap<String, String>,
    from: Option<Vec<NetworkPolicyPeer>>,
    ports: Option<Vec<NetworkPolicyPort>>,
) -> NetworkPolicy {
    NetworkPolicy {
        metadata,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(match_labels(selected)),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule { from, ports }]),
            egress: None,
        }),
    }
}
