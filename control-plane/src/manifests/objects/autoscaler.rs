//! A HorizontalPodAutoscaler on CPU utilisation, the GPU duty cycle, or both.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricIdentifier,
    MetricSpec, MetricTarget, PodsMetricSource, ResourceMetricSource,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The per-pod metric the GPU duty cycle is read from: the NVIDIA DCGM exporter's GPU
/// utilisation (percent), served to the HPA through the custom metrics API by an adapter such as
/// prometheus-adapter (see docs/control-plane.md).
pub const GPU_DUTY_CYCLE_METRIC: &str = "DCGM_FI_DEV_GPU_UTIL";

/// Scales the Deployment `deployment` between `min` and `max` replicas to keep the average CPU
/// utilisation at `target` percent of the requests.
pub fn cpu(
    metadata: ObjectMeta,
    deployment: &str,
    min: i32,
    max: i32,
    target: i32,
) -> HorizontalPodAutoscaler {
    scale(metadata, deployment, min, max, vec![cpu_metric(target)])
}

/// Scales the Deployment `deployment` between `min` and `max` replicas on `metrics` (the HPA
/// follows whichever asks for the most replicas).
pub fn scale(
    metadata: ObjectMeta,
    deployment: &str,
    min: i32,
    max: i32,
    metrics: Vec<MetricSpec>,
) -> HorizontalPodAutoscaler {
    HorizontalPodAutoscaler {
        metadata,
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: deployment.into(),
            },
            min_replicas: Some(min),
            max_replicas: max,
            metrics: Some(metrics),
            behavior: None,
        }),
        status: None,
    }
}

/// Average CPU utilisation at `target` percent of the requests.
pub fn cpu_metric(target: i32) -> MetricSpec {
    MetricSpec {
        type_: "Resource".into(),
        resource: Some(ResourceMetricSource {
            name: "cpu".into(),
            target: MetricTarget {
                type_: "Utilization".into(),
                average_utilization: Some(target),
                ..Default::default()
            },
        }),
        ..Default::default()
    }
}

/// Average GPU duty cycle of the pods ([`GPU_DUTY_CYCLE_METRIC`]) at `target` percent.
pub fn gpu_duty_cycle_metric(target: i32) -> MetricSpec {
    MetricSpec {
        type_: "Pods".into(),
        pods: Some(PodsMetricSource {
            metric: MetricIdentifier { name: GPU_DUTY_CYCLE_METRIC.into(), selector: None },
            target: MetricTarget {
                type_: "AverageValue".into(),
                average_value: Some(Quantity(target.to_string())),
                ..Default::default()
            },
        }),
        ..Default::default()
    }
}
