//! `platform install-manifests`: the YAML that installs the platform itself on a cluster
//! (`platform install-manifests | kubectl apply -f -`). Pure: values in, objects out.
//!
//! Everything lives in one namespace, and the platform's service account may only act there:
//! deployed models run in the platform's namespace. PostgreSQL, S3 and the token signing key are
//! referenced as Secrets that the operator creates; no secret value is ever rendered.

pub mod kustomize;
pub mod uninstall;
pub mod values;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, Namespace, PodSpec, Probe, SecretVolumeSource, Service, ServiceAccount,
    Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy, NetworkPolicyPort};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::{Metadata, Resource};
use serde::Serialize;

use crate::manifests::config::{CLUSTER_ISSUER_ANNOTATION, GATEWAY_NAME};
use crate::manifests::objects::container::{self, HTTP_PORT_NAME};
use crate::manifests::objects::deployment::{self, PodTemplate};
use crate::manifests::objects::ingress::{self, TlsRoute};
use crate::manifests::objects::{autoscaler, disruption, network_policy, probes, security, service};
use crate::manifests::{ManifestError, ManifestObject};
pub use values::{Component, Gateway, NetworkPolicyValues, PlacementValues, SecretKey, Values};

/// The port both the API and the gateway listen on inside their pods (plain HTTP: TLS ends at
/// the Ingress).
pub const CONTAINER_PORT: i32 = 8080;
/// The UID of the `nonroot` user of distroless images, which the Dockerfiles in `deploy/` use.
pub const NON_ROOT_UID: i64 = 65532;

/// Errors of `install-manifests`.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("values file: {0}")]
    Values(String),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// The objects of an installation, in the order `kubectl apply` needs them.
pub struct Installation {
    pub namespace: Namespace,
    pub service_account: ServiceAccount,
    pub role: Role,
    pub role_binding: RoleBinding,
    pub network_policy: Option<NetworkPolicy>,
    pub api: Deployment,
    pub api_service: Service,
    pub api_pdb: PodDisruptionBudget,
    pub gateway: Deployment,
    pub gateway_service: Service,
    pub gateway_hpa: HorizontalPodAutoscaler,
    pub gateway_pdb: PodDisruptionBudget,
    pub ingress: Ingress,
    pub service_monitor: Option<ServiceMonitor>,
}

/// One object of an installation: what it is, where it goes in the kustomize base, and the
/// object itself.
pub struct Installed<'a> {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub name: String,
    /// Namespaced objects live in the installation's namespace; the Namespace itself does not.
    pub namespaced: bool,
    /// The file of the kustomize base that holds it.
    pub file: &'static str,
    pub object: &'a dyn ManifestObject,
}

fn installed<'a, K>(object: &'a K, file: &'static str) -> Installed<'a>
where
    K: Resource + Metadata<Ty = ObjectMeta> + Serialize,
{
    Installed {
        kind: K::KIND,
        api_version: K::API_VERSION,
        name: object.metadata().name.clone().unwrap_or_default(),
        namespaced: object.metadata().namespace.is_some(),
        file,
        object,
    }
}

impl Installation {
    /// Every object, in the order `kubectl apply` needs them (the namespace and RBAC first).
    pub fn objects(&self) -> Vec<Installed<'_>> {
        let mut objects = vec![
            installed(&self.namespace, "namespace.yaml"),
            installed(&self.service_account, "rbac.yaml"),
            installed(&self.role, "rbac.yaml"),
            installed(&self.role_binding, "rbac.yaml"),
        ];
        objects.extend(self.network_policy.as_ref().map(|p| installed(p, "network-policy.yaml")));
        objects.extend([
            installed(&self.api, "api.yaml"),
            installed(&self.api_service, "api.yaml"),
            installed(&self.api_pdb, "api.yaml"),
            installed(&self.gateway, "gateway.yaml"),
            installed(&self.gateway_service, "gateway.yaml"),
            installed(&self.gateway_hpa, "gateway.yaml"),
            installed(&self.gateway_pdb, "gateway.yaml"),
            installed(&self.ingress, "api.yaml"),
        ]);
        if let Some(monitor) = &self.service_monitor {
            objects.push(Installed {
                kind: ServiceMonitor::KIND,
                api_version: ServiceMonitor::API_VERSION,
                name: monitor.metadata.name.clone().unwrap_or_default(),
                namespaced: true,
                file: "service-monitor.yaml",
                object: monitor,
            });
        }
        objects
    }

    pub fn to_yaml(&self) -> Result<String, ManifestError> {
        let objects: Vec<&dyn ManifestObject> = self.objects().iter().map(|o| o.object).collect();
        crate::manifests::to_yaml(&objects)
    }
}

