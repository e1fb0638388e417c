//! Endpoints, deployed models and their resources (Vertex `Endpoint`, `DeployedModel`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::is_false;

/// Who may call an endpoint's `:predict`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Access {
    /// Callers need a token with the predictor role (or higher) on the project.
    #[default]
    Authenticated,
    /// Anyone, like Cloud Run's `--allow-unauthenticated`.
    Public,
    /// Not served on the public listener.
    Private,
}

/// An HTTPS endpoint that serves predictions from its deployed models.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Output only: `projects/{p}/locations/{l}/endpoints/{id}`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Required; at most 128 characters.
    #[serde(default)]
    pub display_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Output only; changed through `:deployModel` and `:undeployModel`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deployed_models: Vec<DeployedModel>,
    /// Deployed model id to percent of traffic; sums to 100, or is empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub traffic_split: BTreeMap<String, i32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub etag: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub create_time: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub update_time: String,
    /// Who may call `:predict` (an extension of this platform; default `AUTHENTICATED`).
    #[serde(default)]
    pub access: Access,
    /// Output only: the full URL of `:predict` (an extension of this platform).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub predict_uri: String,
    /// Keeps a sample of `:predict` and `:rawPredict` requests and responses, read back with
    /// `GET .../endpoints/{id}/predictionLogs` (kept in the platform's database, not BigQuery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predict_request_response_logging_config: Option<PredictRequestResponseLoggingConfig>,
    /// How the endpoint treats its callers' requests: the inference timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_connection_config: Option<ClientConnectionConfig>,
    /// Vertex fields this platform does not model: checked, see [`crate::unmodelled`].
    #[serde(flatten, deserialize_with = "crate::unmodelled::endpoint")]
    #[schema(ignore)]
    pub unmodelled: crate::Unmodelled,
}

/// Request-response logging of an endpoint (Vertex's `PredictRequestResponseLoggingConfig`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PredictRequestResponseLoggingConfig {
    #[serde(default)]
    pub enabled: bool,
    /// The fraction of requests kept, 0 to 1 (1 keeps every request, 0 none).
    #[serde(default)]
    pub sampling_rate: f64,
    /// Refused unless empty: logs are kept in the platform's database, not BigQuery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bigquery_destination: Option<BigQueryDestination>,
}

/// Vertex's BigQuery table for request-response logs; this platform cannot write there.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BigQueryDestination {
    /// `bq://project.dataset.table`.
    #[serde(default)]
    pub output_uri: String,
}

/// One sampled prediction (`GET .../endpoints/{id}/predictionLogs`), newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PredictionLog {
    /// When the request reached the platform: RFC 3339, UTC.
    pub time: String,
    pub deployed_model_id: String,
    /// `predict`, `rawPredict` or `v2Infer` (the Open Inference Protocol V2).
    pub method: String,
    /// The HTTP status of the answer.
    pub status: i32,
    /// From request to answer through the gateway, e.g. `"0.004512s"`.
    pub latency: String,
    pub request: LoggedPayload,
    pub response: LoggedPayload,
}

/// A request or response body as kept: at most 64 KiB of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoggedPayload {
    /// The body, when it is UTF-8 text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
    /// The body in base64, when it is not UTF-8 text (`:rawPredict` with binary content).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub b64: String,
    /// The size of the whole body, in bytes.
    #[serde(default)]
    pub size_bytes: i64,
    /// Whether only the first 64 KiB were kept.
    #[serde(default, skip_serializing_if = "crate::is_false")]
    pub truncated: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListPredictionLogsResponse {
    #[serde(default)]
    pub prediction_logs: Vec<PredictionLog>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub next_page_token: String,
}

/// Vertex's `ClientConnectionConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientConnectionConfig {
    /// How long a prediction may take, from when it is routed to a deployed model (time queued
    /// for a replica's slot included) to the replica's answer; past it the caller gets 504
    /// `DEADLINE_EXCEEDED`. Between `1s` and `3600s`; when unset, the platform's
    /// `--predict-timeout` (default `60s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "120s")]
    pub inference_timeout: Option<crate::Duration>,
}

/// The range `clientConnectionConfig.inferenceTimeout` may take.
pub const INFERENCE_TIMEOUT_RANGE: std::ops::RangeInclusive<std::time::Duration> =
    std::time::Duration::from_secs(1)..=std::time::Duration::from_secs(3600);

