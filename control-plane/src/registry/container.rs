//! The rules for a model's serving container (`containerSpec`), checked at upload.

use api::ModelContainerSpec;

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

#[cfg(test)]
mod tests {
    use super::*;

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
