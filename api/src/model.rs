//! Models and model versions (Vertex `Model`, `ModelContainerSpec`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_with::serde_as;
use utoipa::ToSchema;

use crate::int64::Int64;
use crate::is_false;

/// A model version. `name` carries no version; `versionId` says which one this is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Model {
    /// Output only: `projects/{p}/locations/{l}/models/{id}`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Required on upload; at most 128 characters.
    #[serde(default)]
    pub display_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Output only: `"1"`, `"2"`, ...
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version_id: String,
    /// Aliases of this version; the first version gets `default`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub version_aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version_description: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version_create_time: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version_update_time: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub create_time: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub update_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predict_schemata: Option<PredictSchemata>,
    /// The serving container. Omitted: the prebuilt ONNX runtime serves `artifactUri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_spec: Option<ModelContainerSpec>,
    /// Where the model's files are: `s3://`, `https://`, `file://` (admins) or an uploaded artifact.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub artifact_uri: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub etag: String,
    /// Output only: where this version is deployed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deployed_models: Vec<DeployedModelRef>,
    /// Output only.
    #[serde(
        default,
        deserialize_with = "crate::enums::deployment_resources_types",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub supported_deployment_resources_types: Vec<String>,
    /// Vertex fields this platform does not model: checked, see [`crate::unmodelled`].
    #[serde(flatten, deserialize_with = "crate::unmodelled::model")]
    #[schema(ignore)]
    pub unmodelled: crate::Unmodelled,
}

/// A deployment of a model version: its endpoint and deployed model id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeployedModelRef {
    pub endpoint: String,
    pub deployed_model_id: String,
}

/// URIs of OpenAPI schemata of instances, parameters and predictions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PredictSchemata {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instance_schema_uri: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parameters_schema_uri: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prediction_schema_uri: String,
}

/// The container that serves a model, following the Vertex custom-container contract.
#[serde_as]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelContainerSpec {
    /// Required. The prebuilt runtime image (`platform-runtime:<version>`) or your own.
    #[serde(default)]
    pub image_uri: String,
    /// Overrides the image's ENTRYPOINT.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Overrides the image's CMD.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// May reference `$(AIP_...)` variables; `$$(X)` escapes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Only the first port is used; default 8080.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub predict_route: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub health_route: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grpc_ports: Vec<Port>,
    /// A duration such as `"1800s"`; at most two hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_timeout: Option<crate::Duration>,
    #[serde_as(as = "Option<Int64>")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub shared_memory_size_mb: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe>,
    /// Readiness; replaces the default check of `healthRoute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_probe: Option<Probe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    /// Platform extension, local backend only: run `command` as a process on the platform's
    /// machine instead of the image in a container engine (sandboxed, see docs/security.md).
    /// Only admins may set it, on a platform started with `--allow-host-processes`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host_process: bool,
    /// Vertex fields this platform does not model: checked, see [`crate::unmodelled`].
    #[serde(flatten, deserialize_with = "crate::unmodelled::container_spec")]
    #[schema(ignore)]
    pub unmodelled: crate::Unmodelled,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Port {
    pub container_port: i32,
}

/// A probe; each field maps onto the Kubernetes probe field of the same name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probe {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocketAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay_seconds: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecAction {
    #[serde(default)]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpGetAction {
    #[serde(default)]
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scheme: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_headers: Vec<EnvVar>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcAction {
    #[serde(default)]
    pub port: i32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpSocketAction {
    #[serde(default)]
    pub port: i32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
}

/// `POST .../models:upload`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UploadModelRequest {
    /// Set only to upload a new version of this model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_model: Option<String>,
    /// The new model's id; generated (numeric) when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    pub model: Model,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

/// The response of a finished upload operation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UploadModelResponse {
    pub model: String,
    pub model_version_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListModelsResponse {
    #[serde(default)]
    pub models: Vec<Model>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub next_page_token: String,
}

/// `POST .../models/{id}:mergeVersionAliases`: `["golden", "-staging"]` adds `golden` to the
/// named version and removes `staging`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MergeVersionAliasesRequest {
    pub version_aliases: Vec<String>,
}

/// An uploaded artifact: where it is stored and its digest.
#[serde_as]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    pub artifact_uri: String,
    pub sha256: String,
    #[serde_as(as = "Int64")]
    #[schema(value_type = String)]
    pub size_bytes: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub deduplicated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vertex_upload_example_parses() {
        let body = r#"{
          "modelId": "iris",
          "model": {
            "displayName": "iris-sklearn", "description": "demo", "versionAliases": ["staging"],
            "artifactUri": "s3://bucket/iris/model/", "labels": {"team": "ml"},
            "containerSpec": {
              "imageUri": "registry/server:1.0", "command": ["python", "serve.py"], "args": ["--workers=2"],
              "env": [{"name": "MODEL_NAME", "value": "iris"}], "ports": [{"containerPort": 8080}],
              "predictRoute": "/predict", "healthRoute": "/health", "deploymentTimeout": "1800s",
              "sharedMemorySizeMb": "1024",
              "startupProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 10, "failureThreshold": 30},
              "healthProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 10, "timeoutSeconds": 5}
            },
            "predictSchemata": {"instanceSchemaUri": "s3://b/i.yaml"}
          }
        }"#;
        let req: UploadModelRequest = serde_json::from_str(body).unwrap();
        let spec = req.model.container_spec.as_ref().unwrap();
        assert_eq!(spec.shared_memory_size_mb, Some(1024));
        assert_eq!(spec.ports[0].container_port, 8080);
        let out = serde_json::to_value(&req).unwrap();
        assert_eq!(out["model"]["containerSpec"]["sharedMemorySizeMb"], "1024");
        assert_eq!(out["model"]["labels"]["team"], "ml");
    }

    #[test]
    fn unknown_fields_are_refused_with_their_name() {
        let err = serde_json::from_str::<UploadModelRequest>(
            r#"{"model": {"displayName": "x", "containerSpecs": {}}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `containerSpecs`"), "{err}");
    }

    #[test]
    fn what_the_python_sdk_sends_back_on_update_parses() {
        // `aiplatform.Model.update(...)` sends the whole model it read, enums as numbers.
        let body = r#"{"displayName": "x2", "containerSpec": {"imageUri": "platform-runtime:0.1.0"},
            "supportedDeploymentResourcesTypes": [1], "createTime": "2026-11-27T05:38:13.750027Z",
            "etag": "ad78d4f613146cc4", "versionId": "1", "versionAliases": ["default"],
            "satisfiesPzs": false, "modelSourceInfo": {"sourceType": 1}}"#;
        let model: Model = serde_json::from_str(body).unwrap();
        assert_eq!(model.supported_deployment_resources_types, ["DEDICATED_RESOURCES"]);
        let err = serde_json::from_str::<UploadModelRequest>(
            r#"{"model": {"displayName": "x", "explanationSpec": {"parameters": {"sampledShapleyAttribution": {}}}}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("Model.explanationSpec is not supported by this platform"), "{err}");
        let err =
            serde_json::from_str::<ModelContainerSpec>(r#"{"imageUri": "i", "invokeRoutePrefix": "/*"}"#)
                .unwrap_err();
        assert!(err.to_string().contains("invoke routes are not supported"), "{err}");
    }
}
