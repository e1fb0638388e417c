//! Endpoints, the models deployed on them, traffic splits and their manifests: the rules of
//! the Vertex endpoint service. [`Endpoints`] is the service every door calls. Changes to what
//! runs are recorded as desired state with an operation; the controller makes them true and
//! finishes the operation.

pub mod compute;
mod deploy;
pub use deploy::MutableField;
pub mod logs;
mod manifests;
pub mod prediction_logs;
pub mod rendering;
mod replicas;
pub use replicas::Replica;
pub mod traffic;
pub mod views;

use std::sync::Arc;
use std::time::Duration;

use api::{Code, EndpointName, LocationName, Role};

use crate::auth::{AuthError, Caller};
use crate::backend::{Backend, BackendError};
use crate::controller::Wake;
use crate::gateway::Gateway;
use crate::machine::Catalog;
use crate::manifests::{Problems, RenderConfig};
use crate::operations;
use crate::registry::{Registry, RegistryError};
use crate::store::{DesiredState, Endpoint, EndpointKey, OperationKind, Store, StoreError, new_numeric_id};

/// How long a traffic change waits for the gateway to route by it before answering.
const PUBLISH_WAIT: Duration = Duration::from_secs(5);

/// Why an endpoint request failed.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The request breaks a rule; the message says which and how to fix it.
    #[error("{0}")]
    Invalid(String),
    /// The request is valid but the endpoint is not in a state to take it.
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// Not ready yet; retry shortly.
    #[error("{0}")]
    Unavailable(String),
    /// Edited manifests that are not accepted, each problem with the field it names.
    #[error("the manifests are not accepted ({}):\n{}", count(.0), .0)]
    Manifests(Problems),
    #[error(transparent)]
    Name(#[from] api::NameError),
    #[error(transparent)]
    Split(#[from] traffic::SplitError),
    #[error(transparent)]
    Compute(#[from] compute::ComputeError),
    #[error(transparent)]
    Rendering(#[from] rendering::RenderingError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

fn count(problems: &Problems) -> String {
    match problems.0.len() {
        1 => "1 problem".to_string(),
        n => format!("{n} problems"),
    }
}

impl api::Coded for EndpointError {
    fn code(&self) -> Code {
        match self {
            EndpointError::Invalid(_) | EndpointError::Manifests(_) | EndpointError::Backend(_) => {
                Code::InvalidArgument
            }
            EndpointError::FailedPrecondition(_) => Code::FailedPrecondition,
            EndpointError::NotFound(_) => Code::NotFound,
            EndpointError::AlreadyExists(_) => Code::AlreadyExists,
            EndpointError::Unavailable(_) => Code::Unavailable,
            EndpointError::Name(e) => e.code(),
            EndpointError::Split(e) => e.code(),
            EndpointError::Compute(e) => e.code(),
            EndpointError::Rendering(e) => e.code(),
            EndpointError::Auth(e) => e.code(),
            EndpointError::Registry(e) => e.code(),
            EndpointError::Store(e) => e.code(),
        }
    }

    fn retry_after(&self) -> Option<u32> {
        matches!(self, EndpointError::Unavailable(_)).then_some(1)
    }

    fn details(&self) -> Vec<serde_json::Value> {
        match self {
            EndpointError::Manifests(problems) => {
                let violations: Vec<api::FieldViolation> = problems
                    .0
                    .iter()
                    .map(|p| api::FieldViolation { field: p.path.clone(), description: p.message.clone() })
                    .collect();
                vec![
                    serde_json::json!({"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": violations}),
                ]
            }
            _ => Vec::new(),
        }
    }
}

type Result<T, E = EndpointError> = std::result::Result<T, E>;

/// What an endpoint update may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointField {
    DisplayName,
    Description,
    Labels,
    Access,
    TrafficSplit,
    /// `predictRequestResponseLoggingConfig`.
    PredictionLogging,
    /// `clientConnectionConfig.inferenceTimeout`.
    InferenceTimeout,
}

/// The checked `clientConnectionConfig.inferenceTimeout` of a request; `None` when unset.
fn inference_timeout(body: &api::Endpoint) -> Result<Option<api::Duration>> {
    let timeout = body.client_connection_config.as_ref().and_then(|c| c.inference_timeout);
    if let Some(t) = timeout {
        api::check_inference_timeout(t).map_err(EndpointError::Invalid)?;
    }
    Ok(timeout)
}

/// The endpoint service.
pub struct Endpoints {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    catalog: Catalog,
    render: RenderConfig,
    backend: Arc<dyn Backend>,
    gateway: Arc<Gateway>,
    wake: Wake,
    /// Where clients reach the platform, for `predictUri`.
    public_url: String,
}

impl Endpoints {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        catalog: Catalog,
        render: RenderConfig,
        backend: Arc<dyn Backend>,
        gateway: Arc<Gateway>,
        wake: Wake,
        public_url: String,
    ) -> Endpoints {
        Endpoints { store, registry, catalog, render, backend, gateway, wake, public_url }
    }

    fn view(&self, e: &Endpoint, deployed: &[crate::store::DeployedModel]) -> api::Endpoint {
        views::endpoint(&self.public_url, e, deployed)
    }

    async fn load(&self, key: &EndpointKey) -> Result<api::Endpoint> {
        let e = self.store.get_endpoint(key).await?;
        let deployed = self.store.list_deployed_models(key).await?;
        Ok(self.view(&e, &deployed))
    }

    /// A new endpoint (`endpoint_id`, or a generated one). The operation is done when returned.
    pub async fn create(
        &self,
        caller: &Caller,
        loc: &LocationName,
        endpoint_id: Option<&str>,
        body: &api::Endpoint,
    ) -> Result<api::Operation> {
        caller.require(Role::Editor, &loc.project)?;
        api::check_display_name(&body.display_name)?;
        api::check_description("description", &body.description)?;
        api::check_labels(&body.labels)?;
        let prediction_logging =
            prediction_logs::logging(body.predict_request_response_logging_config.as_ref())?;
        let inference_timeout = inference_timeout(body)?;
        if !body.deployed_models.is_empty() || !body.traffic_split.is_empty() {
            return Err(EndpointError::Invalid(
                "a new endpoint has no deployed models or traffic split; create it, then call :deployModel"
                    .into(),
            ));
        }
        let endpoint_id = match endpoint_id {
            Some(id) => {
                api::check_new_endpoint_id(id)?;
                id.to_string()
            }
            None => new_numeric_id(9),
        };
        let record = Endpoint {
            project: loc.project.clone(),
            location: loc.location.clone(),
            endpoint_id,
            display_name: body.display_name.clone(),
            description: body.description.clone(),
            labels: body.labels.clone(),
            access: body.access,
            prediction_logging,
            inference_timeout,
            ..Default::default()
        };
        let created = self.store.create_endpoint(&record).await?;
        self.wake.wake();
        tracing::info!(endpoint = %created.key().name(), user = %caller.username, "endpoint created");
        let response = operations::typed("Endpoint", serde_json::json!(self.view(&created, &[])));
        let op = operations::finished(loc, OperationKind::CreateEndpoint, &created.key().name(), response);
        Ok(operations::to_api(&self.store.insert_operation(&op).await?))
    }

    pub async fn get(&self, caller: &Caller, name: &EndpointName) -> Result<api::Endpoint> {
        caller.require(Role::Viewer, &name.parent.project)?;
        self.load(&EndpointKey::of(name)).await
    }

    /// The endpoints of a location, by creation time.
    pub async fn list(&self, caller: &Caller, loc: &LocationName) -> Result<Vec<api::Endpoint>> {
        caller.require(Role::Viewer, &loc.project)?;
        let deployed = self.store.list_all_deployed_models().await?;
        Ok(self
            .store
            .list_endpoints(&loc.project, &loc.location)
            .await?
            .iter()
            .map(|e| self.view(e, &deployed))
            .collect())
    }

    /// Changes display name, description, labels, access, request-response logging, the
    /// inference timeout and the traffic split. The
    /// endpoint's `etag`, when given, must be current. Answers once the gateway routes by the
    /// change, so that the caller's next request sees it.
    pub async fn update(
        &self,
        caller: &Caller,
        name: &EndpointName,
        fields: &[EndpointField],
        body: &api::Endpoint,
    ) -> Result<api::Endpoint> {
        caller.require(Role::Editor, &name.parent.project)?;
        let key = EndpointKey::of(name);
        let mut endpoint = self.store.get_endpoint(&key).await?;
        let mut etag = Some(body.etag.clone()).filter(|e| !e.is_empty());
        let mut changed = false;
        for f in fields {
            match f {
                EndpointField::DisplayName => {
                    api::check_display_name(&body.display_name)?;
                    endpoint.display_name = body.display_name.clone();
                    changed = true;
                }
                EndpointField::Description => {
                    api::check_description("description", &body.description)?;
                    endpoint.description = body.description.clone();
                    changed = true;
                }
                EndpointField::Labels => {
                    api::check_labels(&body.labels)?;
                    endpoint.labels = body.labels.clone();
                    changed = true;
                }
                EndpointField::Access => {
                    endpoint.access = body.access;
                    changed = true;
                }
                EndpointField::PredictionLogging => {
                    endpoint.prediction_logging =
                        prediction_logs::logging(body.predict_request_response_logging_config.as_ref())?;
                    changed = true;
                }
                EndpointField::InferenceTimeout => {
                    endpoint.inference_timeout = inference_timeout(body)?;
                    changed = true;
                }
                EndpointField::TrafficSplit => {}
            }
        }
        if changed {
            self.store.update_endpoint(&endpoint, etag.as_deref()).await?;
            etag = None;
        }
        if fields.contains(&EndpointField::TrafficSplit) {
            let deployed = self.store.list_deployed_models(&key).await?;
            let ids: Vec<&str> = deployed
                .iter()
                .filter(|d| d.desired_state != DesiredState::Undeploying)
                .map(|d| d.deployed_model_id.as_str())
                .collect();
            traffic::validate(&body.traffic_split, &ids)?;
            self.store.set_traffic_split(&key, &body.traffic_split, etag.as_deref()).await?;
        }
        let published = self.gateway.next_publish(PUBLISH_WAIT);
        self.wake.wake();
        published.await;
        self.load(&key).await
    }

    /// Deletes an endpoint: refused while models are deployed on it.
    pub async fn delete(&self, caller: &Caller, name: &EndpointName) -> Result<api::Operation> {
        caller.require(Role::Editor, &name.parent.project)?;
        let key = EndpointKey::of(name);
        self.store.delete_endpoint(&key).await?;
        self.wake.wake();
        tracing::info!(endpoint = %key.name(), user = %caller.username, "endpoint deleted");
        let op = operations::finished(&name.parent, OperationKind::Delete, &key.name(), operations::empty());
        Ok(operations::to_api(&self.store.insert_operation(&op).await?))
    }
}
