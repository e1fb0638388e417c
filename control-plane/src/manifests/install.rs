//! `platform install-manifests`: the YAML that installs the platform itself on a cluster
//! (`platform install-manifests | kubectl apply -f -`). Pure: values in, objects out.
//!
//! Everything lives in one namespace, and the platform's service account may only act there:
//! deployed models run in the platform's namespace. PostgreSQL, S3 and the token signing key are
//! referenced as Secrets that the operator creates; no secret value is ever rendered.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, Namespace, PodSpec, Probe, SecretVolumeSource, Service, ServiceAccount,
    Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;

use crate::manifests::config::{CLUSTER_ISSUER_ANNOTATION, GATEWAY_NAME};
use crate::manifests::objects::container::{self, HTTP_PORT_NAME};
use crate::manifests::objects::deployment::{self, PodTemplate};
use crate::manifests::objects::ingress::{self, TlsRoute};
use crate::manifests::objects::{autoscaler, probes, security, service};
use crate::manifests::{ManifestError, ManifestObject, RenderConfig};

/// The port both the API and the gateway listen on inside their pods (plain HTTP: TLS ends at
/// the Ingress).
pub const CONTAINER_PORT: i32 = 8080;
/// The UID of the `nonroot` user of distroless images, which the Dockerfiles in `deploy/` use.
pub const NON_ROOT_UID: i64 = 65532;

/// What an installation can change, from `--values FILE` (YAML, camelCase keys).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Values {
    pub namespace: String,
    /// The `platform` image (API, controller and gateway).
    pub image: String,
    /// The `platform-runtime` image deployed models of the prebuilt runtime run.
    pub runtime_image: String,
    pub image_pull_policy: String,
    /// Host of the REST API and web UI.
    pub host: String,
    /// Host of each endpoint; `{endpoint}` is replaced by its id (see `RenderConfig`).
    pub endpoint_host_pattern: String,
    pub ingress_class_name: Option<String>,
    /// cert-manager ClusterIssuer for the Ingresses' certificates; none to bring your own.
    pub cluster_issuer: Option<String>,
    /// Secret with the PostgreSQL URL (`postgres://user:password@host/db`).
    pub database: SecretKey,
    /// Where uploaded artifacts go (`s3://bucket/prefix`): pods have no lasting disk.
    pub artifact_store: String,
    /// Secret whose keys become the environment for S3 (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`). Deployed models get it too, to
    /// read their artifacts.
    pub s3_secret: String,
    /// Secret with the key that signs API tokens; every replica must share it.
    pub jwt_key: SecretKey,
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
            jwt_key: SecretKey { secret_name: "platform-jwt".into(), key: "jwt.key".into() },
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

/// Errors of `install-manifests`.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("values file: {0}")]
    Values(String),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
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
        Ok(values)
    }

    /// How deployed models are rendered in this installation (what `platform serve --backend
    /// kubernetes` should use).
    pub fn render_config(&self) -> RenderConfig {
        let mut cfg = RenderConfig {
            namespace: self.namespace.clone(),
            runtime_image: self.runtime_image.clone(),
            image_pull_policy: self.image_pull_policy.clone(),
            artifact_credentials_secret: Some(self.s3_secret.clone()),
            ..RenderConfig::default()
        };
        cfg.ingress.host_pattern = self.endpoint_host_pattern.clone();
        cfg.ingress.class_name = self.ingress_class_name.clone();
        cfg.ingress.cert_manager_annotation =
            self.cluster_issuer.clone().map(|i| (CLUSTER_ISSUER_ANNOTATION.to_string(), i));
        cfg.ingress.gateway_namespace = Some(self.namespace.clone());
        cfg.ingress.gateway_service = GATEWAY_NAME.into();
        cfg.ingress.gateway_port = 80;
        cfg.ingress.gateway_pod_labels = selector("gateway");
        cfg
    }
}

/// The objects of an installation, in the order `kubectl apply` needs them.
pub struct Installation {
    pub namespace: Namespace,
    pub service_account: ServiceAccount,
    pub role: Role,
    pub role_binding: RoleBinding,
    pub api: Deployment,
    pub api_service: Service,
    pub gateway: Deployment,
    pub gateway_service: Service,
    pub gateway_hpa: HorizontalPodAutoscaler,
    pub ingress: Ingress,
}

