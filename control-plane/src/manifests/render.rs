//! Rendering: a DeployedModel's desired state -> typed Kubernetes objects. Pure and
//! deterministic: the same input always gives the same objects (and the same YAML).

use std::collections::BTreeMap;

use api::{AutoscalingMetricSpec, METRIC_CPU};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvFromSource, EnvVar as K8sEnvVar,
    ExecAction, GRPCAction, HTTPGetAction, HTTPHeader, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe as K8sProbe, ResourceRequirements, SeccompProfile, SecretEnvSource, SecurityContext, Service,
    ServicePort, ServiceSpec, TCPSocketAction, Toleration, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::spec::{ModelContainerSpec, Probe, container_port};
use crate::machine::MachineType;

/// Name of the serving container in every rendered pod.
pub const CONTAINER_NAME: &str = "model";
/// The resource name Kubernetes' NVIDIA device plugin exposes.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";
/// Name of the gateway's Deployment and Service in an installation.
pub const GATEWAY_NAME: &str = "platform-gateway";
/// CPU utilisation target (percent) of a CPU metric without one (Vertex's default).
pub const DEFAULT_CPU_TARGET: i32 = 60;

/// Everything a DeployedModel needs to be rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderInput {
    /// Project id or number; becomes `AIP_PROJECT_NUMBER`.
    pub project: String,
    pub location: String,
    pub endpoint_id: String,
    pub deployed_model_id: String,
    pub model_id: String,
    pub model_version_id: String,
    /// The DeployedModel's display name (an annotation; label values are too restricted).
    pub display_name: String,
    pub container: ModelContainerSpec,
    /// The model's artifact URI; `AIP_STORAGE_URI` (empty when the model has none).
    pub artifact_uri: Option<String>,
    pub machine: MachineType,
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// The DeployedModel's autoscaling metrics (`dedicatedResources.autoscalingMetricSpecs`).
    /// A CPU metric is delegated to a HorizontalPodAutoscaler; the others are the platform's.
    pub autoscaling: Vec<AutoscalingMetricSpec>,
}

