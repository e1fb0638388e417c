//! The API's view of models and versions.

use crate::store::{DeployedModel, Model, ModelVersion};

/// A model version as the API shows it, with where it is deployed (`deployed`: the live
/// deployments of its model).
pub fn model(model: &Model, version: &ModelVersion, deployed: &[DeployedModel]) -> api::Model {
    api::Model {
        name: model.key().name(),
        display_name: model.display_name.clone(),
        description: model.description.clone(),
        version_id: version.version_id.to_string(),
        version_aliases: version.aliases.clone(),
        version_description: version.version_description.clone(),
        version_create_time: version.create_time.to_string(),
        version_update_time: version.update_time.to_string(),
        create_time: model.create_time.to_string(),
        update_time: model.update_time.to_string(),
        predict_schemata: version.predict_schemata.clone(),
        container_spec: version.container_spec.clone(),
        artifact_uri: version.artifact_uri.clone(),
        labels: model.labels.clone(),
        etag: model.etag.clone(),
        deployed_models: deployed
            .iter()
            .filter(|d| d.version_id == version.version_id)
            .map(|d| api::DeployedModelRef {
                endpoint: d.endpoint_key().name(),
                deployed_model_id: d.deployed_model_id.clone(),
            })
            .collect(),
        supported_deployment_resources_types: vec!["DEDICATED_RESOURCES".into()],
        unmodelled: api::Unmodelled,
    }
}
