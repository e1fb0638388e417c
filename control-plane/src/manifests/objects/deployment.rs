//! A Deployment that rolls out one new pod at a time and never drops below its replica count.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::match_labels;

/// The pods of a Deployment: their labels, annotations and spec.
pub struct PodTemplate {
    pub labels: BTreeMap<String, String>,
    pub annotations: Option<BTreeMap<String, String>>,
    pub spec: PodSpec,
}

/// A Deployment of `template` selected by `selector`, rolling out with `maxUnavailable: 0` and
/// `maxSurge: 1`. `replicas` None leaves the count to an autoscaler.
pub fn rolling(
    metadata: ObjectMeta,
    replicas: Option<i32>,
    selector: BTreeMap<String, String>,
    template: PodTemplate,
) -> Deployment {
    Deployment {
        metadata,
        spec: Some(DeploymentSpec {
            replicas,
            selector: match_labels(selector),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(template.labels),
                    annotations: template.annotations,
                    ..Default::default()
                }),
                spec: Some(template.spec),
            },
            ..Default::default()
        }),
        status: None,
    }
}
