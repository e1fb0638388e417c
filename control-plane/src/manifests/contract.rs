//! The Vertex AI custom-container contract: the `AIP_*` environment every serving container
//! gets and the default routes. These variables are the platform's: users cannot set or change
//! them (the API and the manifests policy refuse it).

use super::deployed_model::RenderInput;
use super::spec::container_port;

/// Prefix of the contract's variables.
pub const CONTRACT_PREFIX: &str = "AIP_";

/// Whether `name` is one of the platform's contract variables.
pub fn is_contract_variable(name: &str) -> bool {
    name.starts_with(CONTRACT_PREFIX)
}

/// Vertex's default predict route.
pub fn default_predict_route(endpoint_id: &str, deployed_model_id: &str) -> String {
    format!("/v1/endpoints/{endpoint_id}/deployedModels/{deployed_model_id}:predict")
}

/// Vertex's default health route.
pub fn default_health_route(endpoint_id: &str, deployed_model_id: &str) -> String {
    format!("/v1/endpoints/{endpoint_id}/deployedModels/{deployed_model_id}")
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

/// The health route the container answers on: its own, or Vertex's default.
pub fn health_route(input: &RenderInput) -> String {
    or_default(&input.container.health_route, || {
        default_health_route(&input.endpoint_id, &input.deployed_model_id)
    })
}

/// `value`, or the default when it is empty (proto3: empty means unset).
fn or_default(value: &str, default: impl FnOnce() -> String) -> String {
    if value.is_empty() { default() } else { value.to_string() }
}