/// A Prometheus Operator `ServiceMonitor` (a custom resource `k8s-openapi` has no type for).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitor {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: ObjectMeta,
    pub spec: serde_json::Value,
}

impl ServiceMonitor {
    pub const KIND: &'static str = "ServiceMonitor";
    pub const API_VERSION: &'static str = "monitoring.coreos.com/v1";
}

/// The platform's service account (and its Role and RoleBinding).
pub const SERVICE_ACCOUNT: &str = "platform";
/// The API's Deployment, Service and Ingress.
pub const API_NAME: &str = "platform-api";
/// Where the platform serves its Prometheus metrics.
pub const METRICS_PATH: &str = "/metrics";

pub(crate) fn selector(component: &str) -> BTreeMap<String, String> {
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

/// What the kubernetes backend does, and nothing more, in its own namespace only (`platform
/// check` asks the cluster whether the service account may do each of these).
pub fn rules() -> Vec<PolicyRule> {
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
        // Leader election of the controllers of several API replicas.
        rule("coordination.k8s.io", &["leases"], &all),
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
    let mut server = Container {
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
            // How deployed models and endpoints are rendered: the values reach every model pod
            // and endpoint Ingress through these.
            container::env_from_field("PLATFORM_SERVICE_ACCOUNT", "spec.serviceAccountName"),
            container::env("PLATFORM_IMAGE_PULL_POLICY", &render.image_pull_policy),
            container::env("PLATFORM_ENDPOINT_HOST_PATTERN", &render.ingress.host_pattern),
            container::env(
                "PLATFORM_CLUSTER_ISSUER",
                render.ingress.cert_manager_annotation.as_ref().map_or("none", |(_, issuer)| issuer),
            ),
            container::env("PLATFORM_MODEL_SECRET", values.model_secret()),
            container::env("PLATFORM_GPU_NODE_SELECTOR", &render.gpu.node_selector_flag()),
            container::env("PLATFORM_GPU_TOLERATIONS", &render.gpu.tolerations_flag()),
            container::env("PLATFORM_SPOT_NODE_SELECTOR", &render.spot.node_selector_flag()),
            container::env("PLATFORM_SPOT_TOLERATIONS", &render.spot.tolerations_flag()),
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
    if let (Some(class), Some(env)) = (&render.ingress.class_name, server.env.as_mut()) {
        env.push(container::env("PLATFORM_INGRESS_CLASS", class));
    }
    let pod = PodSpec {
        service_account_name: Some(SERVICE_ACCOUNT.into()),
        containers: vec![server],
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
    // Prometheus' conventional scrape annotations: any Prometheus that discovers pods finds the
    // metrics without a ServiceMonitor.
    let scrape = BTreeMap::from([
        ("prometheus.io/path".to_string(), METRICS_PATH.to_string()),
        ("prometheus.io/port".to_string(), CONTAINER_PORT.to_string()),
        ("prometheus.io/scrape".to_string(), "true".to_string()),
    ]);
    let template = PodTemplate { labels: labels(role), annotations: Some(scrape), spec: pod };
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
        network_policy: values.network_policy.enabled.then(|| platform_network_policy(values)),
        api_service: platform_service(values, API_NAME, "api"),
        api,
        api_pdb: disruption::one_at_a_time(meta(API_NAME, values, "api"), selector("api")),
        gateway_service: platform_service(values, GATEWAY_NAME, "gateway"),
        gateway,
        gateway_hpa,
        gateway_pdb: disruption::one_at_a_time(meta(GATEWAY_NAME, values, "gateway"), selector("gateway")),
        ingress,
        service_monitor: values.service_monitor.then(|| service_monitor(values)),
    }
}

/// The platform's pods (API and gateway) accept connections on their HTTP port only, from the
/// allowed namespaces (every namespace when none are listed). Model pods are not selected:
/// the gateway reaches them, and private endpoints have NetworkPolicies of their own.
fn platform_network_policy(values: &Values) -> NetworkPolicy {
    let selected = BTreeMap::from([("app.kubernetes.io/name".to_string(), "platform".to_string())]);
    let allowed = &values.network_policy.allowed_namespaces;
    let from = (!allowed.is_empty()).then(|| {
        let mut peers: Vec<_> = allowed.iter().map(|ns| network_policy::namespace(ns)).collect();
        // The platform's own pods, whatever the list says.
        peers.push(network_policy::pods_in_namespace(&values.namespace, selected.clone()));
        peers
    });
    let port = NetworkPolicyPort {
        port: Some(IntOrString::Int(CONTAINER_PORT)),
        protocol: Some("TCP".into()),
        end_port: None,
    };
    network_policy::admit_only(meta("platform", values, "platform"), selected, from, Some(vec![port]))
}

/// Scrapes `/metrics` of the API's and the gateway's Services.
fn service_monitor(values: &Values) -> ServiceMonitor {
    ServiceMonitor {
        api_version: ServiceMonitor::API_VERSION,
        kind: ServiceMonitor::KIND,
        metadata: meta("platform", values, "platform"),
        spec: serde_json::json!({
            "selector": {"matchLabels": {"app.kubernetes.io/name": "platform"}},
            "endpoints": [{"port": HTTP_PORT_NAME, "path": METRICS_PATH, "interval": "30s"}],
        }),
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
            ("coordination.k8s.io", "leases", "update"),
        ] {
            assert!(allows(group, resource, verb), "{verb} {group}/{resource}");
        }
        assert!(!allows("", "secrets", "get"), "the platform never reads Secrets");
        assert!(rules.iter().all(|r| !r.verbs.iter().any(|v| v == "*")));
    }

    fn env_of(d: &Deployment) -> BTreeMap<String, String> {
        let c = &d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0];
        c.env.as_ref().unwrap().iter().filter_map(|e| Some((e.name.clone(), e.value.clone()?))).collect()
    }

    #[test]
    fn the_rendering_values_reach_both_deployments_as_flags() {
        let values = Values::from_yaml(
            "endpointHostPattern: '{endpoint}.ml.example.org'\ningressClassName: nginx\nclusterIssuer: corp-ca\n\
             modelS3Secret: models-read-only\nruntimeImage: registry.local/runtime:3\nimagePullPolicy: Always\n\
             gpu: {nodeSelector: {pool: gpu}, tolerations: ['nvidia.com/gpu:NoSchedule', 'dedicated=ml:NoExecute']}\n\
             spot: {nodeSelector: {}, tolerations: []}\n",
        )
        .unwrap();
        let i = install(&values);
        for deployment in [&i.api, &i.gateway] {
            let env = env_of(deployment);
            assert_eq!(env["PLATFORM_ENDPOINT_HOST_PATTERN"], "{endpoint}.ml.example.org");
            assert_eq!(env["PLATFORM_INGRESS_CLASS"], "nginx");
            assert_eq!(env["PLATFORM_CLUSTER_ISSUER"], "corp-ca");
            assert_eq!(env["PLATFORM_MODEL_SECRET"], "models-read-only");
            assert_eq!(env["PLATFORM_RUNTIME_IMAGE"], "registry.local/runtime:3");
            assert_eq!(env["PLATFORM_IMAGE_PULL_POLICY"], "Always");
            assert_eq!(env["PLATFORM_GPU_NODE_SELECTOR"], "pool=gpu");
            assert_eq!(env["PLATFORM_GPU_TOLERATIONS"], "nvidia.com/gpu:NoSchedule,dedicated=ml:NoExecute");
            assert_eq!(env["PLATFORM_SPOT_NODE_SELECTOR"], "none");
            assert_eq!(env["PLATFORM_SPOT_TOLERATIONS"], "none");
        }
        let issuer = env_of(&install(&Values { cluster_issuer: None, ..values.clone() }).api);
        assert_eq!(issuer["PLATFORM_CLUSTER_ISSUER"], "none");
        assert!(
            Values::from_yaml("gpu: {tolerations: ['a:Sometimes']}\n")
                .unwrap_err()
                .to_string()
                .contains("effect")
        );
    }

    #[test]
    fn operators_get_budgets_a_network_policy_and_metrics() {
        let i = install(&Values::default());
        for (pdb, component) in [(&i.api_pdb, "api"), (&i.gateway_pdb, "gateway")] {
            let spec = pdb.spec.as_ref().unwrap();
            assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
            assert_eq!(spec.selector.as_ref().unwrap().match_labels.as_ref(), Some(&selector(component)));
        }
        let policy = i.network_policy.as_ref().expect("on by default").spec.as_ref().unwrap();
        let rule = &policy.ingress.as_ref().unwrap()[0];
        assert!(rule.from.is_none(), "every namespace by default");
        assert_eq!(rule.ports.as_ref().unwrap()[0].port, Some(IntOrString::Int(CONTAINER_PORT)));
        let template = i.api.spec.as_ref().unwrap().template.metadata.as_ref().unwrap();
        assert_eq!(template.annotations.as_ref().unwrap()["prometheus.io/scrape"], "true");
        assert!(i.service_monitor.is_none());

        let values =
            Values::from_yaml("serviceMonitor: true\nnetworkPolicy: {allowedNamespaces: [ingress-nginx]}\n")
                .unwrap();
        let i = install(&values);
        let from = i.network_policy.unwrap().spec.unwrap().ingress.unwrap()[0].from.clone().unwrap();
        assert_eq!(from.len(), 2, "the listed namespace and the platform's own pods");
        let monitor = i.service_monitor.unwrap();
        assert_eq!(monitor.spec["endpoints"][0]["path"], "/metrics");
        assert!(
            install(&Values::from_yaml("networkPolicy: {enabled: false}\n").unwrap())
                .network_policy
                .is_none()
        );
    }

    #[test]
    fn platform_pods_meet_the_restricted_policy() {
        let i = install(&Values::default());
        for d in [&i.api, &i.gateway] {
            let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
            let problems = crate::manifests::policy::pod_problems(pod, Some(pod));
            assert!(problems.is_empty(), "{problems:#?}");
        }
    }

    #[test]
    fn uninstall_stops_the_controller_first_and_deletes_the_namespace_last() {
        let values = Values::default();
        let i = install(&values);
        let script = uninstall::script(&values, &i);
        let commands: Vec<&str> = script.lines().filter(|l| l.starts_with("kubectl")).collect();
        assert_eq!(
            commands[0],
            "kubectl --namespace platform delete deployment.apps/platform-api --ignore-not-found --wait=true"
        );
        assert!(
            commands[1].contains("--selector app.kubernetes.io/managed-by=platform")
                && commands[1].contains("ingresses.networking.k8s.io"),
            "{script}"
        );
        assert_eq!(
            commands.last().copied(),
            Some("kubectl delete namespace platform --ignore-not-found --wait=true")
        );
        // Every namespaced object of the install is deleted once.
        for object in i.objects().iter().filter(|o| o.namespaced) {
            let target = format!("/{} ", object.name);
            let kind = object.kind.to_ascii_lowercase();
            let hits = commands
                .iter()
                .filter(|c| {
                    c.contains(&target)
                        && (c.contains(&format!(" {kind}.")) || c.contains(&format!(" {kind}/")))
                })
                .count();
            assert_eq!(hits, 1, "{} {} in:\n{script}", object.kind, object.name);
        }
        let gateway = commands.iter().position(|c| c.contains("deployment.apps/platform-gateway")).unwrap();
        let role =
            commands.iter().position(|c| c.contains("role.rbac.authorization.k8s.io/platform ")).unwrap();
        assert!(gateway < role, "the workloads go before the permissions they run with");
    }

    #[test]
    fn the_kustomize_base_holds_every_object_once() {
        let i = install(&Values::default());
        let files = kustomize::base(&i).unwrap();
        assert_eq!(files[0].0, "kustomization.yaml");
        let listed: Vec<&str> = files[0].1.lines().filter_map(|l| l.strip_prefix("- ")).collect();
        let written: Vec<&str> = files[1..].iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(listed, written);
        let documents: usize = files[1..].iter().map(|(_, text)| text.matches("---\n").count()).sum();
        assert_eq!(documents, i.objects().len());
    }
}
