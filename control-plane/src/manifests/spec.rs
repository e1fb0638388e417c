//! Vertex AI's `ModelContainerSpec` and `Probe`, in their REST JSON shape (camelCase), so the
//! API layer can take them from requests and store them as they are.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Vertex's default container port (`ports` empty).
pub const DEFAULT_PORT: i32 = 8080;

/// `ModelContainerSpec`: how to run a model's serving container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerSpec {
    /// The serving image. For the prebuilt ONNX runtime this is the runtime image (or empty).
    pub image_uri: String,
    /// Overrides the image's ENTRYPOINT (exec form); may reference `$(VAR)`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Overrides the image's CMD; may reference `$(VAR)`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Extra environment; values may reference `$(VAR)`, escaped as `$$(VAR)`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Only the first port is used; default `[{"containerPort": 8080}]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    /// Default `/v1/endpoints/{ENDPOINT}/deployedModels/{DEPLOYED_MODEL}:predict`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predict_route: Option<String>,
    /// Default `/v1/endpoints/{ENDPOINT}/deployedModels/{DEPLOYED_MODEL}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_route: Option<String>,
    /// Only `"/*"`; mutually exclusive with `predictRoute`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoke_route_prefix: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub grpc_ports: Vec<Port>,
    /// A `google.protobuf.Duration` string such as `"1800s"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment_timeout: Option<String>,
    /// int64, written as a string and read as a string or a number.
    #[serde(skip_serializing_if = "Option::is_none", with = "int64_string")]
    pub shared_memory_size_mb: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe>,
    /// Readiness; replaces the default `GET {healthRoute}` check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_probe: Option<Probe>,
    /// Replaces the default TCP liveness check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
}

impl ContainerSpec {
    /// The port the server listens on: `ports[0]`, default 8080.
    pub fn port(&self) -> i32 {
        self.ports.first().map_or(DEFAULT_PORT, |p| p.container_port)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

impl EnvVar {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> EnvVar {
        EnvVar { name: name.into(), value: value.into() }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    pub container_port: i32,
}

/// Vertex `Probe`; each field maps 1:1 onto the Kubernetes probe field of the same name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Probe {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocketAction>,
    /// Default 10.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<i32>,
    /// Default 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i32>,
    /// Default 3.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<i32>,
    /// Default 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<i32>,
    /// Default 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_delay_seconds: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecAction {
    #[serde(default)]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpGetAction {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Default: the container port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `HTTP` or `HTTPS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub http_headers: Vec<HttpHeader>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpHeader {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GrpcAction {
    /// Default: the container port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TcpSocketAction {
    /// Default: the container port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// proto3 JSON int64: written as a string, read from a string or a number.
mod int64_string {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => s.serialize_str(&v.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Num(i64),
            Text(String),
        }
        match Option::<Either>::deserialize(d)? {
            None => Ok(None),
            Some(Either::Num(n)) => Ok(Some(n)),
            Some(Either::Text(t)) => t
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| serde::de::Error::custom(format!("`{t}` is not an int64"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vertex_json_round_trips() {
        let json = r#"{
          "imageUri": "us-docker.pkg.dev/p/r/server:1.0",
          "command": ["python", "serve.py"],
          "args": ["--workers=2"],
          "env": [{"name": "MODEL_NAME", "value": "iris"}],
          "ports": [{"containerPort": 7080}],
          "predictRoute": "/predict",
          "healthRoute": "/health",
          "deploymentTimeout": "1800s",
          "sharedMemorySizeMb": "1024",
          "startupProbe": {"httpGet": {"path": "/health", "port": 7080}, "periodSeconds": 10, "failureThreshold": 30},
          "healthProbe": {"httpGet": {"path": "/health", "port": 7080}, "periodSeconds": 10, "timeoutSeconds": 5}
        }"#;
        let spec: ContainerSpec = serde_json::from_str(json).unwrap();
        assert_eq!(spec.port(), 7080);
        assert_eq!(spec.shared_memory_size_mb, Some(1024));
        assert_eq!(spec.startup_probe.as_ref().and_then(|p| p.failure_threshold), Some(30));
        let back = serde_json::to_value(&spec).unwrap();
        let orig: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(back, orig);
        let numeric: ContainerSpec =
            serde_json::from_str(r#"{"imageUri": "x", "sharedMemorySizeMb": 64}"#).unwrap();
        assert_eq!(numeric.shared_memory_size_mb, Some(64));
        assert_eq!(numeric.port(), DEFAULT_PORT);
    }
}
