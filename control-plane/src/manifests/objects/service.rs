//! A ClusterIP Service: reachable inside the cluster only, on port 80.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::container::HTTP_PORT_NAME;

/// The port every rendered Service listens on.
pub const SERVICE_PORT: i32 = 80;

/// Port 80 (`http`) of the pods `selector` picks, forwarded to their `target` port.
pub fn cluster_ip(metadata: ObjectMeta, selector: BTreeMap<String, String>, target: IntOrString) -> Service {
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector),
            ports: Some(vec![ServicePort {
                name: Some(HTTP_PORT_NAME.into()),
                port: SERVICE_PORT,
                target_port: Some(target),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}