/// Checks an inference timeout against [`INFERENCE_TIMEOUT_RANGE`].
pub fn check_inference_timeout(timeout: crate::Duration) -> Result<(), String> {
    if INFERENCE_TIMEOUT_RANGE.contains(&timeout.get()) {
        Ok(())
    } else {
        Err(format!("clientConnectionConfig.inferenceTimeout is {timeout}; it must be between 1s and 3600s"))
    }
}

/// A model version deployed on an endpoint with its compute resources.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeployedModel {
    /// Digits; generated when omitted.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// A model name, optionally with `@version` or `@alias`; without one, the default version.
    #[serde(default)]
    pub model: String,
    /// Output only.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model_version_id: String,
    /// Defaults to the model's display name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub create_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedicated_resources: Option<DedicatedResources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automatic_resources: Option<AutomaticResources>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub enable_access_logging: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub disable_container_logging: bool,
    /// The most requests one replica is given at once, like Cloud Run's `containerConcurrency`
    /// (an extension of this platform): 1 to 1000, default 80. More requests wait in the
    /// deployed model's bounded queue; when it is full the gateway answers 429 with `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_concurrency: Option<i32>,
    /// Output only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DeployedModelStatus>,
    /// Output only: the autoscaler's last decision (an extension of this platform). Ignored
    /// when sent, like the other output-only fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling_status: Option<AutoscalingStatus>,
    /// Vertex fields this platform does not model: checked, see [`crate::unmodelled`].
    #[serde(flatten, deserialize_with = "crate::unmodelled::deployed_model")]
    #[schema(ignore)]
    pub unmodelled: crate::Unmodelled,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DedicatedResources {
    /// Default: the catalog's default machine type.
    #[serde(default)]
    pub machine_spec: MachineSpec,
    /// At least 0 (0 scales to zero when idle).
    #[serde(default)]
    pub min_replica_count: i32,
    /// Defaults to `minReplicaCount`.
    #[serde(default)]
    pub max_replica_count: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_replica_count: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub autoscaling_metric_specs: Vec<AutoscalingMetricSpec>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub spot: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutomaticResources {
    #[serde(default)]
    pub min_replica_count: i32,
    #[serde(default)]
    pub max_replica_count: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MachineSpec {
    /// A machine type of the catalog; default `n1-standard-2`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub machine_type: String,
    /// For example `NVIDIA_L4` (or its number in `AcceleratorType`).
    #[serde(
        default,
        deserialize_with = "crate::enums::accelerator_type",
        skip_serializing_if = "String::is_empty"
    )]
    pub accelerator_type: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub accelerator_count: i32,
    /// Vertex fields this platform does not model: checked, see [`crate::unmodelled`].
    #[serde(flatten, deserialize_with = "crate::unmodelled::machine_spec")]
    #[schema(ignore)]
    pub unmodelled: crate::Unmodelled,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// The metric that drives autoscaling and its target (for example
/// `aiplatform.googleapis.com/prediction/online/cpu/utilization` at 60).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoscalingMetricSpec {
    pub metric_name: String,
    /// Default 60.
    #[serde(default)]
    pub target: i32,
}

/// Autoscale on CPU utilisation, percent per replica.
pub const METRIC_CPU: &str = "aiplatform.googleapis.com/prediction/online/cpu/utilization";
/// Autoscale on GPU duty cycle, percent per replica.
pub const METRIC_GPU: &str = "aiplatform.googleapis.com/prediction/online/accelerator/duty_cycle";
/// Autoscale on requests per minute per replica.
pub const METRIC_REQUESTS: &str = "aiplatform.googleapis.com/prediction/online/request_count";
/// Autoscale on requests in flight per replica, as the gateway measures them (an extension of
/// this platform, like Knative's concurrency target).
pub const METRIC_CONCURRENCY: &str = "concurrency";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeployedModelStatus {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_update_time: String,
    #[serde(default)]
    pub available_replica_count: i32,
}

/// The autoscaler's last decision for a deployed model (an extension of this platform): recorded
/// when the counts or the kind of reason change. On Kubernetes, where a HorizontalPodAutoscaler
/// scales on CPU or the GPU duty cycle, the counts are the Deployment's as the HPA set them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingStatus {
    /// Replicas running or starting when the decision was made.
    #[serde(default)]
    pub current_replica_count: i32,
    /// Replicas the autoscaler asked for.
    #[serde(default)]
    pub desired_replica_count: i32,
    /// Why, in words: for example `request-counts-per-minute 1200/min over 60s, target 600 per
    /// replica -> 2`, `scaled to zero after 300s idle`, `held at minReplicaCount 1 (0 wanted)`.
    #[serde(default)]
    pub reason: String,
    /// When the decision was made (RFC 3339).
    #[serde(default)]
    pub decide_time: String,
}

