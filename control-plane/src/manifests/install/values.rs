//! What an installation can change, from `platform install-manifests --values FILE` (YAML,
//! camelCase keys; keys left out keep their defaults).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{InstallError, selector};
use crate::manifests::config::{CLUSTER_ISSUER_ANNOTATION, GATEWAY_NAME, PlacementError};
use crate::manifests::{Placement, RenderConfig};

/// The values of an installation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Values {
    pub namespace: String,
    /// The `platform` image (API, controller and gateway).
    pub image: String,
    /// The `platform-runtime` image deployed models of the prebuilt runtime run.
    pub runtime_image: String,
    /// `imagePullPolicy` of the platform's pods and of model pods.
    pub image_pull_policy: String,
    /// Host of the REST API.
    pub host: String,
    /// Host of each endpoint; `{endpoint}`, `{project}` and `{location}` are replaced by DNS-safe
    /// forms of the endpoint's id, project and location.
    pub endpoint_host_pattern: String,
    /// IngressClass of the API's and the endpoints' Ingresses; the cluster's default when unset.
    pub ingress_class_name: Option<String>,
    /// cert-manager ClusterIssuer for the Ingresses' certificates; null to bring your own.
    pub cluster_issuer: Option<String>,
    /// Secret with the PostgreSQL URL (`postgres://user:password@host/db`).
    pub database: SecretKey,
    /// Where uploaded artifacts go (`s3://bucket/prefix`): pods have no lasting disk.
    pub artifact_store: String,
    /// Secret whose keys become the platform's environment for S3 (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`).
    pub s3_secret: String,
    /// Secret whose keys become every model pod's environment, to read its artifacts; default
    /// `s3Secret`. Better a key that can only read.
    pub model_s3_secret: Option<String>,
    /// Secret with the key that signs API tokens; every replica must share it.
    pub jwt_key: SecretKey,
    /// Where pods with GPUs run.
    pub gpu: PlacementValues,
    /// Where deployed models with `dedicatedResources.spot` run; both empty: `spot` is refused.
    pub spot: PlacementValues,
    /// The NetworkPolicy of the platform's own pods.
    pub network_policy: NetworkPolicyValues,
    /// Also render a Prometheus Operator `ServiceMonitor` (the pods carry `prometheus.io/*`
    /// scrape annotations either way).
    pub service_monitor: bool,
    pub api: Component,
    pub gateway: Gateway,
}

/// One key of a Secret.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKey {
    pub secret_name: String,
    pub key: String,
}

/// Replicas and resources of a component.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Component {
    pub replicas: i32,
    pub cpu: String,
    pub memory: String,
}

/// The gateway scales with its HorizontalPodAutoscaler.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Gateway {
    pub min_replicas: i32,
    pub max_replicas: i32,
    pub cpu_target: i32,
    pub cpu: String,
    pub memory: String,
}

/// Node labels and tolerations: `nodeSelector: {key: value}`, `tolerations: ["key[=value][:Effect]"]`.
/// Giving one replaces the default of both.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawPlacement")]
pub struct PlacementValues(pub Placement);

#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
struct RawPlacement {
    node_selector: BTreeMap<String, String>,
    tolerations: Vec<String>,
}

impl TryFrom<RawPlacement> for PlacementValues {
    type Error = PlacementError;

    fn try_from(raw: RawPlacement) -> Result<Self, PlacementError> {
        let labels: Vec<String> = raw.node_selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Placement::from_flags(&labels, &raw.tolerations).map(PlacementValues)
    }
}

/// Who may reach the platform's pods.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyValues {
    pub enabled: bool,
    /// Namespaces whose pods may reach the API and the gateway (the ingress controller's,
    /// Prometheus'); empty: every namespace. Only the HTTP port is open either way.
    pub allowed_namespaces: Vec<String>,
}

impl Default for NetworkPolicyValues {
    fn default() -> Self {
        NetworkPolicyValues { enabled: true, allowed_namespaces: Vec::new() }
    }
}

impl Default for Values {
    fn default() -> Self {
        let version = env!("CARGO_PKG_VERSION");
        Values {
            namespace: "platform".into(),
            image: format!("ghcr.io/example/platform:{version}"),
            runtime_image: format!("ghcr.io/example/platform-runtime:{version}"),
            image_pull_policy: "IfNotPresent".into(),
            host: "platform.example.com".into(),
            endpoint_host_pattern: "{endpoint}.endpoints.example.com".into(),
            ingress_class_name: None,
            cluster_issuer: Some("letsencrypt".into()),
            database: SecretKey { secret_name: "platform-database".into(), key: "url".into() },
            artifact_store: "s3://platform-artifacts/".into(),
            s3_secret: "platform-s3".into(),
            model_s3_secret: None,
            jwt_key: SecretKey { secret_name: "platform-jwt".into(), key: "jwt.key".into() },
            gpu: PlacementValues(Placement::nvidia_gpus()),
            spot: PlacementValues(Placement::gke_spot()),
            network_policy: NetworkPolicyValues::default(),
            service_monitor: false,
            api: Component::default(),
            gateway: Gateway::default(),
        }
    }
}

impl Default for Component {
    fn default() -> Self {
        Component { replicas: 2, cpu: "500m".into(), memory: "512Mi".into() }
    }
}

impl Default for Gateway {
    fn default() -> Self {
        Gateway { min_replicas: 2, max_replicas: 10, cpu_target: 70, cpu: "1".into(), memory: "512Mi".into() }
    }
}

impl Values {
    /// Values from YAML; keys left out keep their defaults.
    pub fn from_yaml(text: &str) -> Result<Values, InstallError> {
        if text.trim().is_empty() {
            return Ok(Values::default());
        }
        let values: Values = serde_norway::from_str(text).map_err(|e| InstallError::Values(e.to_string()))?;
        if values.gateway.min_replicas < 1 || values.gateway.max_replicas < values.gateway.min_replicas {
            return Err(InstallError::Values(
                "gateway: minReplicas must be at least 1 and maxReplicas at least minReplicas".into(),
            ));
        }
        if values.api.replicas < 1 {
            return Err(InstallError::Values("api: replicas must be at least 1".into()));
        }
        Ok(values)
    }

    /// The Secret model pods read their artifacts with.
    pub fn model_secret(&self) -> &str {
        self.model_s3_secret.as_deref().unwrap_or(&self.s3_secret)
    }

    /// How deployed models are rendered in this installation: what the installed `platform
    /// serve` computes from the flags its Deployment passes (a test starts it that way).
    pub fn render_config(&self) -> RenderConfig {
        let mut cfg = RenderConfig {
            namespace: self.namespace.clone(),
            runtime_image: self.runtime_image.clone(),
            image_pull_policy: self.image_pull_policy.clone(),
            gpu: self.gpu.0.clone(),
            spot: self.spot.0.clone(),
            artifact_credentials_secret: Some(self.model_secret().to_string()),
            platform_service_account: Some(super::SERVICE_ACCOUNT.into()),
            ..RenderConfig::default()
        };
        cfg.ingress.host_pattern = self.endpoint_host_pattern.clone();
        cfg.ingress.class_name = self.ingress_class_name.clone();
        cfg.ingress.cert_manager_annotation =
            self.cluster_issuer.clone().map(|i| (CLUSTER_ISSUER_ANNOTATION.to_string(), i));
        cfg.ingress.gateway_service = GATEWAY_NAME.into();
        cfg.ingress.gateway_port = 80;
        cfg.ingress.gateway_pod_labels = selector("gateway");
        cfg
    }
}
