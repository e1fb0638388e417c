//! Reading a Deployment's pod template into what the local backend runs, with warnings for
//! everything it cannot honour.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, PodSpec, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::engine::{Engine, Mount};
use super::images::PullPolicy;
use crate::backend::{BackendError, Resources};
use crate::manifests::quantity;
use crate::manifests::{CONTAINER_NAME, GPU_RESOURCE, fnv1a, image_repository};

/// How a replica's container becomes a process.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Mode {
    /// The prebuilt runtime: `{exe} runtime [args]`.
    Runtime { exe: PathBuf },
    /// A container run by docker or podman, its port published on loopback.
    Engine { engine: Engine, image: String },
    /// The container's command run as a host process.
    Host,
}

/// Where an env value comes from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum EnvSource {
    Value(String),
    /// `fieldRef: metadata.name`: the replica id.
    PodName,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ProbeAction {
    Http { path: String, https: bool, headers: Vec<(String, String)> },
    Tcp,
    Exec(Vec<String>),
}

/// A probe with Kubernetes defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProbeSpec {
    pub action: ProbeAction,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

/// Where the container reads its artifact when it is a file of this machine (`file://`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Artifact {
    /// The file or directory on this machine.
    pub host: PathBuf,
    /// Where a container sees it (mounted read-only); `AIP_STORAGE_URI` says `file://` of this.
    pub container: String,
}

/// The directory artifacts are mounted under in containers (KServe's convention).
pub(crate) const ARTIFACT_MOUNT: &str = "/mnt/models";

/// Everything needed to start and watch one replica.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Launch {
    pub mode: Mode,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, EnvSource)>,
    pub namespace: String,
    pub container_port: u16,
    pub working_dir: Option<String>,
    pub readiness: Option<ProbeSpec>,
    pub liveness: Option<ProbeSpec>,
    pub startup: Option<ProbeSpec>,
    pub requests: Resources,
    pub limits: Resources,
    pub gpus: u32,
    pub grace: Duration,
    pub recreate: bool,
    pub drop_all_capabilities: bool,
    pub add_capabilities: Vec<String>,
    pub no_new_privileges: bool,
    pub read_only_root: bool,
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_non_root: bool,
    pub supplemental_groups: Vec<i64>,
    pub pull_policy: PullPolicy,
    /// `/dev/shm` of the container (the `sharedMemorySizeMb` volume).
    pub shm_bytes: Option<u64>,
    /// The container's other `emptyDir` volumes.
    pub mounts: Vec<Mount>,
    /// The model's artifact when it is a file of this machine.
    pub artifact: Option<Artifact>,
    /// `AIP_STORAGE_URI` is in an object store (`s3://`): the replica gets its credentials.
    pub object_store_artifact: bool,
    /// The Vertex accelerator type the machine type asks for (`AIP_ACCELERATOR_TYPE`).
    pub accelerator: Option<String>,
    /// Whether the replica's stdout and stderr are kept in its log (not when the pod template
    /// has [`crate::manifests::EXCLUDE_LOGS_ANNOTATION`]: `disableContainerLogging`).
    pub keep_output: bool,
}

impl Launch {
    /// The CPU and memory a replica may use: its limits, else its requests.
    pub fn limits_or_requests(&self) -> Resources {
        Resources {
            cpu_millis: if self.limits.cpu_millis > 0 {
                self.limits.cpu_millis
            } else {
                self.requests.cpu_millis
            },
            memory_bytes: if self.limits.memory_bytes > 0 {
                self.limits.memory_bytes
            } else {
                self.requests.memory_bytes
            },
        }
    }
}

