//! Endpoints, the models deployed on them, and how traffic splits between those.

use std::collections::BTreeMap;

use api::Access;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::codec::{corrupt, from_json, from_opt_json, name_of, timestamp};
use super::{Labels, PredictionLogging, Result, Timestamp};

/// A traffic split: deployed model id -> percent. Empty, or percents summing to 100.
pub type TrafficSplit = BTreeMap<String, i32>;

/// `projects/{project}/locations/{location}/endpoints/{endpoint_id}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    pub project: String,
    pub location: String,
    pub endpoint_id: String,
}

impl EndpointKey {
    pub fn new(
        project: impl Into<String>,
        location: impl Into<String>,
        endpoint_id: impl Into<String>,
    ) -> Self {
        Self { project: project.into(), location: location.into(), endpoint_id: endpoint_id.into() }
    }

    /// The endpoint's key from its (checked) name.
    pub fn of(name: &api::EndpointName) -> EndpointKey {
        EndpointKey::new(&name.parent.project, &name.parent.location, &name.endpoint_id)
    }

    /// The resource name.
    pub fn name(&self) -> String {
        format!("projects/{}/locations/{}/endpoints/{}", self.project, self.location, self.endpoint_id)
    }

    /// The resource name of a deployed model on this endpoint.
    pub fn deployed_model_name(&self, deployed_model_id: &str) -> String {
        format!("{}/deployedModels/{deployed_model_id}", self.name())
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Endpoint {
    pub project: String,
    pub location: String,
    pub endpoint_id: String,
    pub display_name: String,
    pub description: String,
    pub labels: Labels,
    pub access: Access,
    /// `clientConnectionConfig.inferenceTimeout`; `None`: the gateway's default.
    pub inference_timeout: Option<api::Duration>,
    /// Names only deployed models of this endpoint that are not being undeployed.
    pub traffic_split: TrafficSplit,
    /// Changes on every change of the endpoint, its split or its set of deployed models.
    pub etag: String,
    pub create_time: Timestamp,
    pub update_time: Timestamp,
    /// Request-response logging (`predictRequestResponseLoggingConfig`).
    pub prediction_logging: PredictionLogging,
}

impl Endpoint {
    pub fn key(&self) -> EndpointKey {
        EndpointKey::new(&self.project, &self.location, &self.endpoint_id)
    }
}

/// What the platform is asked to do with a deployed model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DesiredState {
    /// Recorded by `:deployModel`; its operation waits for the first ready replicas.
    #[default]
    Deploying,
    /// Running; kept running.
    Deployed,
    /// Recorded by `:undeployModel`; the row goes once its replicas are gone.
    Undeploying,
    /// The deploy failed; the controller removes it.
    Failed,
}

impl DesiredState {
    pub const ALL: [DesiredState; 4] =
        [DesiredState::Deploying, DesiredState::Deployed, DesiredState::Undeploying, DesiredState::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            DesiredState::Deploying => "deploying",
            DesiredState::Deployed => "deployed",
            DesiredState::Undeploying => "undeploying",
            DesiredState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<DesiredState> {
        DesiredState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the deployed model may run and receive traffic (it is not on its way out).
    pub fn is_live(self) -> bool {
        matches!(self, DesiredState::Deploying | DesiredState::Deployed)
    }
}

/// How a deployed model runs: what `:deployModel` and `:mutateDeployedModel` set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedicated_resources: Option<api::DedicatedResources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automatic_resources: Option<api::AutomaticResources>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enable_access_logging: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disable_container_logging: bool,
    /// Requests one replica is given at once (`containerConcurrency`); the default when None.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_concurrency: Option<i32>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeployedModel {
    pub project: String,
    pub location: String,
    pub endpoint_id: String,
    pub deployed_model_id: String,
    /// The model, in the endpoint's project and location.
    pub model_id: String,
    pub version_id: i64,
    pub display_name: String,
    pub spec: DeploymentSpec,
    pub desired_state: DesiredState,
    /// What the controller last observed.
    pub status: api::DeployedModelStatus,
    /// The autoscaler's last decision; None until its first.
    pub autoscaling: Option<api::AutoscalingStatus>,
    pub create_time: Timestamp,
    pub update_time: Timestamp,
}

impl DeployedModel {
    pub fn endpoint_key(&self) -> EndpointKey {
        EndpointKey::new(&self.project, &self.location, &self.endpoint_id)
    }