impl Installation {
    pub fn to_yaml(&self) -> Result<String, ManifestError> {
        let objects: [&dyn ManifestObject; 10] = [
            &self.namespace,
            &self.service_account,
            &self.role,
            &self.role_binding,
            &self.api,
            &self.api_service,
            &self.gateway,
            &self.gateway_service,
            &self.gateway_hpa,
            &self.ingress,
        ];
        crate::manifests::to_yaml(&objects)
    }
}

const SERVICE_ACCOUNT: &str = "platform";
const API_NAME: &str = "platform-api";

fn selector(component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "platform".to_string()),
        ("app.kubernetes.io/component".to_string(), component.to_string()),
    ])
}

fn labels(component: &str) -> BTreeMap<String, String> {
    let mut labels = selector(component);
    labels.insert("app.kubernetes.io/part-of".into(), "platform".into());
    labels.insert("app.kubernetes.io/version".into(), env!("CARGO_PKG_VERSION").into());
    labels
}

fn meta(name: &str, values: &Values, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(values.namespace.clone()),
        labels: Some(labels(component)),
        ..Default::default()
    }
}

/// What the kubernetes backend does, and nothing more, in its own namespace only.
fn rules() -> Vec<PolicyRule> {
    let all = ["get", "list", "watch", "create", "update", "patch", "delete"];
    let read = ["get", "list", "watch"];
    let rule = |group: &str, resources: &[&str], verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..Default::default()
    };
    vec![
        rule("apps", &["deployments"], &all),
        rule("apps", &["deployments/scale"], &["get", "update", "patch"]),
        rule("apps", &["replicasets"], &read),
        rule("", &["services"], &all),
        rule("", &["pods"], &read),
        rule("", &["pods/log"], &["get"]),
        rule("", &["events"], &read),
        rule("discovery.k8s.io", &["endpointslices"], &read),
        rule("autoscaling", &["horizontalpodautoscalers"], &all),
        rule("policy", &["poddisruptionbudgets"], &all),
        rule("networking.k8s.io", &["ingresses", "networkpolicies"], &all),
    ]
}

