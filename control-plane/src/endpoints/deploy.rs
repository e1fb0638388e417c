//! `:deployModel`, `:undeployModel` and `:mutateDeployedModel`: what runs on an endpoint,
//! recorded as desired state with an operation that the controller finishes.

use api::{EndpointName, Role};

use super::manifests::new_revision;
use super::{EndpointError, Endpoints, Result, compute, rendering, traffic};
use crate::auth::Caller;
use crate::operations;
use crate::store::{
    DeployedModel, DeploymentSpec, DesiredState, EndpointKey, ModelKey, OperationKind, RevisionSource,
    new_numeric_id,
};

/// What `:mutateDeployedModel` may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MutableField {
    MinReplicaCount,
    MaxReplicaCount,
    AutoscalingMetricSpecs,
    /// All of `dedicatedResources` (the machine type must stay the same).
    DedicatedResources,
    /// `containerConcurrency` (an extension of this platform); unset: back to the default.
    ContainerConcurrency,
}

impl Endpoints {
    /// Deploys a model version on the endpoint.
    pub async fn deploy(
        &self,
        caller: &Caller,
        name: &EndpointName,
        req: &api::DeployModelRequest,
    ) -> Result<api::Operation> {
        caller.require(Role::Editor, &name.parent.project)?;
        let key = EndpointKey::of(name);
        let endpoint = self.store.get_endpoint(&key).await?;
        let dm = &req.deployed_model;
        if dm.model.is_empty() {
            return Err(EndpointError::Invalid(
                "deployedModel.model is required: the model's name or id, optionally with @version or @alias"
                    .into(),
            ));
        }
        if !dm.display_name.is_empty() {
            api::check_display_name(&dm.display_name)?;
        }
        let (model_name, version) = api::parse_model_ref(&dm.model, &name.parent)?;
        if model_name.parent != name.parent {
            return Err(EndpointError::Invalid(format!(
                "deployedModel.model must be a model of {}",
                name.parent
            )));
        }
        let (model, version) = self.registry.resolve(&ModelKey::of(&model_name), version.as_ref()).await?;
        let requested = DeploymentSpec {
            dedicated_resources: dm.dedicated_resources.clone(),
            automatic_resources: dm.automatic_resources.clone(),
            service_account: dm.service_account.clone(),
            enable_access_logging: dm.enable_access_logging,
            disable_container_logging: dm.disable_container_logging,
            container_concurrency: dm.container_concurrency,
        };
        let compute = compute::resolve(&requested, &self.catalog)?;
        compute::check_measurable(&compute, self.backend.scales_on_gpu_duty_cycle())?;
        // What the cluster can place: GPUs it has a device resource for, spot nodes, a service
        // account other than the platform's.
        let spot = requested.dedicated_resources.as_ref().is_some_and(|d| d.spot);
        let account = Some(requested.service_account.as_str()).filter(|a| !a.is_empty());
        self.render
            .check_placement(&compute.machine, spot, account)
            .map_err(|e| EndpointError::Invalid(e.0))?;
        let deployed_model_id = if dm.id.is_empty() {
            new_numeric_id(18)
        } else {
            api::check_deployed_model_id(&dm.id)?;
            dm.id.clone()
        };
        let existing = self.store.list_deployed_models(&key).await?;
        if existing.iter().any(|d| d.deployed_model_id == deployed_model_id) {
            return Err(EndpointError::AlreadyExists(format!(
                "deployed model {deployed_model_id} already exists on {}",
                key.name()
            )));
        }
        let live = live_ids(&existing);
        let split =
            traffic::after_deploy(&endpoint.traffic_split, &req.traffic_split, &deployed_model_id, &live)?;
        let spec = DeploymentSpec {
            dedicated_resources: Some(
                compute.dedicated_resources(dm.dedicated_resources.clone().unwrap_or_default()),
            ),
            automatic_resources: None,
            container_concurrency: Some(compute.concurrency),
            ..requested
        };
        let record = DeployedModel {
            project: key.project.clone(),
            location: key.location.clone(),
            endpoint_id: key.endpoint_id.clone(),
            deployed_model_id: deployed_model_id.clone(),
            model_id: model.model_id.clone(),
            version_id: version.version_id,
            display_name: if dm.display_name.is_empty() {
                model.display_name.clone()
            } else {
                dm.display_name.clone()
            },
            spec,
            desired_state: DesiredState::Deploying,
            ..Default::default()
        };
        let (_, stored) = self.store.deploy(&key, &record, Some(&split)).await?;
        tracing::info!(endpoint = %key.name(), deployed_model = %deployed_model_id, model = %model.key().name(),
            version = version.version_id, user = %caller.username, "deploy requested");
        let mut op = operations::start(&name.parent, OperationKind::DeployModel, &key.name());
        op.metadata.deployed_model_id = Some(stored.deployed_model_id);
        op.metadata.previous_traffic_split = Some(endpoint.traffic_split);
        self.recorded(op).await
    }