/// The `--user` of a container, checked as the kubelet checks `runAsNonRoot`: a root user, or
/// a user name that cannot be checked, is refused.
pub(crate) fn container_user(
    launch: &Launch,
    image: &str,
    image_user: &str,
) -> Result<Option<String>, String> {
    let with_group = |uid: String| match launch.run_as_group {
        Some(g) => format!("{uid}:{g}"),
        None => uid,
    };
    if let Some(uid) = launch.run_as_user {
        if launch.run_as_non_root && uid == 0 {
            return Err(
                "securityContext.runAsUser is 0 and runAsNonRoot is true: give a non-root runAsUser".into()
            );
        }
        return Ok(Some(with_group(uid.to_string())));
    }
    let uid = image_user.split(':').next().unwrap_or("").trim();
    if launch.run_as_non_root {
        let fix = "build the image with a numeric non-root USER (for example `USER 65532`), or set \
                   securityContext.runAsUser in the manifest";
        match uid.parse::<u64>() {
            _ if uid.is_empty() || uid == "root" => {
                return Err(format!(
                    "image `{image}` runs as root (it sets no USER) and the pod's securityContext.runAsNonRoot \
                     is true: {fix}"
                ));
            }
            Ok(0) => {
                return Err(format!(
                    "image `{image}` runs as root (USER {image_user}) and the pod's securityContext.runAsNonRoot \
                     is true: {fix}"
                ));
            }
            Err(_) => {
                return Err(format!(
                    "image `{image}` runs as user `{image_user}`, a name that cannot be checked against \
                     runAsNonRoot: {fix}"
                ));
            }
            Ok(_) => {}
        }
    }
    Ok(launch.run_as_group.map(|_| with_group(if uid.is_empty() { "0".into() } else { uid.to_string() })))
}

/// What [`parse`] needs to know about this backend.
pub(crate) struct ParseContext<'a> {
    pub runtime_image: &'a str,
    pub runtime_exe: PathBuf,
    /// The usable container engine, or why there is none.
    pub engine: &'a Result<Engine, String>,
    /// Whether host processes may run at all.
    pub allow_host_processes: bool,
    /// The pod-template annotation that asks for a host process.
    pub host_process_annotation: &'a str,
}

/// The parsed deployment: name, replicas, template hash and how to run it.
pub(crate) struct Parsed {
    pub name: String,
    pub replicas: u32,
    pub template_hash: String,
    pub launch: Launch,
    pub warnings: Vec<String>,
}

/// Whether `name` may be a deployment name (and so a directory name): a DNS subdomain.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !name.contains("..")
}

/// Whether an image is the prebuilt runtime (its repository starts with the runtime's).
pub(crate) fn is_runtime_image(image: &str, runtime_image: &str) -> bool {
    let repo = image_repository(runtime_image);
    !repo.is_empty() && image_repository(image).starts_with(repo)
}

/// Whether the pod template asks to run its command as a host process.
fn wants_host_process(deployment: &Deployment, annotation: &str) -> bool {
    template_flag(deployment, annotation)
}

/// Whether the pod template's annotation `annotation` is `"true"`.
fn template_flag(deployment: &Deployment, annotation: &str) -> bool {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref()?.annotations.as_ref()?.get(annotation))
        .is_some_and(|v| v == "true")
}

/// Whether the image needs a container engine (it is neither the prebuilt runtime nor a host
/// process).
pub(crate) fn needs_engine(
    deployment: &Deployment,
    runtime_image: &str,
    host_process_annotation: &str,
) -> bool {
    let Some(container) = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.iter().find(|c| c.name == CONTAINER_NAME).or(p.containers.first()))
    else {
        return false;
    };
    !is_runtime_image(container.image.as_deref().unwrap_or(""), runtime_image)
        && !wants_host_process(deployment, host_process_annotation)
}

