//! The model registry: models, their versions and aliases, uploaded artifacts, and which
//! artifact URIs a caller may point a model at. [`Registry`] is the service every door calls.

pub mod artifact_uris;
pub mod artifacts;
pub mod container;
pub mod onnx;
pub mod views;

use std::sync::Arc;

use api::{Code, LocationName, ModelName, Role, VersionRef};
use bytes::Bytes;
use futures_util::Stream;

pub use artifacts::{ArtifactError, ArtifactStore, Stored};

use crate::auth::{AuthError, Caller};
use crate::operations;
use crate::store::{
    Artifact, DEFAULT_ALIAS, DeployedModel, Model, ModelKey, ModelVersion, OperationKind, Store, StoreError,
    new_numeric_id,
};

/// Why a registry request failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The request breaks a rule; the message says which and how to fix it.
    #[error("{0}")]
    Invalid(String),
    /// The caller may not do this, whatever their role (e.g. `file://` for non-admins).
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Name(#[from] api::NameError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    NotOnnx(#[from] onnx::NotOnnx),
}

impl api::Coded for RegistryError {
    fn code(&self) -> Code {
        match self {
            RegistryError::Invalid(_) | RegistryError::Name(_) | RegistryError::NotOnnx(_) => {
                Code::InvalidArgument
            }
            RegistryError::Forbidden(_) => Code::PermissionDenied,
            RegistryError::Auth(e) => e.code(),
            RegistryError::Store(e) => e.code(),
            RegistryError::Artifact(e) => e.code(),
        }
    }

    fn http_status(&self) -> u16 {
        match self {
            RegistryError::Artifact(e) => e.http_status(),
            _ => self.code().http_status(),
        }
    }
}

type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// What a model update may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelField {
    DisplayName,
    Description,
    Labels,
    VersionDescription,
}

/// The registry service.
pub struct Registry {
    store: Arc<dyn Store>,
    artifacts: ArtifactStore,
    /// Largest artifact upload.
    max_artifact_bytes: u64,
    /// Whether an image is the prebuilt runtime's.
    runtime_image: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    /// Whether admins may run a model's command as a host process (`--allow-host-processes`).
    host_processes_allowed: bool,
    /// Where model URLs may point (`--artifact-allow-*`).
    fetch_policy: runtime::fetch_policy::FetchPolicy,
}

impl Registry {
    pub fn new(
        store: Arc<dyn Store>,
        artifacts: ArtifactStore,
        max_artifact_bytes: u64,
        runtime_image: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    ) -> Registry {
        Registry {
            store,
            artifacts,
            max_artifact_bytes,
            runtime_image,
            host_processes_allowed: false,
            fetch_policy: Default::default(),
        }
    }

    /// Lets admins upload models whose command runs as a host process.
    pub fn allow_host_processes(mut self, allowed: bool) -> Registry {
        self.host_processes_allowed = allowed;
        self
    }

    /// Where model URLs may point.
    pub fn fetch_policy(mut self, policy: runtime::fetch_policy::FetchPolicy) -> Registry {
        self.fetch_policy = policy;
        self
    }

