//! The manifests of deployed models: what runs, as Kubernetes YAML a person can read, edit and
//! apply, with every change kept as a revision and any revision restorable.

use api::{EndpointName, Role};

use super::{EndpointError, Endpoints, Result, rendering, views};
use crate::auth::Caller;
use crate::manifests::{self, EndpointInput};
use crate::store::{DeployedModel, DesiredState, EndpointKey, ModelKey, Revision, RevisionSource};

impl Endpoints {
    /// A deployed model that is not being undeployed.
    async fn live_deployed_model(&self, key: &EndpointKey, id: &str) -> Result<DeployedModel> {
        api::check_deployed_model_id(id)?;
        let dm = self.store.get_deployed_model(key, id).await?;
        if dm.desired_state == DesiredState::Undeploying {
            return Err(EndpointError::NotFound(format!("deployed model {id} is being undeployed")));
        }
        Ok(dm)
    }

    /// The newest revision, or "not yet" while the controller has not rendered one.
    async fn current_revision(&self, key: &EndpointKey, id: &str) -> Result<Revision> {
        self.store.latest_revision(key, id).await?.ok_or_else(|| {
            EndpointError::Unavailable(format!(
                "deployed model {id} has no manifests yet; it is being deployed, retry shortly"
            ))
        })
    }

    /// What the platform renders for the deployed model now (the reference edits are checked
    /// against).
    async fn rendering(&self, dm: &DeployedModel) -> Result<rendering::Rendering> {
        let version = self
            .store
            .get_model_version(&ModelKey::new(&dm.project, &dm.location, &dm.model_id), dm.version_id)
            .await?;
        Ok(rendering::render(dm, &version, &self.catalog, &self.render)?)
    }

    /// The current revision of a deployed model.
    pub async fn manifests(&self, caller: &Caller, name: &EndpointName, id: &str) -> Result<Revision> {
        caller.require(Role::Viewer, &name.parent.project)?;
        let key = EndpointKey::of(name);
        self.live_deployed_model(&key, id).await?;
        self.current_revision(&key, id).await
    }

    /// Every deployed model's current manifests and the endpoint's own objects.
    pub async fn endpoint_manifests(&self, caller: &Caller, name: &EndpointName) -> Result<String> {
        caller.require(Role::Viewer, &name.parent.project)?;
        let key = EndpointKey::of(name);
        let record = self.store.get_endpoint(&key).await?;
        let mut yaml = String::new();
        for dm in self.store.list_deployed_models(&key).await? {
            if dm.desired_state == DesiredState::Undeploying {
                continue;
            }
            if let Some(r) = self.store.latest_revision(&key, &dm.deployed_model_id).await? {
                yaml.push_str(&r.manifests);
            }
        }
        let input = EndpointInput {
            project: key.project.clone(),
            location: key.location.clone(),
            endpoint_id: key.endpoint_id.clone(),
            access: record.access,
        };
        let own = manifests::render_endpoint(&input, &self.render)
            .to_yaml()
            .map_err(rendering::RenderingError::from)?;
        yaml.push_str(&own);
        Ok(yaml)
    }

    /// Applies edited manifests: validated (schema, ownership, security policy) against what
    /// the platform renders, stored as a new revision and run. `dry_run` returns the diff and
    /// warnings only.
    pub async fn apply_manifests(
        &self,
        caller: &Caller,
        name: &EndpointName,
        id: &str,
        edited: &str,
        dry_run: bool,
    ) -> Result<api::ApplyManifestsResponse> {
        caller.require(Role::Editor, &name.parent.project)?;
        let key = EndpointKey::of(name);
        let dm = self.live_deployed_model(&key, id).await?;
        if edited.trim().is_empty() {
            return Err(EndpointError::Invalid(
                "send the edited manifests (multi-document YAML) as the request body".into(),
            ));
        }
        let rendering = self.rendering(&dm).await?;
        if rendering.input.container.host_process && !caller.is_admin_of(&name.parent.project) {
            return Err(EndpointError::Registry(crate::registry::RegistryError::Forbidden(
                "this model runs its command as a host process: only admins may edit its manifests".into(),
            )));
        }
        let objects = manifests::validate_deployed_model(edited, &rendering.rendered)
            .map_err(EndpointError::Manifests)?;
        let canonical = objects.to_yaml().map_err(rendering::RenderingError::from)?;
        let before = self.current_revision(&key, id).await?;
        let diff = manifests::diff(&before.manifests, &canonical);
        let warnings = self.backend.check(&objects).await?;
        if dry_run || before.manifests == canonical {
            return Ok(api::ApplyManifestsResponse { revision: None, diff, warnings, dry_run });
        }
        let stored =
            self.store.insert_revision(&new_revision(&dm, canonical, RevisionSource::Edited)).await?;
        self.wake.wake();
        tracing::info!(deployed_model = %id, revision = stored.revision, user = %caller.username, "manifests edited");
        Ok(api::ApplyManifestsResponse {
            revision: Some(views::revision(&stored, false)),
            diff,
            warnings,
            dry_run: false,
        })
    }

    /// The revisions of a deployed model, oldest first.
    pub async fn revisions(
        &self,
        caller: &Caller,
        name: &EndpointName,
        id: &str,
    ) -> Result<Vec<api::Revision>> {
        caller.require(Role::Viewer, &name.parent.project)?;
        let key = EndpointKey::of(name);
        self.live_deployed_model(&key, id).await?;
        Ok(self.store.list_revisions(&key, id).await?.iter().map(|r| views::revision(r, false)).collect())
    }

    /// One revision with its manifests.
    pub async fn revision(
        &self,
        caller: &Caller,
        name: &EndpointName,
        id: &str,
        number: i64,
    ) -> Result<api::Revision> {
        caller.require(Role::Viewer, &name.parent.project)?;
        let key = EndpointKey::of(name);
        self.live_deployed_model(&key, id).await?;
        Ok(views::revision(&self.store.get_revision(&key, id, number).await?, true))
    }

    /// A new revision with an older one's manifests, if they still fit the deployed model
    /// (the rules or the model may have changed since).
    pub async fn rollback(
        &self,
        caller: &Caller,
        name: &EndpointName,
        id: &str,
        number: i64,
    ) -> Result<api::Revision> {
        caller.require(Role::Editor, &name.parent.project)?;
        let key = EndpointKey::of(name);
        let dm = self.live_deployed_model(&key, id).await?;
        let old = self.store.get_revision(&key, id, number).await?;
        let rendering = self.rendering(&dm).await?;
        manifests::validate_deployed_model(&old.manifests, &rendering.rendered)
            .map_err(EndpointError::Manifests)?;
        let stored =
            self.store.insert_revision(&new_revision(&dm, old.manifests, RevisionSource::Rollback)).await?;
        self.wake.wake();
        tracing::info!(deployed_model = %id, to = old.revision, revision = stored.revision, user = %caller.username, "rollback");
        Ok(views::revision(&stored, false))
    }
}

/// A new revision of `dm` (numbered by the store).
pub(crate) fn new_revision(dm: &DeployedModel, manifests: String, source: RevisionSource) -> Revision {
    Revision {
        project: dm.project.clone(),
        location: dm.location.clone(),
        endpoint_id: dm.endpoint_id.clone(),
        deployed_model_id: dm.deployed_model_id.clone(),
        manifests,
        source,
        ..Default::default()
    }
}