/// How this installation renders.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderConfig {
    /// Namespace of the rendered objects.
    pub namespace: String,
    /// The prebuilt ONNX runtime image, e.g. `platform-runtime:0.1.0`. A model whose container
    /// image is empty or the bare runtime repository (`platform-runtime`) runs this image.
    pub runtime_image: String,
    /// Prefix of the platform's own labels and annotations (`platform.dev/endpoint`, ...).
    pub label_prefix: String,
    /// `app.kubernetes.io/managed-by`.
    pub managed_by: String,
    /// `imagePullPolicy` of the serving container.
    pub image_pull_policy: String,
    /// Where pods that ask for GPUs may run.
    pub gpu: GpuScheduling,
    /// A Secret whose keys become the serving container's environment (for example
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` to read `AIP_STORAGE_URI`). Referenced as
    /// optional, so a cluster without it still starts models whose artifacts are public.
    pub artifact_credentials_secret: Option<String>,
    /// How long a replica may drain in-flight requests after SIGTERM.
    pub termination_grace_period_seconds: i64,
    /// How endpoints are exposed (Ingress) and who may reach private ones (NetworkPolicy).
    pub ingress: IngressConfig,
}

/// Scheduling of GPU pods: clusters label and taint their GPU nodes differently.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuScheduling {
    /// Node labels a GPU pod requires. In values, `{accelerator}` is replaced by the accelerator
    /// type in label form (`NVIDIA_TESLA_T4` -> `nvidia-tesla-t4`), as GKE's
    /// `cloud.google.com/gke-accelerator` expects.
    pub node_selector: BTreeMap<String, String>,
    /// Taints of GPU nodes that GPU pods tolerate.
    pub tolerations: Vec<Toleration>,
}

impl Default for GpuScheduling {
    fn default() -> Self {
        // The NVIDIA GPU operator and most managed clusters taint GPU nodes with this key.
        GpuScheduling {
            node_selector: BTreeMap::new(),
            tolerations: vec![Toleration {
                key: Some(GPU_RESOURCE.into()),
                operator: Some("Exists".into()),
                effect: Some("NoSchedule".into()),
                ..Default::default()
            }],
        }
    }
}

/// How endpoints are reached from outside the cluster: through the gateway, behind an Ingress.
#[derive(Debug, Clone, PartialEq)]
pub struct IngressConfig {
    /// Host of an endpoint; `{endpoint}`, `{project}` and `{location}` are replaced by DNS-safe
    /// forms of the endpoint's id, project and location.
    pub host_pattern: String,
    /// `spec.ingressClassName`; the cluster's default class when unset.
    pub class_name: Option<String>,
    /// The annotation that asks cert-manager for the TLS certificate, e.g.
    /// `cert-manager.io/cluster-issuer: letsencrypt`. None when certificates are provided otherwise.
    pub cert_manager_annotation: Option<(String, String)>,
    /// Namespace of the gateway (Ingresses must live beside the Service they route to); the
    /// models' namespace when unset.
    pub gateway_namespace: Option<String>,
    /// The gateway's Service and port.
    pub gateway_service: String,
    pub gateway_port: i32,
    /// Labels of the gateway's pods: the only callers a private endpoint's pods accept.
    pub gateway_pod_labels: BTreeMap<String, String>,
}

impl Default for IngressConfig {
    fn default() -> Self {
        IngressConfig {
            host_pattern: "{endpoint}.endpoints.example.com".into(),
            class_name: None,
            cert_manager_annotation: Some(("cert-manager.io/cluster-issuer".into(), "letsencrypt".into())),
            gateway_namespace: None,
            gateway_service: GATEWAY_NAME.into(),
            gateway_port: 80,
            gateway_pod_labels: BTreeMap::from([
                ("app.kubernetes.io/name".into(), "platform".into()),
                ("app.kubernetes.io/component".into(), "gateway".into()),
            ]),
        }
    }
}

impl Default for RenderConfig {
    fn default() -> Self {
        RenderConfig {
            namespace: "default".into(),
            runtime_image: format!("platform-runtime:{}", env!("CARGO_PKG_VERSION")),
            label_prefix: "platform.dev".into(),
            managed_by: "platform".into(),
            image_pull_policy: "IfNotPresent".into(),
            gpu: GpuScheduling::default(),
            artifact_credentials_secret: None,
            termination_grace_period_seconds: 30,
            ingress: IngressConfig::default(),
        }
    }
}

impl RenderConfig {
    /// The runtime image's repository (`platform-runtime` of `ghcr.io/x/platform-runtime:0.1`).
    pub fn runtime_repository(&self) -> &str {
        image_repository(&self.runtime_image)
    }

    /// Whether a model's `imageUri` means the prebuilt runtime: empty, or the runtime's bare
    /// repository name without a tag.
    pub fn is_runtime_image(&self, image_uri: &str) -> bool {
        let image = image_uri.trim();
        image.is_empty() || image == self.runtime_repository() || image == self.runtime_image
    }

    /// The platform label `{prefix}/{key}`.
    pub fn label(&self, key: &str) -> String {
        format!("{}/{key}", self.label_prefix)
    }
}

/// An image reference without registry path, tag or digest: `platform-runtime`.
pub fn image_repository(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next().unwrap_or(last)
}

/// The rendered objects of one DeployedModel.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub deployment: Deployment,
    pub service: Service,
    /// When the autoscaling metric is CPU: Kubernetes scales the Deployment itself.
    pub hpa: Option<HorizontalPodAutoscaler>,
    /// When at least two replicas must run: voluntary evictions (node drains) keep all but one.
    pub pdb: Option<PodDisruptionBudget>,
}

impl Rendered {
    /// Multi-document YAML of the objects: Deployment, Service, then the HPA and PDB if any.
    pub fn to_yaml(&self) -> Result<String, super::ManifestError> {
        let mut objects: Vec<&dyn super::ManifestObject> = vec![&self.deployment, &self.service];
        if let Some(hpa) = &self.hpa {
            objects.push(hpa);
        }
        if let Some(pdb) = &self.pdb {
            objects.push(pdb);
        }
        super::to_yaml(&objects)
    }
}

/// The Deployment and Service name of a DeployedModel: `ep-{endpoint}-dm-{id}`, a DNS-1035
/// label (lowercase alphanumerics and `-`, starting with a letter, at most 63 characters). Long
/// or unusual ids are shortened with a hash of the originals, so distinct inputs stay distinct.
pub fn deployment_name(endpoint_id: &str, deployed_model_id: &str) -> String {
    let e = dns_part(endpoint_id);
    let d = dns_part(deployed_model_id);
    let plain = format!("ep-{e}-dm-{d}");
    let clean = e == endpoint_id && d == deployed_model_id && !e.is_empty() && !d.is_empty();
    if clean && plain.len() <= 63 {
        return plain;
    }
    let hash = short_hash(&format!("{endpoint_id}\0{deployed_model_id}"));
    let d: String = d.chars().take(20).collect();
    let d = d.trim_end_matches('-');
    let suffix = if d.is_empty() { format!("-dm-{hash}") } else { format!("-dm-{d}-{hash}") };
    let room = 63 - 3 - suffix.len();
    let e: String = e.chars().take(room).collect();
    let e = e.trim_end_matches('-');
    if e.is_empty() { format!("ep{suffix}") } else { format!("ep-{e}{suffix}") }
}

/// Lowercase alphanumerics with single `-` between runs, no leading or trailing `-`.
pub(crate) fn dns_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// A Kubernetes label value for `s`: unchanged when valid, else sanitised and suffixed with a
/// hash of the original (at most 63 characters, alphanumeric at both ends).
pub fn label_value(s: &str) -> String {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let valid = s.len() <= 63
        && s.chars().all(valid_char)
        && s.chars().next().is_none_or(|c| c.is_ascii_alphanumeric())
        && s.chars().last().is_none_or(|c| c.is_ascii_alphanumeric());
    if valid {
        return s.to_string();
    }
    let cleaned: String = s.chars().map(|c| if valid_char(c) { c } else { '-' }).collect();
    let cleaned: String =
        cleaned.trim_matches(|c: char| !c.is_ascii_alphanumeric()).chars().take(54).collect();
    let cleaned = cleaned.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    let hash = short_hash(s);
    if cleaned.is_empty() { hash } else { format!("{cleaned}-{hash}") }
}

/// 8 hex digits of FNV-1a 64: stable across platforms and releases.
pub fn short_hash(s: &str) -> String {
    format!("{:08x}", fnv1a(s.as_bytes()) as u32)
}

/// FNV-1a, 64 bits.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Vertex's default predict route.
pub fn default_predict_route(endpoint_id: &str, deployed_model_id: &str) -> String {
    format!("/v1/endpoints/{endpoint_id}/deployedModels/{deployed_model_id}:predict")
}

/// Vertex's default health route.
pub fn default_health_route(endpoint_id: &str, deployed_model_id: &str) -> String {
    format!("/v1/endpoints/{endpoint_id}/deployedModels/{deployed_model_id}")
}

/// The labels that select a DeployedModel's pods (the Deployment selector and the Service's).
pub fn selector_labels(input: &RenderInput, cfg: &RenderConfig) -> BTreeMap<String, String> {
    BTreeMap::from([
        (cfg.label("endpoint"), label_value(&input.endpoint_id)),
        (cfg.label("deployed-model"), label_value(&input.deployed_model_id)),
    ])
}

fn labels(input: &RenderInput, cfg: &RenderConfig, name: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(input, cfg);
    labels.extend([
        ("app.kubernetes.io/name".to_string(), "model-server".to_string()),
        ("app.kubernetes.io/instance".to_string(), name.to_string()),
        ("app.kubernetes.io/component".to_string(), "predictor".to_string()),
        ("app.kubernetes.io/managed-by".to_string(), label_value(&cfg.managed_by)),
        ("app.kubernetes.io/version".to_string(), label_value(&input.model_version_id)),
        (cfg.label("model"), label_value(&input.model_id)),
        (cfg.label("model-version"), label_value(&input.model_version_id)),
    ]);
    labels
}

fn annotations(input: &RenderInput, cfg: &RenderConfig) -> BTreeMap<String, String> {
    BTreeMap::from([
        (cfg.label("display-name"), input.display_name.clone()),
        (cfg.label("project"), input.project.clone()),
        (cfg.label("location"), input.location.clone()),
        (cfg.label("machine-type"), input.machine.name.clone()),
        (cfg.label("min-replicas"), input.min_replicas.to_string()),
        (cfg.label("max-replicas"), input.max_replicas.max(input.min_replicas).to_string()),
    ])
}

/// The Vertex `AIP_*` environment of a DeployedModel, in a fixed order.
pub fn aip_env(input: &RenderInput) -> Vec<(String, String)> {
    let c = &input.container;
    let (e, d) = (input.endpoint_id.as_str(), input.deployed_model_id.as_str());
    let mut env = vec![
        ("AIP_HTTP_PORT", container_port(c).to_string()),
        ("AIP_PREDICT_ROUTE", or_default(&c.predict_route, || default_predict_route(e, d))),
        ("AIP_HEALTH_ROUTE", or_default(&c.health_route, || default_health_route(e, d))),
        ("AIP_DEPLOYED_MODEL_ID", d.to_string()),
        ("AIP_ENDPOINT_ID", e.to_string()),
        ("AIP_MODEL_NAME", e.to_string()),
        ("AIP_VERSION_NAME", d.to_string()),
        ("AIP_MACHINE_TYPE", input.machine.name.clone()),
        ("AIP_MODE", "PREDICTION".to_string()),
        ("AIP_MODE_VERSION", "1.0.0".to_string()),
        ("AIP_FRAMEWORK", "CUSTOM_CONTAINER".to_string()),
        ("AIP_PROJECT_NUMBER", input.project.clone()),
        ("AIP_STORAGE_URI", input.artifact_uri.clone().unwrap_or_default()),
    ];
    if let Some(acc) = &input.machine.accelerator {
        env.push(("AIP_ACCELERATOR_TYPE", acc.accelerator_type.clone()));
    }
    env.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Renders a DeployedModel into its Deployment and Service.
pub fn render(input: &RenderInput, cfg: &RenderConfig) -> Rendered {
    let name = deployment_name(&input.endpoint_id, &input.deployed_model_id);
    let labels = labels(input, cfg, &name);
    let selector = selector_labels(input, cfg);
    let spec = &input.container;
    let port = container_port(spec);

    // A prebuilt-runtime model names no image (or the bare runtime repository): it gets the
    // runtime image of this installation.
    let requested = spec.image_uri.trim();
    let image = if requested.is_empty() || requested == cfg.runtime_repository() {
        cfg.runtime_image.clone()
    } else {
        requested.to_string()
    };

    let mut env: Vec<K8sEnvVar> = aip_env(input)
        .into_iter()
        .map(|(name, value)| K8sEnvVar { name, value: Some(value), value_from: None })
        .collect();
    env.extend(spec.env.iter().map(|v| K8sEnvVar {
        name: v.name.clone(),
        value: Some(v.value.clone()),
        value_from: None,
    }));

    let health_route =
        or_default(&spec.health_route, || default_health_route(&input.endpoint_id, &input.deployed_model_id));
    let readiness = match &spec.health_probe {
        Some(p) => probe(p, port),
        // Vertex: ready = 200 within 10 s; four failures 10 s apart take it out of routing.
        None => K8sProbe {
            http_get: Some(HTTPGetAction {
                path: Some(health_route),
                port: IntOrString::Int(port),
                ..Default::default()
            }),
            period_seconds: Some(10),
            timeout_seconds: Some(10),
            failure_threshold: Some(4),
            success_threshold: Some(1),
            ..Default::default()
        },
    };
    let liveness = match &spec.liveness_probe {
        Some(p) => probe(p, port),
        // Vertex: TCP connect, 4 attempts 10 s apart, then restart.
        None => K8sProbe {
            tcp_socket: Some(TCPSocketAction { port: IntOrString::Int(port), host: None }),
            period_seconds: Some(10),
            timeout_seconds: Some(1),
            failure_threshold: Some(4),
            ..Default::default()
        },
    };

    let mut resources = BTreeMap::from([
        ("cpu".to_string(), Quantity(input.machine.cpu_quantity())),
        ("memory".to_string(), Quantity(input.machine.memory_quantity())),
    ]);
    let mut node_selector = None;
    let mut tolerations = None;
    if let Some(acc) = &input.machine.accelerator
        && acc.accelerator_type.starts_with("NVIDIA")
    {
        resources.insert(GPU_RESOURCE.to_string(), Quantity(acc.count.to_string()));
        let accelerator = acc.accelerator_type.to_ascii_lowercase().replace('_', "-");
        let selector: BTreeMap<String, String> = cfg
            .gpu
            .node_selector
            .iter()
            .map(|(k, v)| (k.clone(), v.replace("{accelerator}", &accelerator)))
            .collect();
        node_selector = (!selector.is_empty()).then_some(selector);
        tolerations = (!cfg.gpu.tolerations.is_empty()).then(|| cfg.gpu.tolerations.clone());
    }

    let (volumes, mounts) = match spec.shared_memory_size_mb.filter(|mb| *mb > 0) {
        Some(mb) => (
            Some(vec![Volume {
                name: "dshm".into(),
                empty_dir: Some(EmptyDirVolumeSource {
                    medium: Some("Memory".into()),
                    size_limit: Some(Quantity(format!("{mb}Mi"))),
                }),
                ..Default::default()
            }]),
            Some(vec![VolumeMount {
                name: "dshm".into(),
                mount_path: "/dev/shm".into(),
                ..Default::default()
            }]),
        ),
        None => (None, None),
    };

    let container = Container {
        name: CONTAINER_NAME.into(),
        image: Some(image),
        image_pull_policy: Some(cfg.image_pull_policy.clone()),
        command: non_empty(spec.command.clone()),
        args: non_empty(spec.args.clone()),
        env: Some(env),
        env_from: cfg.artifact_credentials_secret.as_ref().map(|secret| {
            vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource { name: secret.clone(), optional: Some(true) }),
                ..Default::default()
            }]
        }),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: port,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        readiness_probe: Some(readiness),
        liveness_probe: Some(liveness),
        startup_probe: spec.startup_probe.as_ref().map(|p| probe(p, port)),
        resources: Some(ResourceRequirements {
            requests: Some(resources.clone()),
            limits: Some(resources),
            claims: None,
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
            run_as_non_root: Some(true),
            seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }),
            ..Default::default()
        }),
        volume_mounts: mounts,
        ..Default::default()
    };

    let pod_spec = PodSpec {
        containers: vec![container],
        termination_grace_period_seconds: Some(cfg.termination_grace_period_seconds),
        node_selector,
        tolerations,
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }),
            ..Default::default()
        }),
        volumes,
        ..Default::default()
    };

    let metadata = ObjectMeta {
        name: Some(name.clone()),
        namespace: Some(cfg.namespace.clone()),
        labels: Some(labels.clone()),
        annotations: Some(annotations(input, cfg)),
        ..Default::default()
    };

    let deployment = Deployment {
        metadata: metadata.clone(),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas_i32(input.min_replicas)),
            selector: LabelSelector { match_labels: Some(selector.clone()), match_expressions: None },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            progress_deadline_seconds: spec.deployment_timeout.map(deadline_seconds).filter(|s| *s > 0),
            revision_history_limit: Some(3),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..Default::default() }),
                spec: Some(pod_spec),
            },
            ..Default::default()
        }),
        status: None,
    };

    let hpa = cpu_target(&input.autoscaling).map(|target| HorizontalPodAutoscaler {
        metadata: metadata.clone(),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: name.clone(),
            },
            // An HPA cannot scale to zero (that needs an alpha feature gate): at least one.
            min_replicas: Some(replicas_i32(input.min_replicas.max(1))),
            max_replicas: replicas_i32(input.max_replicas.max(input.min_replicas).max(1)),
            metrics: Some(vec![MetricSpec {
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
            }]),
            behavior: None,
        }),
        status: None,
    });

    // maxUnavailable rather than minAvailable: it stays right whatever the autoscaler does.
    let pdb = (input.min_replicas >= 2).then(|| PodDisruptionBudget {
        metadata: metadata.clone(),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector { match_labels: Some(selector.clone()), match_expressions: None }),
            ..Default::default()
        }),
        status: None,
    });

    let service = Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::Int(port)),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    };

    Rendered { deployment, service, hpa, pdb }
}

/// The CPU utilisation target when a DeployedModel autoscales on CPU.
fn cpu_target(metrics: &[AutoscalingMetricSpec]) -> Option<i32> {
    metrics
        .iter()
        .find(|m| m.metric_name == METRIC_CPU)
        .map(|m| if m.target > 0 { m.target.min(100) } else { DEFAULT_CPU_TARGET })
}

fn replicas_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// `value`, or the default when it is empty (proto3: empty means unset).
fn or_default(value: &str, default: impl FnOnce() -> String) -> String {
    if value.is_empty() { default() } else { value.to_string() }
}

fn some_text(s: &str) -> Option<String> {
    if s.is_empty() { None } else { Some(s.to_string()) }
}

fn non_empty(v: Vec<String>) -> Option<Vec<String>> {
    if v.is_empty() { None } else { Some(v) }
}

/// A Vertex probe as a Kubernetes probe; ports default to the container port.
fn probe(p: &Probe, container_port: i32) -> K8sProbe {
    K8sProbe {
        exec: p.exec.as_ref().map(|e| ExecAction { command: Some(e.command.clone()) }),
        http_get: p.http_get.as_ref().map(|h| HTTPGetAction {
            path: some_text(&h.path),
            port: IntOrString::Int(h.port.filter(|p| *p > 0).unwrap_or(container_port)),
            host: some_text(&h.host),
            scheme: some_text(&h.scheme),
            http_headers: if h.http_headers.is_empty() {
                None
            } else {
                Some(
                    h.http_headers
                        .iter()
                        .map(|x| HTTPHeader { name: x.name.clone(), value: x.value.clone() })
                        .collect(),
                )
            },
        }),
        grpc: p.grpc.as_ref().map(|g| GRPCAction {
            port: if g.port > 0 { g.port } else { container_port },
            service: some_text(&g.service),
        }),
        tcp_socket: p.tcp_socket.as_ref().map(|t| TCPSocketAction {
            port: IntOrString::Int(if t.port > 0 { t.port } else { container_port }),
            host: some_text(&t.host),
        }),
        period_seconds: p.period_seconds,
        timeout_seconds: p.timeout_seconds,
        failure_threshold: p.failure_threshold,
        success_threshold: p.success_threshold,
        initial_delay_seconds: p.initial_delay_seconds,
        termination_grace_period_seconds: None,
    }
}

/// Whole seconds of a deployment timeout, rounded up (`progressDeadlineSeconds`).
fn deadline_seconds(d: api::Duration) -> i32 {
    i32::try_from(d.whole_seconds_up()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::Catalog;
    use crate::manifests::golden;
    use crate::manifests::spec::{EnvVar, HttpGetAction as VertexHttpGet, Port};

    fn env(name: &str, value: &str) -> EnvVar {
        EnvVar { name: name.into(), value: value.into() }
    }
    use crate::manifests::to_yaml;

    fn runtime_input() -> RenderInput {
        RenderInput {
            project: "123456".into(),
            location: "local".into(),
            endpoint_id: "fraud".into(),
            deployed_model_id: "4567".into(),
            model_id: "mlp".into(),
            model_version_id: "2".into(),
            display_name: "MLP v2 (ONNX)".into(),
            container: ModelContainerSpec::default(),
            artifact_uri: Some("s3://models/mlp/".into()),
            machine: Catalog::builtin().get("e2-small").unwrap().clone(),
            min_replicas: 2,
            max_replicas: 5,
            autoscaling: vec![AutoscalingMetricSpec { metric_name: METRIC_CPU.into(), target: 70 }],
        }
    }

    fn custom_input() -> RenderInput {
        let catalog = Catalog::builtin();
        RenderInput {
            project: "my-project".into(),
            location: "us-central1".into(),
            endpoint_id: "1234567".into(),
            deployed_model_id: "89".into(),
            model_id: "iris".into(),
            model_version_id: "1".into(),
            display_name: "iris".into(),
            container: ModelContainerSpec {
                image_uri: "registry.example/iris-server:1.0".into(),
                command: vec!["python".into(), "serve.py".into()],
                args: vec!["--port=$(AIP_HTTP_PORT)".into()],
                env: vec![
                    env("MODEL_NAME", "iris"),
                    env("MODEL_URL", "$(AIP_STORAGE_URI)/model.pkl"),
                    env("LITERAL", "$$(AIP_HTTP_PORT)"),
                ],
                ports: vec![Port { container_port: 7080 }],
                predict_route: "/predict".into(),
                health_route: "/health".into(),
                deployment_timeout: Some("30m".parse().expect("a duration")),
                shared_memory_size_mb: Some(1024),
                startup_probe: Some(Probe {
                    http_get: Some(VertexHttpGet { path: "/health".into(), ..Default::default() }),
                    period_seconds: Some(5),
                    failure_threshold: Some(60),
                    ..Default::default()
                }),
                ..Default::default()
            },
            artifact_uri: None,
            machine: catalog.resolve("n1-standard-4", Some("NVIDIA_TESLA_T4"), 1).unwrap(),
            min_replicas: 1,
            max_replicas: 1,
            autoscaling: vec![],
        }
    }

    fn container(r: &Rendered) -> &Container {
        &r.deployment.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0]
    }

    fn env_of(r: &Rendered) -> Vec<(String, String)> {
        container(r)
            .env
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| (e.name.clone(), e.value.clone().unwrap()))
            .collect()
    }

    #[test]
    fn golden_runtime_model() {
        let cfg = RenderConfig { runtime_image: "platform-runtime:0.1.0".into(), ..RenderConfig::default() };
        let r = render(&runtime_input(), &cfg);
        golden("render_runtime.yaml", &r.to_yaml().unwrap());
    }

    #[test]
    fn golden_custom_container() {
        let cfg = RenderConfig {
            namespace: "models".into(),
            runtime_image: "platform-runtime:0.1.0".into(),
            ..RenderConfig::default()
        };
        let r = render(&custom_input(), &cfg);
        golden("render_custom.yaml", &to_yaml(&[&r.deployment, &r.service]).unwrap());
    }

    #[test]
    fn rendering_is_deterministic() {
        let cfg = RenderConfig::default();
        let a = render(&custom_input(), &cfg).to_yaml().unwrap();
        for _ in 0..5 {
            assert_eq!(render(&custom_input(), &cfg).to_yaml().unwrap(), a);
        }
        assert!(a.starts_with("---\napiVersion: apps/v1\nkind: Deployment\n"), "{a}");
        assert_eq!(a.matches("\n---\n").count(), 1);
    }

    #[test]
    fn runtime_model_defaults() {
        let r = render(&runtime_input(), &RenderConfig::default());
        let c = container(&r);
        assert_eq!(c.image.as_deref(), Some(RenderConfig::default().runtime_image.as_str()));
        assert!(c.command.is_none() && c.args.is_none());
        let env = env_of(&r);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("AIP_HTTP_PORT"), Some("8080"));
        assert_eq!(get("AIP_PREDICT_ROUTE"), Some("/v1/endpoints/fraud/deployedModels/4567:predict"));
        assert_eq!(get("AIP_HEALTH_ROUTE"), Some("/v1/endpoints/fraud/deployedModels/4567"));
        assert_eq!(get("AIP_STORAGE_URI"), Some("s3://models/mlp/"));
        assert_eq!(get("AIP_MODEL_NAME"), Some("fraud"));
        assert_eq!(get("AIP_VERSION_NAME"), Some("4567"));
        assert_eq!(get("AIP_MACHINE_TYPE"), Some("e2-small"));
        assert_eq!(get("AIP_MODE"), Some("PREDICTION"));
        assert_eq!(get("AIP_MODE_VERSION"), Some("1.0.0"));
        assert_eq!(get("AIP_FRAMEWORK"), Some("CUSTOM_CONTAINER"));
        assert_eq!(get("AIP_ACCELERATOR_TYPE"), None);
        let spec = r.deployment.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(2));
        let ru = spec.strategy.as_ref().unwrap().rolling_update.as_ref().unwrap();
        assert_eq!(ru.max_unavailable, Some(IntOrString::Int(0)));
        let readiness = c.readiness_probe.as_ref().unwrap();
        assert_eq!(
            readiness.http_get.as_ref().unwrap().path.as_deref(),
            Some("/v1/endpoints/fraud/deployedModels/4567")
        );
        let liveness = c.liveness_probe.as_ref().unwrap();
        assert_eq!(liveness.tcp_socket.as_ref().unwrap().port, IntOrString::Int(8080));
        assert_eq!((liveness.period_seconds, liveness.failure_threshold), (Some(10), Some(4)));
        let res = c.resources.as_ref().unwrap();
        assert_eq!(res.requests, res.limits);
        assert_eq!(res.requests.as_ref().unwrap()["cpu"].0, "500m");
        assert_eq!(res.requests.as_ref().unwrap()["memory"].0, "2Gi");
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!((sc.allow_privilege_escalation, sc.run_as_non_root), (Some(false), Some(true)));
        let svc = r.service.spec.as_ref().unwrap();
        assert_eq!(svc.ports.as_ref().unwrap()[0].port, 80);
        assert_eq!(svc.selector, spec.selector.match_labels);
        assert_eq!(r.deployment.metadata.name.as_deref(), Some("ep-fraud-dm-4567"));
        let labels = r.deployment.metadata.labels.as_ref().unwrap();
        for key in [
            "platform.dev/endpoint",
            "platform.dev/deployed-model",
            "platform.dev/model",
            "app.kubernetes.io/managed-by",
        ] {
            assert!(labels.contains_key(key), "{key}");
        }
    }

    #[test]
    fn user_env_follows_aip_env_and_keeps_references() {
        let r = render(&custom_input(), &RenderConfig::default());
        let env = env_of(&r);
        let names: Vec<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.first(), Some(&"AIP_HTTP_PORT"));
        assert_eq!(&names[names.len() - 3..], &["MODEL_NAME", "MODEL_URL", "LITERAL"]);
        // References stay in the manifest; the kubelet (or the local backend) expands them with
        // the same rules when the container starts.
        let expanded = crate::manifests::expand_env(
            &Default::default(),
            env.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        );
        let get = |k: &str| expanded.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("AIP_STORAGE_URI").as_deref(), Some(""));
        assert_eq!(get("MODEL_URL").as_deref(), Some("/model.pkl"));
        assert_eq!(get("LITERAL").as_deref(), Some("$(AIP_HTTP_PORT)"));
        assert_eq!(get("AIP_HTTP_PORT").as_deref(), Some("7080"));
        assert_eq!(get("AIP_ACCELERATOR_TYPE").as_deref(), Some("NVIDIA_TESLA_T4"));
        let c = container(&r);
        assert_eq!(c.resources.as_ref().unwrap().limits.as_ref().unwrap()[GPU_RESOURCE].0, "1");
        assert_eq!(c.startup_probe.as_ref().unwrap().http_get.as_ref().unwrap().port, IntOrString::Int(7080));
        assert_eq!(r.deployment.spec.as_ref().unwrap().progress_deadline_seconds, Some(1800));
    }

    fn pod(r: &Rendered) -> &PodSpec {
        r.deployment.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    #[test]
    fn every_pod_runs_restricted() {
        for input in [runtime_input(), custom_input()] {
            let r = render(&input, &RenderConfig::default());
            let pod_sc = pod(&r).security_context.as_ref().unwrap();
            assert_eq!(pod_sc.run_as_non_root, Some(true));
            assert_eq!(pod_sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
            assert_eq!(pod(&r).automount_service_account_token, Some(false));
            for c in &pod(&r).containers {
                let sc = c.security_context.as_ref().unwrap();
                assert_eq!(sc.allow_privilege_escalation, Some(false));
                assert_eq!(sc.run_as_non_root, Some(true));
                assert_ne!(sc.privileged, Some(true));
                let caps = sc.capabilities.as_ref().unwrap();
                assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
                assert!(caps.add.is_none());
                assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
            }
        }
    }

    #[test]
    fn cpu_metric_gets_a_horizontal_pod_autoscaler() {
        let r = render(&runtime_input(), &RenderConfig::default());
        let hpa = r.hpa.as_ref().expect("CPU autoscaling renders an HPA");
        let spec = hpa.spec.as_ref().unwrap();
        assert_eq!(spec.scale_target_ref.kind, "Deployment");
        assert_eq!(spec.scale_target_ref.name, "ep-fraud-dm-4567");
        assert_eq!((spec.min_replicas, spec.max_replicas), (Some(2), 5));
        let metric = &spec.metrics.as_ref().unwrap()[0];
        let resource = metric.resource.as_ref().unwrap();
        assert_eq!((resource.name.as_str(), resource.target.average_utilization), ("cpu", Some(70)));

        let mut input = runtime_input();
        input.autoscaling = vec![AutoscalingMetricSpec { metric_name: METRIC_CPU.into(), target: 0 }];
        input.min_replicas = 0;
        let hpa = render(&input, &RenderConfig::default()).hpa.unwrap();
        let spec = hpa.spec.unwrap();
        assert_eq!(spec.metrics.unwrap()[0].resource.as_ref().unwrap().target.average_utilization, Some(60));
        assert_eq!(spec.min_replicas, Some(1), "an HPA cannot go below one replica");

        input.autoscaling =
            vec![AutoscalingMetricSpec { metric_name: api::METRIC_REQUESTS.into(), target: 100 }];
        assert!(render(&input, &RenderConfig::default()).hpa.is_none(), "request metrics are the platform's");
        input.autoscaling = vec![];
        assert!(render(&input, &RenderConfig::default()).hpa.is_none());
    }

    #[test]
    fn pod_disruption_budget_from_two_replicas() {
        let r = render(&runtime_input(), &RenderConfig::default());
        let pdb = r.pdb.as_ref().expect("min replicas 2 renders a PDB");
        let spec = pdb.spec.as_ref().unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(
            spec.selector.as_ref().unwrap().match_labels,
            r.deployment.spec.as_ref().unwrap().selector.match_labels
        );
        let mut input = runtime_input();
        input.min_replicas = 1;
        assert!(render(&input, &RenderConfig::default()).pdb.is_none());
        assert!(render(&custom_input(), &RenderConfig::default()).pdb.is_none());
    }

    #[test]
    fn gpu_pods_get_the_configured_nodes_and_tolerations() {
        let mut cfg = RenderConfig::default();
        cfg.gpu.node_selector =
            BTreeMap::from([("cloud.google.com/gke-accelerator".to_string(), "{accelerator}".to_string())]);
        let r = render(&custom_input(), &cfg);
        let p = pod(&r);
        assert_eq!(p.node_selector.as_ref().unwrap()["cloud.google.com/gke-accelerator"], "nvidia-tesla-t4");
        let toleration = &p.tolerations.as_ref().unwrap()[0];
        assert_eq!(toleration.key.as_deref(), Some(GPU_RESOURCE));
        assert_eq!(toleration.operator.as_deref(), Some("Exists"));
        assert_eq!(container(&r).resources.as_ref().unwrap().requests.as_ref().unwrap()[GPU_RESOURCE].0, "1");

        let cpu_only = render(&runtime_input(), &cfg);
        assert!(pod(&cpu_only).node_selector.is_none() && pod(&cpu_only).tolerations.is_none());
        assert!(
            !container(&cpu_only)
                .resources
                .as_ref()
                .unwrap()
                .limits
                .as_ref()
                .unwrap()
                .contains_key(GPU_RESOURCE)
        );
    }

    #[test]
    fn artifact_credentials_come_from_an_optional_secret() {
        assert!(container(&render(&runtime_input(), &RenderConfig::default())).env_from.is_none());
        let cfg = RenderConfig {
            artifact_credentials_secret: Some("s3-credentials".into()),
            termination_grace_period_seconds: 90,
            ..RenderConfig::default()
        };
        let r = render(&runtime_input(), &cfg);
        let from = container(&r).env_from.as_ref().unwrap();
        let secret = from[0].secret_ref.as_ref().unwrap();
        assert_eq!((secret.name.as_str(), secret.optional), ("s3-credentials", Some(true)));
        assert_eq!(pod(&r).termination_grace_period_seconds, Some(90));
    }

    #[test]
    fn names_are_dns_safe_and_distinct() {
        assert_eq!(deployment_name("fraud", "4567"), "ep-fraud-dm-4567");
        let long = "a".repeat(63);
        let n = deployment_name(&long, "1234567890");
        assert!(
            n.len() <= 63 && n.starts_with("ep-a") && n.ends_with(|c: char| c.is_ascii_alphanumeric()),
            "{n}"
        );
        assert_ne!(deployment_name(&long, "1234567890"), deployment_name(&format!("{long}b"), "1234567890"));
        let odd = deployment_name("My_Endpoint!", "");
        assert!(
            odd.len() <= 63 && odd.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
        assert_ne!(deployment_name("a_b", "1"), deployment_name("a-b", "1"));
        assert_eq!(label_value("iris"), "iris");
        let v = label_value("Display Name with spaces and a very long tail that goes past sixty-three chars");
        assert!(v.len() <= 63 && v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)), "{v}");
        assert_eq!(image_repository("ghcr.io/x/platform-runtime:0.1.0"), "platform-runtime");
        assert_eq!(image_repository("localhost:5000/platform-runtime@sha256:ab"), "platform-runtime");
    }
}