    /// `models:upload`: a new model (`model_id`, or a generated one), or a new version of
    /// `parent_model`. The operation is done when it is returned.
    pub async fn upload(
        &self,
        caller: &Caller,
        loc: &LocationName,
        req: &api::UploadModelRequest,
    ) -> Result<api::Operation> {
        caller.require(Role::Editor, &loc.project)?;
        let m = &req.model;
        for (field, set) in [
            ("name", !m.name.is_empty()),
            ("versionId", !m.version_id.is_empty()),
            ("deployedModels", !m.deployed_models.is_empty()),
            ("etag", !m.etag.is_empty()),
        ] {
            if set {
                return Err(RegistryError::Invalid(format!(
                    "model.{field} is output only; leave it out of uploads"
                )));
            }
        }
        api::check_labels(&m.labels)?;
        api::check_description("description", &m.description)?;
        api::check_description("versionDescription", &m.version_description)?;
        // `default` is allowed, as on Vertex (the SDK sends it): a new version that names it
        // becomes the model's default version; the first version holds it anyway.
        for alias in &m.version_aliases {
            api::check_alias(alias)?;
        }
        artifact_uris::check(&self.artifacts, &self.fetch_policy, caller, &loc.project, &m.artifact_uri)
            .await?;
        let container =
            container::check(m.container_spec.as_ref(), &m.artifact_uri, |i| (self.runtime_image)(i))?;
        if let Some(spec) = &container {
            let uploader = container::Uploader {
                admin: caller.is_admin_of(&loc.project),
                host_processes_allowed: self.host_processes_allowed,
            };
            container::check_running(spec, uploader)?;
        }
        if container.as_ref().is_none_or(|c| (self.runtime_image)(&c.image_uri)) {
            self.check_onnx(&m.artifact_uri).await?;
        }
        let version = ModelVersion {
            version_description: m.version_description.clone(),
            container_spec: container,
            artifact_uri: m.artifact_uri.clone(),
            artifact_sha256: self.artifact_sha256(&m.artifact_uri).await?,
            predict_schemata: m.predict_schemata.clone().filter(|p| p != &api::PredictSchemata::default()),
            labels: m.labels.clone(),
            aliases: m.version_aliases.clone(),
            ..Default::default()
        };
        let (key, version) = if let Some(parent) = &req.parent_model {
            if req.model_id.is_some() {
                return Err(RegistryError::Invalid(
                    "give either modelId (a new model) or parentModel (a new version)".into(),
                ));
            }
            let (name, v) = api::parse_model_ref(parent, loc)?;
            if v.is_some() || &name.parent != loc {
                return Err(RegistryError::Invalid(format!(
                    "parentModel `{parent}` must name a model of {loc}, without a version"
                )));
            }
            let key = ModelKey::of(&name);
            let version = self.store.add_model_version(&key, &version).await?;
            (key, version)
        } else {
            api::check_display_name(&m.display_name)?;
            let model_id = match &req.model_id {
                Some(id) => {
                    api::check_new_model_id(id)?;
                    id.clone()
                }
                None => new_numeric_id(16),
            };
            let model = Model {
                project: loc.project.clone(),
                location: loc.location.clone(),
                model_id,
                display_name: m.display_name.clone(),
                description: m.description.clone(),
                labels: m.labels.clone(),
                ..Default::default()
            };
            let (model, version) = self.store.create_model(&model, &version).await?;
            (model.key(), version)
        };
        tracing::info!(model = %key.name(), version = version.version_id, user = %caller.username, "model uploaded");
        let response = operations::typed(
            "UploadModelResponse",
            serde_json::json!({"model": key.name(), "modelVersionId": version.version_id.to_string()}),
        );
        let op = operations::finished(loc, OperationKind::UploadModel, &key.name(), response);
        Ok(operations::to_api(&self.store.insert_operation(&op).await?))
    }

    /// Refuses an uploaded artifact that is not an ONNX model (for the prebuilt runtime).
    /// Artifacts elsewhere (`s3://`, `https://`) are read by the replica; one that is not a
    /// model fails its deploy after a few restarts.
    async fn check_onnx(&self, uri: &str) -> Result<()> {
        if !self.artifacts.holds(uri) {
            return Ok(());
        }
        let bytes = self.artifacts.read(uri, self.max_artifact_bytes).await?;
        tokio::task::spawn_blocking(move || onnx::check(&bytes))
            .await
            .map_err(|e| RegistryError::Invalid(format!("cannot check the model: {e}")))??;
        Ok(())
    }