    /// The resource name of the deployed model version.
    pub fn model_version_name(&self) -> String {
        super::ModelKey::new(&self.project, &self.location, &self.model_id).version_name(self.version_id)
    }
}

/// Endpoints, deployed models and traffic splits.
#[async_trait]
pub trait EndpointStore: Send + Sync {
    /// Creates an endpoint; its traffic split must be empty (nothing is deployed yet).
    async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<Endpoint>;
    async fn get_endpoint(&self, key: &EndpointKey) -> Result<Endpoint>;
    /// The endpoints of a project and location, by creation time.
    async fn list_endpoints(&self, project: &str, location: &str) -> Result<Vec<Endpoint>>;
    /// Every endpoint of every project (what the gateway serves).
    async fn list_all_endpoints(&self) -> Result<Vec<Endpoint>>;
    /// Updates `display_name`, `description`, `labels`, `access`, `prediction_logging` and
    /// `inference_timeout`.
    async fn update_endpoint(&self, endpoint: &Endpoint, expected_etag: Option<&str>) -> Result<Endpoint>;
    /// Replaces the traffic split (validated against the endpoint's deployed models).
    async fn set_traffic_split(
        &self,
        key: &EndpointKey,
        split: &TrafficSplit,
        expected_etag: Option<&str>,
    ) -> Result<Endpoint>;
    /// Deletes an endpoint. Conflict while it has deployed models.
    async fn delete_endpoint(&self, key: &EndpointKey) -> Result<()>;

    /// In one transaction: records `deployed_model` on the endpoint (desired state
    /// `deploying`) and, when `new_split` is given, replaces the traffic split with it (real
    /// deployed model ids: the caller resolves the API's `"0"`). The model version must exist.
    async fn deploy(
        &self,
        endpoint: &EndpointKey,
        deployed_model: &DeployedModel,
        new_split: Option<&TrafficSplit>,
    ) -> Result<(Endpoint, DeployedModel)>;
    /// In one transaction: marks the deployed model `undeploying` and takes it out of the
    /// traffic split, replacing the split with `new_split` when given. Conflict when the
    /// resulting split would still send it traffic; undeploying the last one empties the split.
    /// The controller deletes the row with `delete_deployed_model` once its replicas are gone.
    async fn undeploy(
        &self,
        endpoint: &EndpointKey,
        deployed_model_id: &str,
        new_split: Option<&TrafficSplit>,
    ) -> Result<(Endpoint, DeployedModel)>;
    async fn get_deployed_model(
        &self,
        endpoint: &EndpointKey,
        deployed_model_id: &str,
    ) -> Result<DeployedModel>;
    /// The deployed models of an endpoint, by creation time.
    async fn list_deployed_models(&self, endpoint: &EndpointKey) -> Result<Vec<DeployedModel>>;
    /// Every deployed model of every endpoint (what the controller reconciles).
    async fn list_all_deployed_models(&self) -> Result<Vec<DeployedModel>>;
    /// Sets `Deploying`, `Deployed` or `Failed` (`Undeploying` is set by `undeploy`). A deployed
    /// model being undeployed stays so: NotFound.
    async fn set_deployed_model_state(
        &self,
        endpoint: &EndpointKey,
        deployed_model_id: &str,
        desired_state: DesiredState,
    ) -> Result<DeployedModel>;
    async fn set_deployed_model_status(
        &self,
        endpoint: &EndpointKey,
        deployed_model_id: &str,
        status: &api::DeployedModelStatus,
    ) -> Result<DeployedModel>;
    /// Replaces the deployment spec (mutateDeployedModel).
    /// Records the autoscaler's last decision.
    async fn set_deployed_model_autoscaling(
        &self,
        endpoint: &EndpointKey,
        deployed_model_id: &str,
        autoscaling: &api::AutoscalingStatus,
    ) -> Result<DeployedModel>;
    async fn update_deployed_model_spec(
        &self,
        endpoint: &EndpointKey,
        deployed_model_id: &str,
        spec: &DeploymentSpec,
    ) -> Result<DeployedModel>;
    /// Deletes the deployed model and its revisions, and drops it from the split if it is
    /// there with 0%. Conflict while it still gets traffic.
    async fn delete_deployed_model(&self, endpoint: &EndpointKey, deployed_model_id: &str) -> Result<()>;
}

/// The stored name of an access mode.
pub(crate) fn access_name(access: Access) -> &'static str {
    match access {
        Access::Authenticated => "authenticated",
        Access::Public => "public",
        Access::Private => "private",
    }
}

/// An inference timeout as stored: nanoseconds.
pub(crate) fn timeout_nanos(timeout: Option<api::Duration>) -> Option<i64> {
    timeout.map(|t| i64::try_from(t.get().as_nanos()).unwrap_or(i64::MAX))
}

fn parse_access(text: &str) -> Option<Access> {
    [Access::Authenticated, Access::Public, Access::Private].into_iter().find(|a| access_name(*a) == text)
}

/// An `endpoints` row as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct EndpointRow {
    project: String,
    location: String,
    endpoint_id: String,
    display_name: String,
    description: String,
    labels: String,
    access: String,
    traffic_split: String,
    inference_timeout_nanos: Option<i64>,
    etag: String,
    create_time: i64,
    update_time: i64,
    prediction_logging: String,
}