/// The `platform serve` Deployment of one role. The role, backend and namespace are passed as
/// environment so that one image and one command serve both roles.
fn platform_deployment(
    values: &Values,
    name: &str,
    role: &str,
    replicas: Option<i32>,
    cpu: &str,
    memory: &str,
) -> Deployment {
    let render = values.render_config();
    let http = || IntOrString::String(HTTP_PORT_NAME.into());
    let container = Container {
        name: "platform".into(),
        image: Some(values.image.clone()),
        image_pull_policy: Some(values.image_pull_policy.clone()),
        args: Some(vec!["serve".into()]),
        env: Some(vec![
            container::env("PLATFORM_ROLE", role),
            container::env("PLATFORM_BACKEND", "kubernetes"),
            container::env_from_field("PLATFORM_NAMESPACE", "metadata.namespace"),
            container::env("PLATFORM_LISTEN", &format!("0.0.0.0:{CONTAINER_PORT}")),
            container::env("PLATFORM_INSECURE_HTTP", "true"),
            container::env("PLATFORM_DATA_DIR", "/var/lib/platform"),
            container::env("PLATFORM_RUNTIME_IMAGE", &render.runtime_image),
            container::env("PLATFORM_ARTIFACT_STORE", &values.artifact_store),
            container::env("PLATFORM_PUBLIC_URL", &format!("https://{}", values.host)),
            container::env("PLATFORM_JWT_KEY_FILE", &format!("/etc/platform/jwt/{}", values.jwt_key.key)),
            container::env_from_secret_key(
                "PLATFORM_DATABASE_URL",
                &values.database.secret_name,
                &values.database.key,
            ),
        ]),
        env_from: Some(vec![container::secret_env(&values.s3_secret, false)]),
        ports: Some(vec![container::http_port(CONTAINER_PORT)]),
        readiness_probe: Some(Probe { period_seconds: Some(5), ..probes::http_get("/healthz", http()) }),
        liveness_probe: Some(Probe {
            period_seconds: Some(10),
            failure_threshold: Some(6),
            ..probes::http_get("/healthz", http())
        }),
        resources: Some(container::guaranteed(cpu, memory, BTreeMap::new())),
        security_context: Some(security::restricted_container(true)),
        volume_mounts: Some(vec![
            VolumeMount { name: "data".into(), mount_path: "/var/lib/platform".into(), ..Default::default() },
            VolumeMount {
                name: "jwt".into(),
                mount_path: "/etc/platform/jwt".into(),
                read_only: Some(true),
                ..Default::default()
            },
        ]),
        ..Default::default()
    };
    let pod = PodSpec {
        service_account_name: Some(SERVICE_ACCOUNT.into()),
        containers: vec![container],
        termination_grace_period_seconds: Some(30),
        security_context: Some(security::restricted_pod(Some(NON_ROOT_UID))),
        volumes: Some(vec![
            Volume {
                name: "data".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            },
            Volume {
                name: "jwt".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(values.jwt_key.secret_name.clone()),
                    default_mode: Some(0o400),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ]),
        ..Default::default()
    };
    let template = PodTemplate { labels: labels(role), annotations: None, spec: pod };
    deployment::rolling(meta(name, values, role), replicas, selector(role), template)
}

fn platform_service(values: &Values, name: &str, role: &str) -> Service {
    service::cluster_ip(meta(name, values, role), selector(role), IntOrString::String(HTTP_PORT_NAME.into()))
}

/// Renders the installation.
pub fn install(values: &Values) -> Installation {
    let ns = &values.namespace;
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(ns.clone()),
            labels: Some(BTreeMap::from([
                ("app.kubernetes.io/part-of".to_string(), "platform".to_string()),
                // Pod Security Admission: every pod of the namespace must be restricted, which
                // the rendered models are.
                ("pod-security.kubernetes.io/enforce".to_string(), "restricted".to_string()),
            ])),
            ..Default::default()
        },
        spec: None,
        status: None,
    };
    let service_account =
        ServiceAccount { metadata: meta(SERVICE_ACCOUNT, values, "controller"), ..Default::default() };
    let role = Role { metadata: meta(SERVICE_ACCOUNT, values, "controller"), rules: Some(rules()) };
    let role_binding = RoleBinding {
        metadata: meta(SERVICE_ACCOUNT, values, "controller"),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: SERVICE_ACCOUNT.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: SERVICE_ACCOUNT.into(),
            namespace: Some(ns.clone()),
            api_group: None,
        }]),
    };
    let api = platform_deployment(
        values,
        API_NAME,
        "api",
        Some(values.api.replicas),
        &values.api.cpu,
        &values.api.memory,
    );
    // No replicas: the HPA owns the gateway's replica count.
    let gateway = platform_deployment(
        values,
        GATEWAY_NAME,
        "gateway",
        None,
        &values.gateway.cpu,
        &values.gateway.memory,
    );
    let gateway_hpa = autoscaler::cpu(
        meta(GATEWAY_NAME, values, "gateway"),
        GATEWAY_NAME,
        values.gateway.min_replicas,
        values.gateway.max_replicas,
        values.gateway.cpu_target,
    );
    let mut ingress_meta = meta(API_NAME, values, "api");
    if let Some(issuer) = &values.cluster_issuer {
        ingress_meta.annotations =
            Some(BTreeMap::from([(CLUSTER_ISSUER_ANNOTATION.to_string(), issuer.clone())]));
    }
    let route = TlsRoute {
        class_name: values.ingress_class_name.clone(),
        host: values.host.clone(),
        tls_secret: format!("{API_NAME}-tls"),
        service: API_NAME.into(),
        port: service::SERVICE_PORT,
    };
    let ingress = ingress::tls(ingress_meta, route);
    Installation {
        namespace,
        service_account,
        role,
        role_binding,
        api_service: platform_service(values, API_NAME, "api"),
        api,
        gateway_service: platform_service(values, GATEWAY_NAME, "gateway"),
        gateway,
        gateway_hpa,
        ingress,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_default_installation() {
        crate::manifests::golden("install_default.yaml", &install(&Values::default()).to_yaml().unwrap());
    }

    #[test]
    fn values_change_names_images_and_hosts() {
        let values = Values::from_yaml(
            "namespace: ml\nimage: registry.local/platform:1.2\nhost: ml.corp.example\n\
             database: {secretName: pg, key: dsn}\ns3Secret: minio\nclusterIssuer: null\n\
             artifactStore: s3://ml-artifacts/prod\n\
             gateway: {minReplicas: 3, maxReplicas: 6}\n",
        )
        .unwrap();
        let i = install(&values);
        assert_eq!(i.namespace.metadata.name.as_deref(), Some("ml"));
        assert_eq!(i.role_binding.subjects.as_ref().unwrap()[0].namespace.as_deref(), Some("ml"));
        let pod = i.api.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("registry.local/platform:1.2"));
        let db = c.env.as_ref().unwrap().iter().find(|e| e.name == "PLATFORM_DATABASE_URL").unwrap();
        let key = db.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
        assert_eq!((key.name.as_str(), key.key.as_str()), ("pg", "dsn"));
        assert_eq!(c.env_from.as_ref().unwrap()[0].secret_ref.as_ref().unwrap().name, "minio");
        let env = |name: &str| {
            c.env.as_ref().unwrap().iter().find(|e| e.name == name).and_then(|e| e.value.clone())
        };
        assert_eq!(env("PLATFORM_ARTIFACT_STORE").as_deref(), Some("s3://ml-artifacts/prod"));
        assert_eq!(env("PLATFORM_PUBLIC_URL").as_deref(), Some("https://ml.corp.example"));
        assert_eq!(
            i.ingress.spec.as_ref().unwrap().rules.as_ref().unwrap()[0].host.as_deref(),
            Some("ml.corp.example")
        );
        assert!(i.ingress.metadata.annotations.is_none(), "no issuer, no cert-manager annotation");
        let hpa = i.gateway_hpa.spec.as_ref().unwrap();
        assert_eq!((hpa.min_replicas, hpa.max_replicas), (Some(3), 6));
        assert!(i.gateway.spec.as_ref().unwrap().replicas.is_none(), "the HPA owns the gateway's replicas");
        // Unchanged keys keep their defaults.
        assert_eq!(values.jwt_key, Values::default().jwt_key);
        assert_eq!(values.render_config().ingress.gateway_namespace.as_deref(), Some("ml"));
        assert_eq!(values.render_config().artifact_credentials_secret.as_deref(), Some("minio"));
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Values::from_yaml("namespaces: x\n").unwrap_err().to_string().contains("unknown field"));
        assert!(Values::from_yaml("gateway: {minReplicas: 0}\n").is_err());
        assert_eq!(Values::from_yaml("").unwrap(), Values::default());
    }

    #[test]
    fn rbac_is_namespaced_and_covers_the_kubernetes_backend() {
        let i = install(&Values::default());
        assert_eq!(i.role.metadata.namespace.as_deref(), Some("platform"));
        assert_eq!(i.role_binding.role_ref.kind, "Role", "never a ClusterRole");
        let rules = i.role.rules.unwrap();
        let allows = |group: &str, resource: &str, verb: &str| {
            rules.iter().any(|r| {
                r.api_groups.as_deref().unwrap_or_default().iter().any(|g| g == group)
                    && r.resources.as_deref().unwrap_or_default().iter().any(|x| x == resource)
                    && r.verbs.iter().any(|v| v == verb)
            })
        };
        // Every request the backend sends (see backend::kubernetes tests).
        for (group, resource, verb) in [
            ("apps", "deployments", "patch"),
            ("apps", "deployments", "get"),
            ("apps", "deployments", "list"),
            ("apps", "deployments", "delete"),
            ("apps", "deployments/scale", "patch"),
            ("apps", "replicasets", "list"),
            ("", "services", "patch"),
            ("", "services", "delete"),
            ("", "pods", "list"),
            ("", "pods/log", "get"),
            ("discovery.k8s.io", "endpointslices", "list"),
            ("autoscaling", "horizontalpodautoscalers", "patch"),
            ("policy", "poddisruptionbudgets", "delete"),
            ("networking.k8s.io", "ingresses", "patch"),
            ("networking.k8s.io", "networkpolicies", "patch"),
        ] {
            assert!(allows(group, resource, verb), "{verb} {group}/{resource}");
        }
        assert!(!allows("", "secrets", "get"), "the platform never reads Secrets");
        assert!(rules.iter().all(|r| !r.verbs.iter().any(|v| v == "*")));
    }
}
