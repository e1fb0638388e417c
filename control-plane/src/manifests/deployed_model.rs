//! Rendering of a DeployedModel: its Deployment and Service, a HorizontalPodAutoscaler when it
//! scales on CPU or the GPU duty cycle and a PodDisruptionBudget from two replicas. Pure and deterministic: the same
//! input always gives the same objects (and the same YAML).

use std::collections::BTreeMap;

use api::{AutoscalingMetricSpec, METRIC_CPU, METRIC_GPU};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar as K8sEnvVar, Lifecycle, LifecycleHandler, PodSpec, Service,
    SleepAction, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::config::{GPU_RESOURCE, RenderConfig, is_nvidia};
use super::contract::{aip_env, health_route};
use super::naming::{deployment_name, label_value};
use super::objects::deployment::PodTemplate;
use super::objects::{autoscaler, container, deployment, disruption, probes, security, service};
use super::spec::{ModelContainerSpec, container_port};
use crate::machine::MachineType;

/// Name of the serving container in every rendered pod.
pub const CONTAINER_NAME: &str = "model";
/// The pod-template annotation (`{prefix}/host-process: "true"`) of a model whose command runs
/// as a host process on the local backend (`containerSpec.hostProcess`).
pub const HOST_PROCESS_ANNOTATION: &str = "host-process";
/// The pod-template annotation (`"true"`) of a DeployedModel with `disableContainerLogging`:
/// its stdout and stderr are not kept. Fluent Bit (`K8S-Logging.Exclude On`) and the log shippers
/// that follow its convention skip the pod on Kubernetes; the local backend discards the lines.
pub const EXCLUDE_LOGS_ANNOTATION: &str = "fluentbit.io/exclude";
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
    /// CPU and GPU duty cycle are delegated to a HorizontalPodAutoscaler; the others are the
    /// platform's.
    pub autoscaling: Vec<AutoscalingMetricSpec>,
    /// `dedicatedResources.spot`: run on the installation's spot nodes.
    pub spot: bool,
    /// `serviceAccount`: the service account the pods run as (the namespace's default when None).
    pub service_account: Option<String>,
    /// `disableContainerLogging`: the replicas' stdout and stderr are not kept.
    pub disable_container_logging: bool,
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

/// Renders a DeployedModel into its Deployment and Service (and HPA and PDB).
pub fn render(input: &RenderInput, cfg: &RenderConfig) -> Rendered {
    let name = deployment_name(&input.endpoint_id, &input.deployed_model_id);
    let labels = labels(input, cfg, &name);
    let selector = selector_labels(input, cfg);
    let metadata = ObjectMeta {
        name: Some(name.clone()),
        namespace: Some(cfg.namespace.clone()),
        labels: Some(labels.clone()),
        annotations: Some(annotations(input, cfg)),
        ..Default::default()
    };

    let annotations: BTreeMap<String, String> = [
        input.container.host_process.then(|| cfg.label(HOST_PROCESS_ANNOTATION)),
        input.disable_container_logging.then(|| EXCLUDE_LOGS_ANNOTATION.to_string()),
    ]
    .into_iter()
    .flatten()
    .map(|key| (key, "true".to_string()))
    .collect();
    let annotations = (!annotations.is_empty()).then_some(annotations);
    let template = PodTemplate { labels, annotations, spec: pod_spec(input, cfg) };
    let mut deployment = deployment::rolling(
        metadata.clone(),
        Some(replicas_i32(input.min_replicas)),
        selector.clone(),
        template,
    );
    if let Some(spec) = deployment.spec.as_mut() {
        spec.progress_deadline_seconds =
            input.container.deployment_timeout.map(deadline_seconds).filter(|s| *s > 0);
        spec.revision_history_limit = Some(3);
    }

    let metrics: Vec<_> = percent_target(&input.autoscaling, METRIC_CPU)
        .map(autoscaler::cpu_metric)
        .into_iter()
        .chain(percent_target(&input.autoscaling, METRIC_GPU).map(autoscaler::gpu_duty_cycle_metric))
        .collect();
    let hpa = (!metrics.is_empty()).then(|| {
        autoscaler::scale(
            metadata.clone(),
            &name,
            // An HPA cannot scale to zero (that needs an alpha feature gate): at least one.
            replicas_i32(input.min_replicas.max(1)),
            replicas_i32(input.max_replicas.max(input.min_replicas).max(1)),
            metrics,
        )
    });
    let pdb =
        (input.min_replicas >= 2).then(|| disruption::one_at_a_time(metadata.clone(), selector.clone()));
    let service = service::cluster_ip(metadata, selector, IntOrString::Int(container_port(&input.container)));
    Rendered { deployment, service, hpa, pdb }
}