pub(crate) fn parse(deployment: &Deployment, ctx: &ParseContext<'_>) -> Result<Parsed, BackendError> {
    let mut w = Warnings::default();
    let name = deployment.metadata.name.clone().unwrap_or_default();
    if !valid_name(&name) {
        return Err(BackendError::Invalid(format!(
            "metadata.name `{name}` must be a DNS name (lowercase letters, digits, `-` and `.`)"
        )));
    }
    let namespace = deployment.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let spec = deployment.spec.as_ref().ok_or_else(|| BackendError::Invalid(format!("{name}: no spec")))?;
    let replicas = match spec.replicas {
        None => 1,
        Some(n) => u32::try_from(n)
            .map_err(|_| BackendError::Invalid(format!("{name}: spec.replicas {n} is negative")))?,
    };
    let pod = spec
        .template
        .spec
        .as_ref()
        .ok_or_else(|| BackendError::Invalid(format!("{name}: spec.template.spec is missing")))?;
    let template_json = serde_json::to_string(&spec.template)
        .map_err(|e| BackendError::Invalid(format!("{name}: pod template: {e}")))?;
    let template_hash = format!("{:016x}", fnv1a(template_json.as_bytes()));

    let container = pod
        .containers
        .iter()
        .find(|c| c.name == CONTAINER_NAME)
        .or(pod.containers.first())
        .ok_or_else(|| BackendError::Invalid(format!("{name}: the pod template has no containers")))?;
    pod_warnings(pod, container, &mut w);

    let image = container.image.clone().unwrap_or_default();
    let command = container.command.clone().unwrap_or_default();
    let args = container.args.clone().unwrap_or_default();
    let mode = if is_runtime_image(&image, ctx.runtime_image) {
        if !command.is_empty() {
            w.add(format!(
                "container `{}`: command {command:?} is ignored: the runtime image runs the platform's own runtime",
                container.name
            ));
        }
        Mode::Runtime { exe: ctx.runtime_exe.clone() }
    } else if wants_host_process(deployment, ctx.host_process_annotation) {
        if !ctx.allow_host_processes {
            return Err(BackendError::Invalid(format!(
                "{name}: the model runs its command as a host process, which this platform does not allow; \
                 an admin starts `platform serve --allow-host-processes` to allow it"
            )));
        }
        if command.is_empty() {
            return Err(BackendError::Invalid(format!(
                "{name}: a host process needs the container's command: the program to run"
            )));
        }
        Mode::Host
    } else {
        match ctx.engine {
            Ok(engine) if !image.is_empty() => Mode::Engine { engine: engine.clone(), image: image.clone() },
            Ok(_) => return Err(BackendError::Invalid(format!("{name}: the container has no image"))),
            Err(why) => {
                return Err(BackendError::Invalid(format!(
                    "{name}: image `{image}` runs in a container engine, and none is usable here ({why}); \
                     install Podman (as root: apt-get install podman runc) or Docker, or name one with \
                     --container-engine"
                )));
            }
        }
    };

    let ports = container.ports.clone().unwrap_or_default();
    let container_port = match ports.first() {
        None => 8080,
        Some(p) => u16::try_from(p.container_port).ok().filter(|p| *p > 0).ok_or_else(|| {
            BackendError::Invalid(format!("{name}: containerPort {} is out of range", p.container_port))
        })?,
    };
    if ports.len() > 1 {
        w.add("only the first container port is served; the others are ignored".into());
    }
    if ports.iter().any(|p| p.host_port.is_some()) {
        w.add("hostPort is ignored: each replica gets its own loopback port".into());
    }
    let port_name = ports.first().and_then(|p| p.name.clone());

    let mut env = Vec::new();
    for var in container.env.iter().flatten() {
        match (&var.value, &var.value_from) {
            (_, Some(from)) => {
                let field = from.field_ref.as_ref().map(|f| f.field_path.as_str());
                match field {
                    Some("metadata.name") => env.push((var.name.clone(), EnvSource::PodName)),
                    Some("metadata.namespace") => {
                        env.push((var.name.clone(), EnvSource::Value(namespace.clone())))
                    }
                    Some("status.podIP") | Some("status.hostIP") => {
                        env.push((var.name.clone(), EnvSource::Value("127.0.0.1".into())))
                    }
                    _ => w.add(format!(
                        "env {}: valueFrom is not supported by the local backend; it is left unset",
                        var.name
                    )),
                }
            }
            (value, None) => {
                env.push((var.name.clone(), EnvSource::Value(value.clone().unwrap_or_default())))
            }
        }
    }
    if container.env_from.as_ref().is_some_and(|e| !e.is_empty()) {
        w.add("envFrom (ConfigMaps, Secrets) is not supported by the local backend".into());
    }
    let value_of = |env: &[(String, EnvSource)], key: &str| {
        env.iter().rev().find(|(k, _)| k == key).and_then(|(_, v)| match v {
            EnvSource::Value(v) => Some(v.clone()),
            EnvSource::PodName => None,
        })
    };
    let storage = value_of(&env, "AIP_STORAGE_URI").unwrap_or_default();
    let artifact = local_artifact(&storage);
    if let (Some(a), Mode::Engine { .. }) = (&artifact, &mode) {
        // The container reads the artifact where it is mounted.
        for (k, v) in env.iter_mut() {
            if k == "AIP_STORAGE_URI" {
                *v = EnvSource::Value(format!("file://{}", a.container));
            }
        }
        w.add(format!(
            "AIP_STORAGE_URI: {} is mounted read-only in the container at {}",
            a.host.display(),
            a.container
        ));
    }
    let object_store_artifact = storage.starts_with("s3://");
    let accelerator = value_of(&env, "AIP_ACCELERATOR_TYPE").filter(|a| !a.is_empty());

    let probe = |p: &Option<Probe>, kind: &str, w: &mut Warnings| {
        p.as_ref().map(|p| probe_spec(p, kind, container_port, port_name.as_deref(), w)).transpose()
    };
    let readiness = probe(&container.readiness_probe, "readinessProbe", &mut w)?;
    let liveness = probe(&container.liveness_probe, "livenessProbe", &mut w)?;
    let startup = probe(&container.startup_probe, "startupProbe", &mut w)?;

    let res = container.resources.clone().unwrap_or_default();
    let read = |map: &Option<
        std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >|
     -> Result<Resources, BackendError> {
        let mut r = Resources::default();
        if let Some(map) = map {
            if let Some(q) = map.get("cpu") {
                r.cpu_millis = quantity::parse_cpu_millis(&q.0)
                    .map_err(|e| BackendError::Invalid(format!("{name}: resources cpu: {e}")))?;
            }
            if let Some(q) = map.get("memory") {
                r.memory_bytes = quantity::parse_bytes(&q.0)
                    .map_err(|e| BackendError::Invalid(format!("{name}: resources memory: {e}")))?;
            }
        }
        Ok(r)
    };
    let limits = read(&res.limits)?;
    let mut requests = read(&res.requests)?;
    // As in Kubernetes, a limit without a request is also the request.
    if requests.cpu_millis == 0 {
        requests.cpu_millis = limits.cpu_millis;
    }
    if requests.memory_bytes == 0 {
        requests.memory_bytes = limits.memory_bytes;
    }
    if requests == Resources::default() {
        w.add(
            "the container requests no CPU or memory: it is not counted against this machine's capacity"
                .into(),
        );
    }
    let gpu = res
        .limits
        .as_ref()
        .and_then(|m| m.get(GPU_RESOURCE))
        .or(res.requests.as_ref().and_then(|m| m.get(GPU_RESOURCE)));
    let gpus = match gpu {
        Some(q) => quantity::parse(&q.0).map(|g| g.ceil() as u32).unwrap_or(0),
        None => 0,
    };

    let grace_secs = pod.termination_grace_period_seconds.unwrap_or(30).max(0);
    let grace = Duration::from_secs(u64::try_from(grace_secs).unwrap_or(30));
    let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");

    let sc = container.security_context.clone().unwrap_or_default();
    let psc = pod.security_context.clone().unwrap_or_default();
    let caps = sc.capabilities.clone().unwrap_or_default();
    let drop_all = caps.drop.as_ref().is_some_and(|d| d.iter().any(|c| c == "ALL"));
    let add_capabilities = caps.add.clone().unwrap_or_default();
    let no_new_privileges = sc.allow_privilege_escalation == Some(false);
    let read_only_root = sc.read_only_root_filesystem == Some(true);
    let run_as_user = sc.run_as_user.or(psc.run_as_user);
    let run_as_group = sc.run_as_group.or(psc.run_as_group);
    let run_as_non_root = sc.run_as_non_root.or(psc.run_as_non_root) == Some(true);
    let supplemental_groups = psc.supplemental_groups.clone().unwrap_or_default();
    match &mode {
        Mode::Runtime { .. } if container.security_context.is_some() || pod.security_context.is_some() => {
            w.add(
                "securityContext is not enforced for the runtime's processes: they run as the platform's own \
                 user, confined (no access to its data directory, a cleared environment, the machine type's \
                 limits)"
                    .into(),
            );
        }
        Mode::Host if run_as_user.is_some() || run_as_group.is_some() || !supplemental_groups.is_empty() => {
            w.add(
                "securityContext runAsUser, runAsGroup and supplementalGroups are not honoured for host \
                 processes: they run as an unprivileged user of the platform's choosing"
                    .into(),
            );
        }
        _ => {}
    }
    if !matches!(mode, Mode::Engine { .. }) && !add_capabilities.is_empty() {
        w.add(
            "securityContext.capabilities.add is not honoured for processes: they get no capabilities".into(),
        );
    }
    if psc.fs_group.is_some() {
        w.add("securityContext.fsGroup is not honoured by the local backend".into());
    }
    if sc.privileged == Some(true) {
        w.add("privileged is ignored by the local backend".into());
    }
    if container.working_dir.is_some() && matches!(mode, Mode::Runtime { .. }) {
        w.add("workingDir is ignored for the runtime image".into());
    }
    let (shm_bytes, mounts) = volumes(pod, container, &mode, &mut w);
    if matches!(mode, Mode::Runtime { .. })
        && [&readiness, &liveness, &startup]
            .iter()
            .any(|p| p.as_ref().is_some_and(|p| matches!(p.action, ProbeAction::Exec(_))))
    {
        return Err(BackendError::Invalid(format!(
            "{name}: exec probes cannot run for the prebuilt runtime, which has no commands to run; use httpGet or tcpSocket"
        )));
    }
    let pull_policy = PullPolicy::of(container.image_pull_policy.as_deref(), &image);

    Ok(Parsed {
        name,
        replicas,
        template_hash,
        launch: Launch {
            mode,
            command,
            args,
            env,
            namespace,
            container_port,
            working_dir: container.working_dir.clone(),
            readiness,
            liveness,
            startup,
            requests,
            limits,
            gpus,
            grace,
            recreate,
            drop_all_capabilities: drop_all,
            add_capabilities,
            no_new_privileges,
            read_only_root,
            run_as_user,
            run_as_group,
            run_as_non_root,
            supplemental_groups,
            pull_policy,
            shm_bytes,
            mounts,
            artifact,
            object_store_artifact,
            accelerator,
            keep_output: !template_flag(deployment, crate::manifests::EXCLUDE_LOGS_ANNOTATION),
        },
        warnings: w.into_vec(),
    })
}

