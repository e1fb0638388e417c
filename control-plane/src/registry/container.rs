//! The rules for a model's serving container (`containerSpec`), checked at upload.

use api::{ModelContainerSpec, Probe};

use super::RegistryError;

/// The longest `deploymentTimeout` (Vertex's limit).
pub const MAX_DEPLOYMENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2 * 3600);

/// Checks the container of an upload; `None` (the prebuilt runtime) needs an artifact.
/// `is_runtime_image` says whether an image is the prebuilt runtime's.
pub fn check(
    spec: Option<&ModelContainerSpec>,
    artifact_uri: &str,
    is_runtime_image: impl Fn(&str) -> bool,
) -> Result<Option<ModelContainerSpec>, RegistryError> {
    let invalid = |m: String| Err(RegistryError::Invalid(m));
    if let Some(s) = spec {
        if s.image_uri.is_empty() {
            return invalid(
                "containerSpec.imageUri is required; omit containerSpec to use the prebuilt ONNX runtime"
                    .into(),
            );
        }
        if let Some(t) = s.deployment_timeout
            && t.get() > MAX_DEPLOYMENT_TIMEOUT
        {
            return invalid(format!("containerSpec.deploymentTimeout {t} is longer than the limit of 7200s"));
        }
        for p in s.ports.iter().chain(&s.grpc_ports) {
            if !(1..=65535).contains(&p.container_port) {
                return invalid(format!("containerSpec port {} is out of range 1-65535", p.container_port));
            }
        }
        for route in [&s.predict_route, &s.health_route] {
            if !route.is_empty() && !route.starts_with('/') {
                return invalid(format!("containerSpec route `{route}` must start with `/`"));
            }
        }
        for e in &s.env {
            if e.name.is_empty() || e.name.contains('=') {
                return invalid(format!("containerSpec env name `{}` is invalid", e.name));
            }
            if let Some(why) = crate::manifests::policy::env_name_problem(&e.name) {
                return invalid(format!("containerSpec env: {why}"));
            }
        }
    }
    let runtime = spec.is_none_or(|s| is_runtime_image(&s.image_uri));
    if runtime && artifact_uri.is_empty() {
        return invalid(
            "artifactUri is required for the prebuilt ONNX runtime: upload the .onnx file (POST .../artifacts) and pass its artifactUri".into(),
        );
    }
    Ok(spec.cloned())
}

/// Who uploads the spec, and what this platform allows.
#[derive(Debug, Clone, Copy)]
pub struct Uploader {
    /// Whether the caller is an admin of the model's project.
    pub admin: bool,
    /// `platform serve --allow-host-processes`.
    pub host_processes_allowed: bool,
}

/// Checks that what the container asks of the platform can be done: its probes, `grpcPorts`,
/// `sharedMemorySizeMb` and `hostProcess` either do what they say on every backend or are refused
/// here with the reason.
pub fn check_running(spec: &ModelContainerSpec, uploader: Uploader) -> Result<(), RegistryError> {
    let invalid = |m: String| Err(RegistryError::Invalid(m));
    if !spec.grpc_ports.is_empty() {
        return invalid(
            "containerSpec.grpcPorts is not supported: the platform forwards predictions to the container over \
             HTTP only; leave grpcPorts out and serve predictRoute over HTTP"
                .into(),
        );
    }
    if let Some(mb) = spec.shared_memory_size_mb
        && mb <= 0
    {
        return invalid(format!(
            "containerSpec.sharedMemorySizeMb is {mb}: give the size of /dev/shm in MB (above 0), or leave it out"
        ));
    }
    for (field, probe, single_success) in [
        ("startupProbe", &spec.startup_probe, true),
        ("healthProbe", &spec.health_probe, false),
        ("livenessProbe", &spec.liveness_probe, true),
    ] {
        if let Some(p) = probe {
            check_probe(&format!("containerSpec.{field}"), p, single_success)
                .map_err(RegistryError::Invalid)?;
        }
    }
    if spec.host_process {
        if !uploader.admin {
            return Err(RegistryError::Forbidden(
                "containerSpec.hostProcess runs a command on the platform's own machine, which only admins may \
                 ask for; leave it out to run the image in a container engine"
                    .into(),
            ));
        }
        if !uploader.host_processes_allowed {
            return invalid(
                "containerSpec.hostProcess: this platform does not run host processes; start `platform serve` \
                 with --allow-host-processes to allow them, or leave hostProcess out to run the image in a \
                 container engine"
                    .into(),
            );
        }
        if spec.command.is_empty() {
            return invalid(
                "containerSpec.hostProcess needs containerSpec.command: the program to run".into(),
            );
        }
    }
    Ok(())
}