/// `POST .../endpoints/{id}:deployModel`. In `trafficSplit`, key `"0"` is the model being deployed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeployModelRequest {
    pub deployed_model: DeployedModel,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub traffic_split: BTreeMap<String, i32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeployModelResponse {
    pub deployed_model: DeployedModel,
}

/// `POST .../endpoints/{id}:undeployModel`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UndeployModelRequest {
    pub deployed_model_id: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub traffic_split: BTreeMap<String, i32>,
}

/// `POST .../endpoints/{id}:mutateDeployedModel`: replica bounds, autoscaling and
/// `containerConcurrency` only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MutateDeployedModelRequest {
    pub deployed_model: DeployedModel,
    /// Comma-separated field paths, e.g. `dedicatedResources.minReplicaCount`.
    #[serde(default)]
    pub update_mask: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MutateDeployedModelResponse {
    pub deployed_model: DeployedModel,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListEndpointsResponse {
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub next_page_token: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vertex_deploy_example_parses() {
        let body = r#"{
          "deployedModel": {
            "model": "projects/p/locations/us-central1/models/iris@staging",
            "displayName": "iris-v2",
            "dedicatedResources": {
              "machineSpec": {"machineType": "g2-standard-4", "acceleratorType": "NVIDIA_L4", "acceleratorCount": 1},
              "minReplicaCount": 1, "maxReplicaCount": 3,
              "autoscalingMetricSpecs": [{"metricName": "aiplatform.googleapis.com/prediction/online/accelerator/duty_cycle", "target": 70}]
            },
            "enableAccessLogging": true, "disableContainerLogging": false
          },
          "trafficSplit": {"0": 20, "4567890123": 80}
        }"#;
        let req: DeployModelRequest = serde_json::from_str(body).unwrap();
        let res = req.deployed_model.dedicated_resources.as_ref().unwrap();
        assert_eq!(res.machine_spec.accelerator_count, 1);
        assert_eq!(res.autoscaling_metric_specs[0].metric_name, METRIC_GPU);
        assert_eq!(req.traffic_split["0"], 20);
    }

    #[test]
    fn access_is_a_proto_style_enum() {
        let e: Endpoint = serde_json::from_str(r#"{"displayName": "e", "access": "PUBLIC"}"#).unwrap();
        assert_eq!(e.access, Access::Public);
        assert!(serde_json::from_str::<Endpoint>(r#"{"displayName": "e", "access": "open"}"#).is_err());
    }

    #[test]
    fn the_python_sdk_deploy_with_an_accelerator_parses() {
        // The SDK sends enums as numbers: 11 is NVIDIA_L4.
        let body = r#"{"deployedModel": {"model": "projects/p/locations/l/models/m@1",
            "dedicatedResources": {"machineSpec": {"machineType": "g2-standard-4", "acceleratorType": 11,
            "acceleratorCount": 1}, "minReplicaCount": 1, "maxReplicaCount": 1}}, "trafficSplit": {"0": 100}}"#;
        let req: DeployModelRequest = serde_json::from_str(body).unwrap();
        let spec = &req.deployed_model.dedicated_resources.unwrap().machine_spec;
        assert_eq!(spec.accelerator_type, "NVIDIA_L4");
        let out = serde_json::to_value(spec).unwrap();
        assert_eq!(
            out,
            serde_json::json!({"machineType": "g2-standard-4", "acceleratorType": "NVIDIA_L4", "acceleratorCount": 1})
        );
        let err = serde_json::from_str::<DeployModelRequest>(
            r#"{"deployedModel": {"model": "m", "sharedResources": "projects/p/locations/l/deploymentResourcePools/x"}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("DeployedModel.sharedResources is not supported"), "{err}");
    }

    #[test]
    fn gcloud_betas_deploy_parses() {
        // `gcloud beta ai endpoints deploy-model` sends v1beta1's enableContainerLogging.
        let body = r#"{"deployedModel": {"dedicatedResources": {"machineSpec": {"machineType": "e2-small"},
            "minReplicaCount": 1, "spot": false}, "displayName": "b", "enableAccessLogging": false,
            "enableContainerLogging": false, "model": "projects/default/locations/local/models/bm"}}"#;
        let req: DeployModelRequest = serde_json::from_str(body).unwrap();
        assert_eq!(req.deployed_model.display_name, "b");
    }
}