/// The artifact of `AIP_STORAGE_URI` when it is a file of this machine: a `file://` URI or a path.
fn local_artifact(uri: &str) -> Option<Artifact> {
    let path = uri.strip_prefix("file://").unwrap_or(uri);
    if !path.starts_with('/') {
        return None;
    }
    let host = PathBuf::from(path);
    let name = host.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    Some(Artifact { host, container: format!("{ARTIFACT_MOUNT}/{name}") })
}

/// The pod's volumes as the local backend runs them: `emptyDir`s become the container's tmpfs
/// or scratch volumes (`/dev/shm` of `medium: Memory` its shared memory); processes have none.
fn volumes(pod: &PodSpec, container: &Container, mode: &Mode, w: &mut Warnings) -> (Option<u64>, Vec<Mount>) {
    let (mut shm, mut mounts) = (None, Vec::new());
    let declared = pod.volumes.clone().unwrap_or_default();
    let used = container.volume_mounts.clone().unwrap_or_default();
    if declared.is_empty() && used.is_empty() {
        return (shm, mounts);
    }
    if !matches!(mode, Mode::Engine { .. }) {
        let what = if used.iter().any(|m| m.mount_path == "/dev/shm") {
            "volumes are not honoured for processes (sharedMemorySizeMb: they use this machine's /dev/shm)"
        } else {
            "volumes are not honoured for processes"
        };
        w.add(what.into());
        return (shm, mounts);
    }
    for m in &used {
        let Some(v) = declared.iter().find(|v| v.name == m.name) else {
            w.add(format!("volumeMount {} names no volume; it is left out", m.name));
            continue;
        };
        let Some(dir) = &v.empty_dir else {
            w.add(format!("volume {}: only emptyDir volumes are honoured by the local backend", v.name));
            continue;
        };
        let bytes = dir.size_limit.as_ref().and_then(|q| quantity::parse_bytes(&q.0).ok());
        let memory = dir.medium.as_deref() == Some("Memory");
        if memory && m.mount_path == "/dev/shm" {
            shm = bytes.or(Some(64 << 20));
        } else if memory {
            mounts.push(Mount::Tmpfs { container: m.mount_path.clone(), bytes });
        } else {
            mounts.push(Mount::Scratch { container: m.mount_path.clone() });
        }
    }
    (shm, mounts)
}