    /// The digest of an uploaded artifact, when the URI names one.
    async fn artifact_sha256(&self, uri: &str) -> Result<Option<String>> {
        let Some(id) = self.artifacts.artifact_id(uri) else { return Ok(None) };
        match self.store.get_artifact(id).await {
            Ok(a) => Ok(Some(a.sha256)),
            Err(e) if e.is_not_found() => Err(RegistryError::Invalid(format!(
                "artifactUri `{uri}` is not an uploaded artifact; upload it first (POST .../artifacts)"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Streams a file into the artifact store; the same bytes uploaded twice are kept once.
    pub async fn upload_artifact<S, E>(
        &self,
        caller: &Caller,
        loc: &LocationName,
        filename: Option<&str>,
        body: S,
    ) -> Result<api::Artifact>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        caller.require(Role::Editor, &loc.project)?;
        let filename = artifacts::clean_filename(filename)?;
        let id = crate::auth::token::new_token_id();
        let stored = self.artifacts.put(&id, &filename, body, self.max_artifact_bytes).await?;
        if let Some(existing) = self.store.find_artifact_by_sha256(&stored.sha256).await?
            && self.artifacts.holds(&existing.uri)
            && existing.uri.ends_with(&format!("/{filename}"))
        {
            self.artifacts.delete(&stored.uri).await?;
            return Ok(api::Artifact {
                artifact_uri: existing.uri,
                sha256: existing.sha256,
                size_bytes: existing.size_bytes,
                deduplicated: true,
            });
        }
        let size = i64::try_from(stored.size_bytes).unwrap_or(i64::MAX);
        let record = Artifact {
            id,
            sha256: stored.sha256.clone(),
            size_bytes: size,
            uri: stored.uri.clone(),
            ..Default::default()
        };
        self.store.insert_artifact(&record).await?;
        tracing::info!(uri = %stored.uri, sha256 = %stored.sha256, size, user = %caller.username, "artifact uploaded");
        Ok(api::Artifact {
            artifact_uri: stored.uri,
            sha256: stored.sha256,
            size_bytes: size,
            deduplicated: false,
        })
    }

    /// A model and one of its versions: the named one, or the default.
    pub async fn resolve(
        &self,
        key: &ModelKey,
        version: Option<&VersionRef>,
    ) -> Result<(Model, ModelVersion)> {
        let model = self.store.get_model(key).await?;
        let version_id = match version {
            Some(VersionRef::Id(id)) => *id,
            Some(VersionRef::Alias(alias)) => self.store.resolve_alias(key, alias).await?,
            None => self.store.resolve_alias(key, DEFAULT_ALIAS).await?,
        };
        let version = self.store.get_model_version(key, version_id).await?;
        Ok((model, version))
    }

    /// The live deployments of a model's versions.
    async fn deployments_of(&self, key: &ModelKey) -> Result<Vec<DeployedModel>> {
        Ok(self
            .store
            .list_all_deployed_models()
            .await?
            .into_iter()
            .filter(|d| d.project == key.project && d.location == key.location && d.model_id == key.model_id)
            .filter(|d| d.desired_state.is_live())
            .collect())
    }

    /// One version of a model (the default one unless `version` names another).
    pub async fn get(
        &self,
        caller: &Caller,
        name: &ModelName,
        version: Option<&VersionRef>,
    ) -> Result<api::Model> {
        caller.require(Role::Viewer, &name.parent.project)?;
        let key = ModelKey::of(name);
        let (model, version) = self.resolve(&key, version).await?;
        Ok(views::model(&model, &version, &self.deployments_of(&key).await?))
    }

    /// Every version of a model, by version id.
    pub async fn list_versions(&self, caller: &Caller, name: &ModelName) -> Result<Vec<api::Model>> {
        caller.require(Role::Viewer, &name.parent.project)?;
        let key = ModelKey::of(name);
        let model = self.store.get_model(&key).await?;
        let deployed = self.deployments_of(&key).await?;
        let versions = self.store.list_model_versions(&key).await?;
        Ok(versions.iter().map(|v| views::model(&model, v, &deployed)).collect())
    }

    /// The default version of each model of a location.
    pub async fn list(&self, caller: &Caller, loc: &LocationName) -> Result<Vec<api::Model>> {
        caller.require(Role::Viewer, &loc.project)?;
        let deployed: Vec<DeployedModel> = self
            .store
            .list_all_deployed_models()
            .await?
            .into_iter()
            .filter(|d| d.project == loc.project && d.location == loc.location && d.desired_state.is_live())
            .collect();
        let mut all = Vec::new();
        for model in self.store.list_models(&loc.project, &loc.location).await? {
            let key = model.key();
            let version_id = self.store.resolve_alias(&key, DEFAULT_ALIAS).await?;
            let version = self.store.get_model_version(&key, version_id).await?;
            let mine: Vec<DeployedModel> =
                deployed.iter().filter(|d| d.model_id == model.model_id).cloned().collect();
            all.push(views::model(&model, &version, &mine));
        }
        Ok(all)
    }

    /// Changes the model's display name, description and labels, or the named (or default)
    /// version's description. `etag`, when given, must be the model's current one.
    pub async fn update(
        &self,
        caller: &Caller,
        name: &ModelName,
        version: Option<&VersionRef>,
        fields: &[ModelField],
        body: &api::Model,
    ) -> Result<api::Model> {
        caller.require(Role::Editor, &name.parent.project)?;
        let key = ModelKey::of(name);
        let (mut model, mut version) = self.resolve(&key, version).await?;
        let etag = Some(body.etag.as_str()).filter(|e| !e.is_empty());
        let mut model_changed = false;
        for f in fields {
            match f {
                ModelField::DisplayName => {
                    api::check_display_name(&body.display_name)?;
                    model.display_name = body.display_name.clone();
                    model_changed = true;
                }
                ModelField::Description => {
                    api::check_description("description", &body.description)?;
                    model.description = body.description.clone();
                    model_changed = true;
                }
                ModelField::Labels => {
                    api::check_labels(&body.labels)?;
                    model.labels = body.labels.clone();
                    model_changed = true;
                }
                ModelField::VersionDescription => {
                    api::check_description("versionDescription", &body.version_description)?;
                    version.version_description = body.version_description.clone();
                    version = self.store.update_model_version(&version).await?;
                }
            }
        }
        if model_changed {
            model = self.store.update_model(&model, etag).await?;
        }
        Ok(views::model(&model, &version, &self.deployments_of(&key).await?))
    }

    /// Deletes a model with all its versions (refused while one is deployed).
    pub async fn delete(&self, caller: &Caller, name: &ModelName) -> Result<api::Operation> {
        caller.require(Role::Editor, &name.parent.project)?;
        let key = ModelKey::of(name);
        self.store.delete_model(&key).await?;
        self.deleted(caller, &name.parent, &key.name()).await
    }

    /// Deletes one version (refused while it is deployed or holds `default`).
    pub async fn delete_version(
        &self,
        caller: &Caller,
        name: &ModelName,
        version: &VersionRef,
    ) -> Result<api::Operation> {
        caller.require(Role::Editor, &name.parent.project)?;
        let key = ModelKey::of(name);
        let (_, version) = self.resolve(&key, Some(version)).await?;
        self.store.delete_model_version(&key, version.version_id).await?;
        self.deleted(caller, &name.parent, &key.version_name(version.version_id)).await
    }

    async fn deleted(&self, caller: &Caller, loc: &LocationName, target: &str) -> Result<api::Operation> {
        tracing::info!(%target, user = %caller.username, "deleted");
        let op = operations::finished(loc, OperationKind::Delete, target, operations::empty());
        Ok(operations::to_api(&self.store.insert_operation(&op).await?))
    }

    /// `:mergeVersionAliases`: `"alias"` adds an alias to the version, `"-alias"` removes it.
    pub async fn merge_aliases(
        &self,
        caller: &Caller,
        name: &ModelName,
        version: &VersionRef,
        aliases: &[String],
    ) -> Result<api::Model> {
        caller.require(Role::Editor, &name.parent.project)?;
        let (mut add, mut remove) = (Vec::new(), Vec::new());
        for alias in aliases {
            let (list, bare) = match alias.strip_prefix('-') {
                Some(bare) => (&mut remove, bare),
                None => (&mut add, alias.as_str()),
            };
            if bare != DEFAULT_ALIAS {
                api::check_alias(bare)?;
            }
            list.push(bare.to_string());
        }
        let key = ModelKey::of(name);
        let (model, current) = self.resolve(&key, Some(version)).await?;
        let version = self.store.merge_version_aliases(&key, current.version_id, &add, &remove).await?;
        Ok(views::model(&model, &version, &self.deployments_of(&key).await?))
    }
}