    /// Undeploys a deployed model; its traffic must go elsewhere first (or with `trafficSplit`).
    pub async fn undeploy(
        &self,
        caller: &Caller,
        name: &EndpointName,
        req: &api::UndeployModelRequest,
    ) -> Result<api::Operation> {
        caller.require(Role::Editor, &name.parent.project)?;
        api::check_deployed_model_id(&req.deployed_model_id)?;
        let key = EndpointKey::of(name);
        let endpoint = self.store.get_endpoint(&key).await?;
        let deployed = self.store.list_deployed_models(&key).await?;
        let live = live_ids(&deployed);
        if !live.contains(&req.deployed_model_id.as_str()) {
            return Err(EndpointError::NotFound(format!(
                "deployed model {} is not deployed on {}",
                req.deployed_model_id,
                key.name()
            )));
        }
        let split = traffic::after_undeploy(
            &endpoint.traffic_split,
            &req.traffic_split,
            &req.deployed_model_id,
            &live,
        )
        .map_err(|e| EndpointError::FailedPrecondition(e.0))?;
        self.store.undeploy(&key, &req.deployed_model_id, Some(&split)).await?;
        let mut op = operations::start(&name.parent, OperationKind::UndeployModel, &key.name());
        op.metadata.deployed_model_id = Some(req.deployed_model_id.clone());
        self.recorded(op).await
    }

    /// Changes the replica bounds, autoscaling and concurrency of a deployed model (`fields`: what the
    /// update mask names). A mutation renders afresh, replacing manifests a person edited.
    pub async fn mutate(
        &self,
        caller: &Caller,
        name: &EndpointName,
        fields: &[MutableField],
        req: &api::MutateDeployedModelRequest,
    ) -> Result<api::Operation> {
        caller.require(Role::Editor, &name.parent.project)?;
        let id = &req.deployed_model.id;
        api::check_deployed_model_id(id)
            .map_err(|e| EndpointError::Invalid(format!("deployedModel.id: {e}")))?;
        let key = EndpointKey::of(name);
        let current = self.store.get_deployed_model(&key, id).await?;
        if current.desired_state == DesiredState::Undeploying {
            return Err(EndpointError::FailedPrecondition(format!(
                "deployed model {id} is being undeployed"
            )));
        }
        let mut spec = current.spec.clone();
        let given = req.deployed_model.dedicated_resources.clone().unwrap_or_default();
        let mut resources = spec.dedicated_resources.clone().unwrap_or_default();
        for f in fields {
            match f {
                MutableField::MinReplicaCount => resources.min_replica_count = given.min_replica_count,
                MutableField::MaxReplicaCount => resources.max_replica_count = given.max_replica_count,
                MutableField::AutoscalingMetricSpecs => {
                    resources.autoscaling_metric_specs = given.autoscaling_metric_specs.clone()
                }
                MutableField::DedicatedResources => {
                    if given.machine_spec != resources.machine_spec {
                        return Err(EndpointError::Invalid(
                            "the machine type cannot be mutated; deploy the model again with the new machine type".into(),
                        ));
                    }
                    resources.min_replica_count = given.min_replica_count;
                    resources.max_replica_count = given.max_replica_count;
                    resources.autoscaling_metric_specs = given.autoscaling_metric_specs.clone();
                }
                MutableField::ContainerConcurrency => {
                    spec.container_concurrency = req.deployed_model.container_concurrency
                }
            }
        }
        spec.dedicated_resources = Some(resources.clone());
        let compute = compute::resolve(&spec, &self.catalog)?;
        compute::check_measurable(&compute, self.backend.scales_on_gpu_duty_cycle())?;
        spec.dedicated_resources = Some(compute.dedicated_resources(resources));
        spec.container_concurrency = Some(compute.concurrency);
        let updated = self.store.update_deployed_model_spec(&key, id, &spec).await?;
        let latest = self.store.latest_revision(&key, id).await?;
        if latest.is_some_and(|r| r.source != RevisionSource::Rendered) {
            let version = self
                .store
                .get_model_version(
                    &ModelKey::new(&key.project, &key.location, &updated.model_id),
                    updated.version_id,
                )
                .await?;
            let rendering = rendering::render(&updated, &version, &self.catalog, &self.render)?;
            self.store
                .insert_revision(&new_revision(&updated, rendering.manifests, RevisionSource::Rendered))
                .await?;
        }
        let mut op = operations::start(&name.parent, OperationKind::MutateDeployedModel, &key.name());
        op.metadata.deployed_model_id = Some(id.clone());
        self.recorded(op).await
    }

    /// Stores an operation the controller will finish, and wakes it.
    async fn recorded(&self, op: crate::store::Operation) -> Result<api::Operation> {
        let stored = self.store.insert_operation(&op).await?;
        self.wake.wake();
        Ok(operations::to_api(&stored))
    }
}

/// The ids of the deployed models that are not being undeployed.
fn live_ids(deployed: &[DeployedModel]) -> Vec<&str> {
    deployed
        .iter()
        .filter(|d| d.desired_state != DesiredState::Undeploying)
        .map(|d| d.deployed_model_id.as_str())
        .collect()
}
