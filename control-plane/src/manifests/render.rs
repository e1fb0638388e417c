//! Rendering: a DeployedModel's desired state -> typed Kubernetes objects. Pure and
//! deterministic: the same input always gives the same objects (and the same YAML).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar as K8sEnvVar, ExecAction,
    GRPCAction, HTTPGetAction, HTTPHeader, PodSecurityContext, PodSpec, PodTemplateSpec, Probe as K8sProbe,
    ResourceRequirements, SeccompProfile, SecurityContext, Service, ServicePort, ServiceSpec,
    TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::spec::{ModelContainerSpec, Probe, container_port};
use crate::machine::MachineType;

/// Name of the serving container in every rendered pod.
pub const CONTAINER_NAME: &str = "model";
/// The resource name Kubernetes' NVIDIA device plugin exposes.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";

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
}

impl Default for RenderConfig {
    fn default() -> Self {
        RenderConfig {
            namespace: "default".into(),
            runtime_image: format!("platform-runtime:{}", env!("CARGO_PKG_VERSION")),
            label_prefix: "platform.dev".into(),
            managed_by: "platform".into(),
            image_pull_policy: "IfNotPresent".into(),
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
}

impl Rendered {
    /// Multi-document YAML of the objects, Deployment first.
    pub fn to_yaml(&self) -> Result<String, super::ManifestError> {
        super::to_yaml(&[&self.deployment, &self.service])
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
fn dns_part(s: &str) -> String {
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
    if let Some(acc) = &input.machine.accelerator
        && acc.accelerator_type.starts_with("NVIDIA")
    {
        resources.insert(GPU_RESOURCE.to_string(), Quantity(acc.count.to_string()));
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
        termination_grace_period_seconds: Some(30),
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
            replicas: Some(i32::try_from(input.min_replicas).unwrap_or(i32::MAX)),
            selector: LabelSelector { match_labels: Some(selector.clone()), match_expressions: None },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            progress_deadline_seconds: spec.deployment_timeout.as_deref().and_then(duration_seconds),
            revision_history_limit: Some(3),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..Default::default() }),
                spec: Some(pod_spec),
            },
            ..Default::default()
        }),
        status: None,
    };

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

    Rendered { deployment, service }
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

/// Seconds of a `google.protobuf.Duration` string (`"1800s"`, `"2.5s"`), rounded up.
fn duration_seconds(d: &str) -> Option<i32> {
    let secs: f64 = d.trim().strip_suffix('s')?.parse().ok()?;
    if !secs.is_finite() || secs <= 0.0 {
        return None;
    }
    let secs = secs.ceil();
    if secs > f64::from(i32::MAX) { None } else { Some(secs as i32) }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::machine::Catalog;
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
                deployment_timeout: Some("1800s".into()),
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
        }
    }

    fn golden(name: &str, actual: &str) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
        if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
            std::fs::write(&path, actual).unwrap();
            return;
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1 to create it", path.display()));
        assert!(
            expected == actual,
            "{} differs from the rendering (run with UPDATE_GOLDEN=1 to accept):\n{actual}",
            path.display()
        );
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