fn probe_spec(
    p: &Probe,
    kind: &str,
    container_port: u16,
    port_name: Option<&str>,
    w: &mut Warnings,
) -> Result<ProbeSpec, BackendError> {
    let check_port = |port: &IntOrString, w: &mut Warnings| {
        match port {
        IntOrString::Int(n) if *n == i32::from(container_port) => {}
        IntOrString::String(s) if Some(s.as_str()) == port_name || s.parse::<u16>() == Ok(container_port) => {}
        other => w.add(format!(
            "{kind}: port {} is not the container port {container_port}; the local backend probes the replica's port",
            match other {
                IntOrString::Int(n) => n.to_string(),
                IntOrString::String(s) => s.clone(),
            }
        )),
    }
    };
    let action = if let Some(h) = &p.http_get {
        check_port(&h.port, w);
        if h.host.is_some() {
            w.add(format!("{kind}: httpGet.host is ignored; replicas are probed on loopback"));
        }
        let https = h.scheme.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("https"));
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        let headers = h.http_headers.iter().flatten().map(|x| (x.name.clone(), x.value.clone())).collect();
        ProbeAction::Http {
            path: if path.starts_with('/') { path } else { format!("/{path}") },
            https,
            headers,
        }
    } else if let Some(t) = &p.tcp_socket {
        check_port(&t.port, w);
        ProbeAction::Tcp
    } else if let Some(e) = &p.exec {
        let command = e.command.clone().unwrap_or_default();
        if command.is_empty() {
            return Err(BackendError::Invalid(format!("{kind}: exec probe without a command")));
        }
        ProbeAction::Exec(command)
    } else if p.grpc.is_some() {
        w.add(format!("{kind}: gRPC probes are not supported by the local backend; it checks that the port accepts connections"));
        ProbeAction::Tcp
    } else {
        return Err(BackendError::Invalid(format!(
            "{kind}: the probe has no handler (httpGet, tcpSocket, exec or grpc)"
        )));
    };
    let secs =
        |v: Option<i32>, default: i32, min: i32| Duration::from_secs(v.unwrap_or(default).max(min) as u64);
    let count = |v: Option<i32>, default: i32| v.unwrap_or(default).max(1) as u32;
    Ok(ProbeSpec {
        action,
        initial_delay: secs(p.initial_delay_seconds, 0, 0),
        period: secs(p.period_seconds, 10, 1),
        timeout: secs(p.timeout_seconds, 1, 1),
        success_threshold: count(p.success_threshold, 1),
        failure_threshold: count(p.failure_threshold, 3),
    })
}