/// A probe has exactly one handler that the platform can run, and sane timings (Kubernetes'
/// rules: liveness and startup probes succeed once).
fn check_probe(field: &str, p: &Probe, single_success: bool) -> Result<(), String> {
    let handlers = [p.exec.is_some(), p.http_get.is_some(), p.grpc.is_some(), p.tcp_socket.is_some()];
    match handlers.iter().filter(|h| **h).count() {
        0 => return Err(format!("{field} needs one of exec, httpGet or tcpSocket")),
        1 => {}
        _ => return Err(format!("{field} has more than one of exec, httpGet, grpc and tcpSocket; keep one")),
    }
    if p.grpc.is_some() {
        return Err(format!(
            "{field}.grpc is not supported: the platform probes over HTTP, TCP or exec; use httpGet, tcpSocket or exec"
        ));
    }
    if let Some(e) = &p.exec
        && e.command.is_empty()
    {
        return Err(format!("{field}.exec.command is empty: give the command to run in the container"));
    }
    let port_ok = |port: i32| (1..=65535).contains(&port);
    if let Some(h) = &p.http_get {
        if !h.path.is_empty() && !h.path.starts_with('/') {
            return Err(format!("{field}.httpGet.path `{}` must start with `/`", h.path));
        }
        if !h.scheme.is_empty()
            && !h.scheme.eq_ignore_ascii_case("http")
            && !h.scheme.eq_ignore_ascii_case("https")
        {
            return Err(format!("{field}.httpGet.scheme `{}` must be HTTP or HTTPS", h.scheme));
        }
        if let Some(port) = h.port
            && !port_ok(port)
        {
            return Err(format!("{field}.httpGet.port {port} is out of range 1-65535"));
        }
    }
    if let Some(t) = &p.tcp_socket
        && t.port != 0
        && !port_ok(t.port)
    {
        return Err(format!("{field}.tcpSocket.port {} is out of range 1-65535", t.port));
    }
    for (name, value, min) in [
        ("periodSeconds", p.period_seconds, 1),
        ("timeoutSeconds", p.timeout_seconds, 1),
        ("failureThreshold", p.failure_threshold, 1),
        ("successThreshold", p.success_threshold, 1),
        ("initialDelaySeconds", p.initial_delay_seconds, 0),
    ] {
        if let Some(v) = value
            && v < min
        {
            return Err(format!("{field}.{name} is {v}; it must be at least {min}"));
        }
    }
    if single_success && p.success_threshold.is_some_and(|v| v != 1) {
        return Err(format!("{field}.successThreshold must be 1: this probe passes on its first success"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use api::{ExecAction, GrpcAction, HttpGetAction, Port, TcpSocketAction};

    use super::*;

    const EDITOR: Uploader = Uploader { admin: false, host_processes_allowed: true };
    const ADMIN: Uploader = Uploader { admin: true, host_processes_allowed: true };

    fn error(spec: &ModelContainerSpec, who: Uploader) -> String {
        check_running(spec, who).unwrap_err().to_string()
    }

    #[test]
    fn probes_run_or_are_refused_with_the_reason() {
        let http = Probe {
            http_get: Some(HttpGetAction { path: "/ready".into(), ..Default::default() }),
            period_seconds: Some(5),
            ..Default::default()
        };
        let ok = ModelContainerSpec {
            health_probe: Some(http.clone()),
            startup_probe: Some(Probe {
                exec: Some(ExecAction { command: vec!["true".into()] }),
                failure_threshold: Some(30),
                ..Default::default()
            }),
            liveness_probe: Some(Probe {
                tcp_socket: Some(TcpSocketAction::default()),
                ..Default::default()
            }),
            ..spec("srv:1")
        };
        check_running(&ok, EDITOR).unwrap();
        let with = |f: &dyn Fn(&mut ModelContainerSpec)| {
            let mut s = ok.clone();
            f(&mut s);
            error(&s, EDITOR)
        };
        assert!(with(&|s| s.health_probe = Some(Probe::default())).contains("needs one of exec"));
        assert!(
            with(&|s| s.startup_probe.as_mut().unwrap().tcp_socket = Some(Default::default()))
                .contains("more than one")
        );
        assert!(
            with(
                &|s| s.health_probe = Some(Probe { grpc: Some(GrpcAction::default()), ..Default::default() })
            )
            .contains("grpc is not supported")
        );
        assert!(
            with(&|s| s.startup_probe.as_mut().unwrap().exec = Some(ExecAction::default()))
                .contains("exec.command is empty")
        );
        assert!(
            with(&|s| s.health_probe.as_mut().unwrap().http_get.as_mut().unwrap().path = "ready".into())
                .contains("must start with `/`")
        );
        assert!(with(&|s| s.health_probe.as_mut().unwrap().period_seconds = Some(0)).contains("at least 1"));
        assert!(
            with(&|s| s.liveness_probe.as_mut().unwrap().success_threshold = Some(2))
                .contains("successThreshold must be 1")
        );
        // Readiness may ask for several successes.
        let mut many = ok.clone();
        many.health_probe.as_mut().unwrap().success_threshold = Some(3);
        check_running(&many, EDITOR).unwrap();
    }

    #[test]
    fn grpc_ports_and_bad_shared_memory_are_refused() {
        let grpc = ModelContainerSpec { grpc_ports: vec![Port { container_port: 8500 }], ..spec("srv:1") };
        assert!(error(&grpc, EDITOR).contains("grpcPorts is not supported"));
        let shm = ModelContainerSpec { shared_memory_size_mb: Some(0), ..spec("srv:1") };
        assert!(error(&shm, EDITOR).contains("sharedMemorySizeMb is 0"));
        let shm = ModelContainerSpec { shared_memory_size_mb: Some(256), ..spec("srv:1") };
        check_running(&shm, EDITOR).unwrap();
    }

    #[test]
    fn host_processes_are_an_admins_choice_on_a_platform_that_allows_them() {
        let host =
            ModelContainerSpec { host_process: true, command: vec!["python3".into()], ..spec("srv:1") };
        assert!(matches!(check_running(&host, EDITOR), Err(RegistryError::Forbidden(_))));
        check_running(&host, ADMIN).unwrap();
        let off = Uploader { admin: true, host_processes_allowed: false };
        assert!(error(&host, off).contains("--allow-host-processes"));
        let no_command = ModelContainerSpec { command: vec![], ..host };
        assert!(error(&no_command, ADMIN).contains("needs containerSpec.command"));
    }

    fn spec(image: &str) -> ModelContainerSpec {
        ModelContainerSpec { image_uri: image.into(), ..Default::default() }
    }

    #[test]
    fn containers_are_checked() {
        let runtime = |i: &str| i.starts_with("platform-runtime");
        assert_eq!(check(None, "s3://b/m.onnx", runtime).unwrap(), None);
        assert!(check(None, "", runtime).unwrap_err().to_string().contains("artifactUri is required"));
        assert!(check(Some(&spec("platform-runtime:1")), "", runtime).is_err());
        assert!(check(Some(&spec("me/server:1")), "", runtime).unwrap().is_some());
        assert!(
            check(Some(&spec("")), "", runtime).unwrap_err().to_string().contains("imageUri is required")
        );
        let mut s = spec("me/server:1");
        s.predict_route = "predict".into();
        assert!(check(Some(&s), "", runtime).unwrap_err().to_string().contains("must start with `/`"));
        let mut s = spec("me/server:1");
        s.deployment_timeout = Some("3h".parse().unwrap());
        assert!(check(Some(&s), "", runtime).unwrap_err().to_string().contains("7200s"));
        let mut s = spec("me/server:1");
        s.ports = vec![api::Port { container_port: 70000 }];
        assert!(check(Some(&s), "", runtime).unwrap_err().to_string().contains("out of range"));
    }
}
