//! Models and their versions, with aliases.

use async_trait::async_trait;

use super::codec::{from_json, timestamp};
use super::{Labels, Result, Timestamp};

/// The alias that every model has on exactly one of its versions.
pub const DEFAULT_ALIAS: &str = "default";

/// `projects/{project}/locations/{location}/models/{model_id}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ModelKey {
    pub project: String,
    pub location: String,
    pub model_id: String,
}

impl ModelKey {
    pub fn new(project: impl Into<String>, location: impl Into<String>, model_id: impl Into<String>) -> Self {
        Self { project: project.into(), location: location.into(), model_id: model_id.into() }
    }

    /// The resource name.
    pub fn name(&self) -> String {
        format!("projects/{}/locations/{}/models/{}", self.project, self.location, self.model_id)
    }

    /// The model's key from its (checked) name.
    pub fn of(name: &api::ModelName) -> ModelKey {
        ModelKey::new(&name.parent.project, &name.parent.location, &name.model_id)
    }

    /// The resource name of one version: `{name}@{version_id}`.
    pub fn version_name(&self, version_id: i64) -> String {
        format!("{}@{version_id}", self.name())
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Model {
    pub project: String,
    pub location: String,
    pub model_id: String,
    pub display_name: String,
    pub description: String,
    pub labels: Labels,
    pub create_time: Timestamp,
    pub update_time: Timestamp,
    /// Changes on every `update_model`; assigned by the store.
    pub etag: String,
}

impl Model {
    pub fn key(&self) -> ModelKey {
        ModelKey::new(&self.project, &self.location, &self.model_id)
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelVersion {
    pub project: String,
    pub location: String,
    pub model_id: String,
    /// 1, 2, ... per model, never reused; assigned by the store.
    pub version_id: i64,
    pub version_description: String,
    /// The serving container; `None` for the prebuilt ONNX runtime.
    pub container_spec: Option<api::ModelContainerSpec>,
    pub artifact_uri: String,
    pub artifact_sha256: Option<String>,
    pub predict_schemata: Option<api::PredictSchemata>,
    pub labels: Labels,
    pub create_time: Timestamp,
    pub update_time: Timestamp,
    /// Sorted. Unique per model; exactly one version of a model holds `default`.
    pub aliases: Vec<String>,
}

impl ModelVersion {
    pub fn model_key(&self) -> ModelKey {
        ModelKey::new(&self.project, &self.location, &self.model_id)
    }
}

/// Models, versions and aliases.
#[async_trait]
pub trait ModelStore: Send + Sync {
    /// Creates the model and its version 1 in one transaction. The version's key fields are
    /// taken from `model`; it gets the alias `default` plus its own `aliases`.
    async fn create_model(
        &self,
        model: &Model,
        first_version: &ModelVersion,
    ) -> Result<(Model, ModelVersion)>;
    /// Adds a version with the next id (max so far + 1). Its `aliases` must not be held by
    /// another version (AlreadyExists), except `default`, which moves to the new version.
    async fn add_model_version(&self, key: &ModelKey, version: &ModelVersion) -> Result<ModelVersion>;
    async fn get_model(&self, key: &ModelKey) -> Result<Model>;
    /// The models of a project and location, by creation time.
    async fn list_models(&self, project: &str, location: &str) -> Result<Vec<Model>>;
    /// Updates `display_name`, `description` and `labels`.
    async fn update_model(&self, model: &Model, expected_etag: Option<&str>) -> Result<Model>;
    /// Deletes the model with its versions and aliases. Conflict while any version is deployed.
    async fn delete_model(&self, key: &ModelKey) -> Result<()>;
    async fn get_model_version(&self, key: &ModelKey, version_id: i64) -> Result<ModelVersion>;
    /// The versions of a model, by version id.
    async fn list_model_versions(&self, key: &ModelKey) -> Result<Vec<ModelVersion>>;
    /// The version id holding `alias`.
    async fn resolve_alias(&self, key: &ModelKey, alias: &str) -> Result<i64>;
    /// Adds `add` to the version (moving each from the version holding it, `default`
    /// included) and removes `remove` from it. `default` cannot be removed.
    async fn merge_version_aliases(
        &self,
        key: &ModelKey,
        version_id: i64,
        add: &[String],
        remove: &[String],
    ) -> Result<ModelVersion>;
    /// Updates `version_description` and `labels` (the rest of a version is immutable).
    async fn update_model_version(&self, version: &ModelVersion) -> Result<ModelVersion>;
    /// Deletes a version and its aliases. Conflict when it holds `default` or is deployed.
    async fn delete_model_version(&self, key: &ModelKey, version_id: i64) -> Result<()>;
}

/// A `models` row as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct ModelRow {
    project: String,
    location: String,
    model_id: String,
    display_name: String,
    description: String,
    labels: String,
    etag: String,
    create_time: i64,
    update_time: i64,
}

impl ModelRow {
    pub(crate) fn decode(self) -> Result<Model> {
        let row = ModelKey::new(&self.project, &self.location, &self.model_id).name();
        Ok(Model {
            labels: from_json(&self.labels, &row, "labels")?,
            create_time: timestamp(self.create_time, &row, "create_time")?,
            update_time: timestamp(self.update_time, &row, "update_time")?,
            project: self.project,
            location: self.location,
            model_id: self.model_id,
            display_name: self.display_name,
            description: self.description,
            etag: self.etag,
        })
    }
}

/// A `model_versions` row as stored (aliases are rows of their own).
#[derive(sqlx::FromRow)]
pub(crate) struct ModelVersionRow {
    project: String,
    location: String,
    model_id: String,
    version_id: i64,
    version_description: String,
    container_spec: String,
    artifact_uri: String,
    artifact_sha256: Option<String>,
    predict_schemata: String,
    labels: String,
    create_time: i64,
    update_time: i64,
}

impl ModelVersionRow {
    /// The version without its aliases.
    pub(crate) fn decode(self) -> Result<ModelVersion> {
        let row = ModelKey::new(&self.project, &self.location, &self.model_id).version_name(self.version_id);
        Ok(ModelVersion {
            container_spec: from_json(&self.container_spec, &row, "container_spec")?,
            predict_schemata: from_json(&self.predict_schemata, &row, "predict_schemata")?,
            labels: from_json(&self.labels, &row, "labels")?,
            create_time: timestamp(self.create_time, &row, "create_time")?,
            update_time: timestamp(self.update_time, &row, "update_time")?,
            project: self.project,
            location: self.location,
            model_id: self.model_id,
            version_id: self.version_id,
            version_description: self.version_description,
            artifact_uri: self.artifact_uri,
            artifact_sha256: self.artifact_sha256,
            aliases: Vec::new(),
        })
    }
}