/// The pod of a DeployedModel: the serving container, where it may run and as whom.
fn pod_spec(input: &RenderInput, cfg: &RenderConfig) -> PodSpec {
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

    let mut env: Vec<K8sEnvVar> =
        aip_env(input).iter().map(|(name, value)| container::env(name, value)).collect();
    env.extend(spec.env.iter().map(|v| container::env(&v.name, &v.value)));
    if image == cfg.runtime_image {
        env.extend(cfg.artifact_fetch.env().into_iter().map(|(name, value)| container::env(name, value)));
    }

    let readiness = match &spec.health_probe {
        Some(p) => probes::from_vertex(p, port),
        // Vertex: ready = 200 within 10 s; four failures 10 s apart take it out of routing.
        None => k8s_openapi::api::core::v1::Probe {
            period_seconds: Some(10),
            timeout_seconds: Some(10),
            failure_threshold: Some(4),
            success_threshold: Some(1),
            ..probes::http_get(&health_route(input), IntOrString::Int(port))
        },
    };
    let liveness = match &spec.liveness_probe {
        Some(p) => probes::from_vertex(p, port),
        // Vertex: TCP connect, 4 attempts 10 s apart, then restart.
        None => k8s_openapi::api::core::v1::Probe {
            period_seconds: Some(10),
            timeout_seconds: Some(1),
            failure_threshold: Some(4),
            ..probes::tcp_socket(port)
        },
    };

    let mut devices = BTreeMap::new();
    let mut placement = Vec::new();
    if let Some(acc) = &input.machine.accelerator
        && is_nvidia(&acc.accelerator_type)
    {
        devices.insert(GPU_RESOURCE.to_string(), acc.count.to_string());
        let accelerator = acc.accelerator_type.to_ascii_lowercase().replace('_', "-");
        let selector =
            cfg.gpu.node_selector.iter().map(|(k, v)| (k.clone(), v.replace("{accelerator}", &accelerator)));
        placement.push((selector.collect::<BTreeMap<_, _>>(), cfg.gpu.tolerations.clone()));
    }
    if input.spot {
        placement.push((cfg.spot.node_selector.clone(), cfg.spot.tolerations.clone()));
    }
    let node_selector: BTreeMap<String, String> = placement.iter().flat_map(|(s, _)| s.clone()).collect();
    let tolerations: Vec<_> = placement.into_iter().flat_map(|(_, t)| t).collect();

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
        env_from: cfg
            .artifact_credentials_secret
            .as_ref()
            .map(|secret| vec![container::secret_env(secret, true)]),
        ports: Some(vec![container::http_port(port)]),
        readiness_probe: Some(readiness),
        liveness_probe: Some(liveness),
        startup_probe: spec.startup_probe.as_ref().map(|p| probes::from_vertex(p, port)),
        resources: Some(container::guaranteed(
            &input.machine.cpu_quantity(),
            &input.machine.memory_quantity(),
            devices,
        )),
        security_context: Some(security::restricted_container(false)),
        volume_mounts: mounts,
        // The pod leaves the Service's endpoints while it sleeps; SIGTERM comes after. The
        // native sleep action needs no shell in the image (the runtime image has none).
        lifecycle: (cfg.pre_stop_sleep_seconds > 0).then(|| Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction { seconds: cfg.pre_stop_sleep_seconds }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };

    PodSpec {
        containers: vec![container],
        // The grace period runs from the start of the preStop hook: the sleep, then the drain.
        termination_grace_period_seconds: Some(
            cfg.pre_stop_sleep_seconds.max(0) + cfg.termination_grace_period_seconds,
        ),
        node_selector: (!node_selector.is_empty()).then_some(node_selector),
        tolerations: (!tolerations.is_empty()).then_some(tolerations),
        service_account_name: input.service_account.clone(),
        // Models get no Kubernetes API token, whichever account they run as: the account is for
        // the cloud identity it is bound to (workload identity), not for the cluster's API.
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        security_context: Some(security::restricted_pod(None)),
        volumes,
        ..Default::default()
    }
}

/// The target (percent) of a utilisation metric the DeployedModel autoscales on.
fn percent_target(metrics: &[AutoscalingMetricSpec], name: &str) -> Option<i32> {
    metrics
        .iter()
        .find(|m| m.metric_name == name)
        .map(|m| if m.target > 0 { m.target.min(100) } else { DEFAULT_CPU_TARGET })
}

