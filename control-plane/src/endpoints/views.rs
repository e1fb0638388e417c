//! The API's view of endpoints and deployed models.

use crate::store::{DeployedModel, DesiredState, Endpoint, ModelKey, Revision};

/// A deployed model as the API shows it.
pub fn deployed_model(dm: &DeployedModel) -> api::DeployedModel {
    let mut status = dm.status.clone();
    if status.message.is_empty() {
        status.message = match dm.desired_state {
            DesiredState::Deployed => String::new(),
            other => other.as_str().to_string(),
        };
    }
    api::DeployedModel {
        id: dm.deployed_model_id.clone(),
        model: ModelKey::new(&dm.project, &dm.location, &dm.model_id).name(),
        model_version_id: dm.version_id.to_string(),
        display_name: dm.display_name.clone(),
        create_time: dm.create_time.to_string(),
        dedicated_resources: dm.spec.dedicated_resources.clone(),
        automatic_resources: dm.spec.automatic_resources.clone(),
        service_account: dm.spec.service_account.clone(),
        enable_access_logging: dm.spec.enable_access_logging,
        disable_container_logging: dm.spec.disable_container_logging,
        container_concurrency: Some(super::compute::container_concurrency(&dm.spec)),
        status: Some(status),
        autoscaling_status: dm.autoscaling.clone(),
        unmodelled: api::Unmodelled,
    }
}

/// An endpoint with its live deployed models, as the API shows it. `public_url` is where
/// clients reach the platform.
pub fn endpoint(public_url: &str, e: &Endpoint, deployed: &[DeployedModel]) -> api::Endpoint {
    let name = e.key().name();
    api::Endpoint {
        predict_uri: format!("{public_url}/v1/{name}:predict"),
        name,
        display_name: e.display_name.clone(),
        description: e.description.clone(),
        deployed_models: deployed
            .iter()
            .filter(|d| d.endpoint_key() == e.key() && d.desired_state != DesiredState::Undeploying)
            .map(deployed_model)
            .collect(),
        traffic_split: e.traffic_split.clone(),
        etag: e.etag.clone(),
        labels: e.labels.clone(),
        create_time: e.create_time.to_string(),
        update_time: e.update_time.to_string(),
        access: e.access,
        predict_request_response_logging_config: super::prediction_logs::view(&e.prediction_logging),
        client_connection_config: e
            .inference_timeout
            .map(|t| api::ClientConnectionConfig { inference_timeout: Some(t) }),
        unmodelled: api::Unmodelled,
    }
}

/// A revision as the API shows it, with its manifests or without (in lists).
pub fn revision(r: &Revision, with_manifests: bool) -> api::Revision {
    api::Revision {
        name: r.name(),
        revision: r.revision,
        source: r.source.as_str().to_string(),
        create_time: r.create_time.to_string(),
        manifests: if with_manifests { r.manifests.clone() } else { String::new() },
    }
}
