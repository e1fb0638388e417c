//! What a deployed model should run: its rendered manifests, from its spec and model version.
//! Shared by the controller (which applies them) and the manifests service (which shows them
//! and validates edits against them). Pure.

use super::compute::{self, Compute, ComputeError};
use crate::machine::Catalog;
use crate::manifests::config::PlacementError;
use crate::manifests::{self, ManifestError, RenderConfig, RenderInput, Rendered};
use crate::store::{DeployedModel, ModelVersion};

/// A deployed model's rendering.
#[derive(Debug, Clone)]
pub struct Rendering {
    pub input: RenderInput,
    pub compute: Compute,
    pub rendered: Rendered,
    /// `rendered` as multi-document YAML (what a rendered revision holds).
    pub manifests: String,
}

/// Why a deployed model cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderingError {
    #[error(transparent)]
    Compute(#[from] ComputeError),
    #[error(transparent)]
    Placement(#[from] PlacementError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

impl api::Coded for RenderingError {
    fn code(&self) -> api::Code {
        match self {
            RenderingError::Compute(e) => e.code(),
            RenderingError::Placement(e) => e.code(),
            RenderingError::Manifest(_) => api::Code::Internal,
        }
    }
}

/// Renders a deployed model of `version`.
pub fn render(
    dm: &DeployedModel,
    version: &ModelVersion,
    catalog: &Catalog,
    config: &RenderConfig,
) -> Result<Rendering, RenderingError> {
    let compute = compute::resolve(&dm.spec, catalog)?;
    let input = RenderInput {
        project: dm.project.clone(),
        location: dm.location.clone(),
        endpoint_id: dm.endpoint_id.clone(),
        deployed_model_id: dm.deployed_model_id.clone(),
        model_id: dm.model_id.clone(),
        model_version_id: dm.version_id.to_string(),
        display_name: dm.display_name.clone(),
        container: version.container_spec.clone().unwrap_or_default(),
        artifact_uri: Some(version.artifact_uri.clone()).filter(|u| !u.is_empty()),
        machine: compute.machine.clone(),
        min_replicas: compute.min_replicas,
        max_replicas: compute.max_replicas,
        autoscaling: dm
            .spec
            .dedicated_resources
            .as_ref()
            .map(|d| d.autoscaling_metric_specs.clone())
            .unwrap_or_default(),
        spot: dm.spec.dedicated_resources.as_ref().is_some_and(|d| d.spot),
        service_account: Some(dm.spec.service_account.clone()).filter(|s| !s.is_empty()),
        disable_container_logging: dm.spec.disable_container_logging,
    };
    config.check_placement(&input.machine, input.spot, input.service_account.as_deref())?;
    let rendered = manifests::render(&input, config);
    let manifests = rendered.to_yaml()?;
    Ok(Rendering { input, compute, rendered, manifests })
}

/// The serving container of `objects`.
fn serving_container(objects: &Rendered) -> Option<&k8s_openapi::api::core::v1::Container> {
    objects
        .deployment
        .spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == manifests::CONTAINER_NAME)
}

/// The value of the serving container's variable `name`, if set.
fn container_env<'a>(container: &'a k8s_openapi::api::core::v1::Container, name: &str) -> Option<&'a str> {
    container.env.as_ref()?.iter().find(|e| e.name == name)?.value.as_deref()
}

/// The predict route the serving container of `objects` listens on: its `AIP_PREDICT_ROUTE`.
pub fn predict_route(objects: &Rendered) -> Option<String> {
    container_env(serving_container(objects)?, "AIP_PREDICT_ROUTE").map(str::to_string)
}

/// The name the serving container of `objects` answers the Open Inference Protocol V2 under,
/// when it runs the prebuilt runtime (which speaks it); `None` for a custom container.
pub fn v2_model(objects: &Rendered, config: &RenderConfig) -> Option<String> {
    let container = serving_container(objects)?;
    if !config.is_runtime_image(container.image.as_deref().unwrap_or_default()) {
        return None;
    }
    let name = container_env(container, runtime::config::MODEL_NAME_ENV);
    Some(name.unwrap_or(runtime::config::DEFAULT_MODEL_NAME).to_string())
}

/// The replica count a Deployment asks for.
pub fn replicas(objects: &Rendered) -> Option<u32> {
    objects.deployment.spec.as_ref()?.replicas.and_then(|r| u32::try_from(r).ok())
}