fn replicas_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn non_empty(v: Vec<String>) -> Option<Vec<String>> {
    if v.is_empty() { None } else { Some(v) }
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
    use crate::manifests::spec::{EnvVar, HttpGetAction as VertexHttpGet, Port, Probe};

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
            spot: false,
            service_account: None,
            disable_container_logging: false,
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
            spot: false,
            service_account: None,
            disable_container_logging: false,
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

        // The GPU duty cycle is a per-pod metric from the DCGM exporter, next to CPU.
        input.autoscaling = vec![
            AutoscalingMetricSpec { metric_name: METRIC_CPU.into(), target: 80 },
            AutoscalingMetricSpec { metric_name: METRIC_GPU.into(), target: 70 },
        ];
        let metrics = render(&input, &RenderConfig::default()).hpa.unwrap().spec.unwrap().metrics.unwrap();
        assert_eq!(metrics.len(), 2);
        let pods = metrics[1].pods.as_ref().unwrap();
        assert_eq!((metrics[1].type_.as_str(), pods.metric.name.as_str()), ("Pods", "DCGM_FI_DEV_GPU_UTIL"));
        assert_eq!(pods.target.average_value, Some(Quantity("70".into())));
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
    fn a_relaxed_fetch_policy_reaches_the_runtime_and_only_the_runtime() {
        let names = |r: &Rendered| env_of(r).into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        let strict = names(&render(&runtime_input(), &RenderConfig::default()));
        assert!(!strict.iter().any(|n| n.starts_with("PLATFORM_ARTIFACT_")), "{strict:?}");
        let artifact_fetch = runtime::fetch_policy::FetchPolicy { allow_http: true, allow_private: false };
        let cfg = RenderConfig { artifact_fetch, ..RenderConfig::default() };
        let env = env_of(&render(&runtime_input(), &cfg));
        assert!(env.contains(&("PLATFORM_ARTIFACT_ALLOW_HTTP".into(), "true".into())), "{env:?}");
        assert!(!env.iter().any(|(n, _)| n == "PLATFORM_ARTIFACT_ALLOW_PRIVATE_NETWORKS"));
        let custom = names(&render(&custom_input(), &cfg));
        assert!(
            !custom.iter().any(|n| n.starts_with("PLATFORM_ARTIFACT_")),
            "a custom server fetches its own way"
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
        assert_eq!(pod(&r).termination_grace_period_seconds, Some(100), "the preStop sleep, then the drain");
    }

    #[test]
    fn a_stopping_pod_sleeps_out_of_the_endpoints_before_sigterm() {
        let r = render(&runtime_input(), &RenderConfig::default());
        let hook = container(&r).lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()).unwrap();
        assert_eq!(hook.sleep.as_ref().map(|s| s.seconds), Some(10));
        assert!(hook.exec.is_none(), "no shell needed: the runtime image has none");
        assert_eq!(pod(&r).termination_grace_period_seconds, Some(70), "10 s sleep + 60 s predict timeout");
        let without = RenderConfig { pre_stop_sleep_seconds: 0, ..RenderConfig::default() };
        let r = render(&runtime_input(), &without);
        assert!(container(&r).lifecycle.is_none());
        assert_eq!(pod(&r).termination_grace_period_seconds, Some(60));
    }

    #[test]
    fn deployment_timeout_in_any_accepted_form_sets_the_progress_deadline() {
        // The API accepts "30m" (humantime) as well as Google's "1800s": both must render.
        for (timeout, seconds) in [
            ("1800s", Some(1800)),
            ("30m", Some(1800)),
            ("2.5s", Some(3)),
            ("1h 30m", Some(5400)),
            ("0s", None),
        ] {
            let mut input = custom_input();
            input.container.deployment_timeout = Some(timeout.parse().unwrap());
            let r = render(&input, &RenderConfig::default());
            assert_eq!(r.deployment.spec.unwrap().progress_deadline_seconds, seconds, "{timeout}");
        }
    }

    #[test]
    fn spot_service_account_and_disabled_logging_reach_the_pod() {
        let mut input = custom_input();
        input.spot = true;
        input.service_account = Some("model-reader".into());
        let mut cfg = RenderConfig::default();
        cfg.gpu.node_selector =
            BTreeMap::from([("cloud.google.com/gke-accelerator".to_string(), "{accelerator}".to_string())]);
        let r = render(&input, &cfg);
        let p = pod(&r);
        assert_eq!(p.service_account_name.as_deref(), Some("model-reader"));
        assert_eq!(p.automount_service_account_token, Some(false), "an account, still no API token");
        let selector = p.node_selector.as_ref().unwrap();
        assert_eq!(selector["cloud.google.com/gke-spot"], "true");
        assert_eq!(selector["cloud.google.com/gke-accelerator"], "nvidia-tesla-t4");
        let keys: Vec<_> = p.tolerations.as_ref().unwrap().iter().map(|t| t.key.clone().unwrap()).collect();
        assert_eq!(keys, [GPU_RESOURCE, "cloud.google.com/gke-spot"]);
        let on_demand = render(&runtime_input(), &cfg);
        assert!(pod(&on_demand).node_selector.is_none() && pod(&on_demand).service_account_name.is_none());
        let annotations =
            |r: &Rendered| r.deployment.spec.as_ref().unwrap().template.metadata.clone().unwrap().annotations;
        assert_eq!(annotations(&on_demand), None);
        input.disable_container_logging = true;
        let quiet = annotations(&render(&input, &RenderConfig::default())).unwrap();
        assert_eq!(quiet.get(EXCLUDE_LOGS_ANNOTATION).map(String::as_str), Some("true"));
    }

    #[test]
    fn rendered_pods_meet_the_policy_they_are_checked_against() {
        for input in [runtime_input(), custom_input()] {
            let r = render(&input, &RenderConfig::default());
            let problems = crate::manifests::policy::pod_problems(pod(&r), Some(pod(&r)));
            assert!(problems.is_empty(), "{problems:#?}");
        }
    }
}
