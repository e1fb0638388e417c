//! Manifests: the single truth of what runs. A DeployedModel's desired state is rendered into
//! typed Kubernetes objects ([`render`]); the `kubernetes` backend applies them and the `local`
//! backend interprets their pod template, so the YAML a user sees is what runs.

pub mod endpoint;
pub mod expand;
pub mod install;
pub mod quantity;
pub mod render;
pub mod spec;
pub mod validate;

pub use endpoint::{EndpointInput, RenderedEndpoint, endpoint_host, endpoint_object_name, render_endpoint};
pub use expand::{expand, expand_env};
pub use render::{
    GpuScheduling, IngressConfig, RenderConfig, RenderInput, Rendered, aip_env, default_health_route,
    default_predict_route, deployment_name, label_value, render, selector_labels,
};
pub use spec::{
    DEFAULT_PORT, EnvVar, ExecAction, GrpcAction, HttpGetAction, ModelContainerSpec, Port, Probe,
    TcpSocketAction, container_port,
};
pub use validate::{Object, Problem, Problems, diff, parse, validate_deployed_model, validate_endpoint};

use serde::Serialize;

/// Errors of the manifests module.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot write the manifest as YAML: {0}")]
    Yaml(String),
}

/// Anything that can be written as one YAML document (every `k8s-openapi` object).
pub trait ManifestObject {
    fn yaml_document(&self) -> Result<String, ManifestError>;
}

impl<T: Serialize> ManifestObject for T {
    fn yaml_document(&self) -> Result<String, ManifestError> {
        serde_norway::to_string(self).map_err(|e| ManifestError::Yaml(e.to_string()))
    }
}

/// Deterministic multi-document YAML: each object in the given order, separated by `---`.
/// Object fields come out in the order of their types and maps (labels, resources) sorted.
pub fn to_yaml(objects: &[&dyn ManifestObject]) -> Result<String, ManifestError> {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        let doc = object.yaml_document()?;
        out.push_str(&doc);
        if !doc.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

/// Compares `actual` with the golden file `tests/fixtures/{name}`; `UPDATE_GOLDEN=1` rewrites it.
#[cfg(test)]
pub(crate) fn golden(name: &str, actual: &str) {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
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