fn pod_warnings(pod: &PodSpec, run: &Container, w: &mut Warnings) {
    let ignored: Vec<&str> =
        pod.containers.iter().filter(|c| c.name != run.name).map(|c| c.name.as_str()).collect();
    if !ignored.is_empty() {
        w.add(format!(
            "only container `{}` runs on the local backend; containers {} are ignored",
            run.name,
            ignored.join(", ")
        ));
    }
    let mut unsupported = Vec::new();
    if pod.init_containers.as_ref().is_some_and(|v| !v.is_empty()) {
        unsupported.push("initContainers");
    }
    if pod.node_selector.as_ref().is_some_and(|v| !v.is_empty()) || pod.node_name.is_some() {
        unsupported.push("nodeSelector");
    }
    if pod.affinity.is_some() {
        unsupported.push("affinity");
    }
    if pod.tolerations.as_ref().is_some_and(|v| !v.is_empty()) {
        unsupported.push("tolerations");
    }
    if pod.topology_spread_constraints.as_ref().is_some_and(|v| !v.is_empty()) {
        unsupported.push("topologySpreadConstraints");
    }
    if pod.host_network == Some(true) || pod.host_pid == Some(true) || pod.host_ipc == Some(true) {
        unsupported.push("hostNetwork/hostPID/hostIPC");
    }
    if pod.image_pull_secrets.as_ref().is_some_and(|v| !v.is_empty()) {
        unsupported.push("imagePullSecrets");
    }
    if pod.runtime_class_name.is_some() {
        unsupported.push("runtimeClassName");
    }
    if pod.priority_class_name.is_some() {
        unsupported.push("priorityClassName");
    }
    if pod.readiness_gates.as_ref().is_some_and(|v| !v.is_empty()) {
        unsupported.push("readinessGates");
    }
    if pod.ephemeral_containers.as_ref().is_some_and(|v| !v.is_empty()) {
        unsupported.push("ephemeralContainers");
    }
    // A preStop sleep is there to take the pod out of the Service's endpoints before SIGTERM;
    // here the replica leaves the gateway's routing table before it is stopped anyway.
    let drain_only = run.lifecycle.as_ref().is_some_and(|l| {
        l.post_start.is_none()
            && l.stop_signal.is_none()
            && l.pre_stop
                .as_ref()
                .is_none_or(|h| h.exec.is_none() && h.http_get.is_none() && h.tcp_socket.is_none())
    });
    if run.lifecycle.is_some() && !drain_only {
        unsupported.push("lifecycle hooks");
    }
    if !unsupported.is_empty() {
        w.add(format!("not honoured by the local backend: {}", unsupported.join(", ")));
    }
}