impl EndpointRow {
    pub(crate) fn decode(self) -> Result<Endpoint> {
        let row = EndpointKey::new(&self.project, &self.location, &self.endpoint_id).name();
        Ok(Endpoint {
            labels: from_json(&self.labels, &row, "labels")?,
            access: name_of(&self.access, &row, "access", parse_access)?,
            traffic_split: from_json(&self.traffic_split, &row, "traffic_split")?,
            inference_timeout: self
                .inference_timeout_nanos
                .map(|n| u64::try_from(n).map(|n| api::Duration(std::time::Duration::from_nanos(n))))
                .transpose()
                .map_err(|e| corrupt(&row, "inference_timeout_nanos", e))?,
            create_time: timestamp(self.create_time, &row, "create_time")?,
            update_time: timestamp(self.update_time, &row, "update_time")?,
            prediction_logging: from_json(&self.prediction_logging, &row, "prediction_logging")?,
            project: self.project,
            location: self.location,
            endpoint_id: self.endpoint_id,
            display_name: self.display_name,
            description: self.description,
            etag: self.etag,
        })
    }
}

/// A `deployed_models` row as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct DeployedModelRow {
    project: String,
    location: String,
    endpoint_id: String,
    deployed_model_id: String,
    model_id: String,
    version_id: i64,
    display_name: String,
    spec: String,
    desired_state: String,
    status: String,
    autoscaling: Option<String>,
    create_time: i64,
    update_time: i64,
}

impl DeployedModelRow {
    pub(crate) fn decode(self) -> Result<DeployedModel> {
        let row = EndpointKey::new(&self.project, &self.location, &self.endpoint_id)
            .deployed_model_name(&self.deployed_model_id);
        Ok(DeployedModel {
            spec: from_json(&self.spec, &row, "spec")?,
            desired_state: name_of(&self.desired_state, &row, "desired_state", DesiredState::parse)?,
            status: from_json(&self.status, &row, "status")?,
            autoscaling: from_opt_json(self.autoscaling, &row, "autoscaling")?,
            create_time: timestamp(self.create_time, &row, "create_time")?,
            update_time: timestamp(self.update_time, &row, "update_time")?,
            project: self.project,
            location: self.location,
            endpoint_id: self.endpoint_id,
            deployed_model_id: self.deployed_model_id,
            model_id: self.model_id,
            version_id: self.version_id,
            display_name: self.display_name,
        })
    }
}
