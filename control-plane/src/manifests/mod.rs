//! Manifests: the single truth of what runs. A DeployedModel's desired state is rendered into
//! typed Kubernetes objects ([`render`]); the `kubernetes` backend applies them and the `local`
//! backend interprets their pod template, so the YAML a user sees is what runs.
//!
//! - What is rendered: [`deployed_model`] (Deployment, Service, HPA, PDB of a deployed model),
//!   [`exposure`] (an endpoint's Ingress or NetworkPolicy), [`install`] (the platform itself),
//!   each from [`config`], [`naming`] and the `AIP_*` [`contract`], built from one builder per
//!   object shape in [`objects`].
//! - What an edit may be: [`parse`] into typed objects, [`ownership`] (it stays its owner's),
//!   [`policy`] (security), composed by [`validate`]; [`diff`] shows what it changes.

pub mod config;
pub mod contract;
pub mod deployed_model;
pub mod diff;
pub mod expand;
pub mod exposure;
pub mod install;
pub mod naming;
pub mod objects;
pub mod ownership;
pub mod parse;
pub mod policy;
pub mod quantity;
pub mod spec;
pub mod validate;

pub use config::{GATEWAY_NAME, GPU_RESOURCE, IngressConfig, Placement, RenderConfig};
pub use contract::{aip_env, default_health_route, default_predict_route};
pub use deployed_model::{
    CONTAINER_NAME, EXCLUDE_LOGS_ANNOTATION, HOST_PROCESS_ANNOTATION, RenderInput, Rendered, render,
    selector_labels,
};
pub use diff::diff;
pub use expand::{expand, expand_env};
pub use exposure::{EndpointInput, RenderedEndpoint, endpoint_host, render_endpoint};
pub use naming::{deployment_name, endpoint_object_name, fnv1a, image_repository, label_value, short_hash};
pub use parse::{Object, Problem, Problems, parse};
pub use spec::{
    DEFAULT_PORT, EnvVar, ExecAction, GrpcAction, HttpGetAction, ModelContainerSpec, Port, Probe,
    TcpSocketAction, container_port,
};
pub use validate::{validate_deployed_model, validate_endpoint};

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