/// Deduplicated warnings in the order they were found.
#[derive(Default)]
struct Warnings {
    seen: BTreeSet<String>,
    list: Vec<String>,
}

impl Warnings {
    fn add(&mut self, w: String) {
        if self.seen.insert(w.clone()) {
            self.list.push(w);
        }
    }

    fn into_vec(self) -> Vec<String> {
        self.list
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ExecAction, Lifecycle, LifecycleHandler, SleepAction};

    use super::*;

    #[test]
    fn a_pre_stop_sleep_is_honoured_by_the_drain_other_hooks_are_not() {
        let warned = |pre_stop: LifecycleHandler| {
            let lifecycle = Lifecycle { pre_stop: Some(pre_stop), ..Default::default() };
            let run = Container { lifecycle: Some(lifecycle), ..Default::default() };
            let mut w = Warnings::default();
            pod_warnings(&PodSpec::default(), &run, &mut w);
            w.list.iter().any(|m| m.contains("lifecycle hooks"))
        };
        let sleep = LifecycleHandler { sleep: Some(SleepAction { seconds: 10 }), ..Default::default() };
        assert!(!warned(sleep), "the replica leaves the routing table before it is stopped");
        let exec = ExecAction { command: Some(vec!["sh".into()]) };
        assert!(warned(LifecycleHandler { exec: Some(exec), ..Default::default() }));
    }
}
