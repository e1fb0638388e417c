//! The controller: makes desired state true. For every deployed model it renders the
//! manifests, keeps them as a Revision, asks the backend to run them, watches readiness,
//! progresses and finishes the operations, and publishes ready replicas to the gateway.
//! It runs on a short period and whenever a service records a change ([`Wake`]); after a
//! restart of the platform the same loop brings every deployed model back.
//!
//! The decisions are pure and tested apart: [`revision::plan`] (which manifests run),
//! [`rollout::judge`] (how far a rollout is), [`autoscale`] (how many replicas) and
//! [`routing::routing_table`] (what the gateway routes to). `deployed_model` holds the
//! per-model steps that act on them.

pub mod autoscale;
mod deployed_model;
pub mod leader;
pub mod revision;
pub mod rollout;
pub mod routing;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::sync::Notify;

use autoscale::{Autoscaler, Reason};
use routing::Observations;

use crate::backend::Backend;
use crate::gateway::{Gateway, Replica};
use crate::machine::Catalog;
use crate::manifests::{self, RenderConfig};
use crate::operations;
use crate::store::{
    DeployedModel, DesiredState, Endpoint, Operation, OperationKind, Signal, Store, StoreError, Timestamp,
    Traffic,
};

/// Gateways that recorded no traffic for this long are taken to be gone.
const TRAFFIC_FRESHNESS: Duration = Duration::from_secs(10);
use crate::telemetry::Metrics;

/// Wakes the controller early (after a service changed desired state).
#[derive(Clone, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// Settings of the controller.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// How often the controller looks at the world without being woken.
    pub period: Duration,
    /// How long a deploy may take unless the model's `deploymentTimeout` says otherwise.
    pub deploy_timeout: Duration,
    /// Restarts of a replica that never became ready after which its deploy fails.
    pub max_deploy_restarts: u32,
    pub render: RenderConfig,
    pub catalog: Catalog,
    pub autoscale: autoscale::Tuning,
    pub mode: Mode,
}

/// What a controller does, by the role of its process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Everything: apply, progress operations, autoscale on requests, publish routes.
    Full,
    /// Everything, with the traffic that separate gateway processes record in the database
    /// (an API process of split roles); routing changes are signalled to the gateways.
    Api,
    /// Only publish routes from the database and the backend (a gateway process).
    RouteOnly,
}

/// Why one pass of the controller stopped.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The controller and what it acts on.
pub struct Controller {
    store: Arc<dyn Store>,
    backend: Arc<dyn Backend>,
    gateway: Arc<Gateway>,
    config: ControllerConfig,
    wake: Wake,
    metrics: Metrics,
    /// Replicas by address, kept across routing tables so their load counters persist.
    replicas: Mutex<HashMap<SocketAddr, Arc<Replica>>>,
    /// The autoscaler's memory, by deployment name.
    autoscalers: Mutex<HashMap<String, Scaling>>,
    /// The endpoint objects (Ingress, NetworkPolicy) last applied, by endpoint id.
    endpoint_objects: tokio::sync::Mutex<HashMap<String, String>>,
    /// Whether this controller leads (acts) or only publishes routes.
    lead: leader::Lead,
    /// In [`Mode::Api`]: the gateways' traffic as read at the start of this pass; `None` when
    /// it could not be read (the counts then stay where they are).
    shared_traffic: Mutex<Option<HashMap<String, Traffic>>>,
    /// What the last published routing table looked like, to signal changes to gateways.
    published: Mutex<String>,
}

impl Controller {
    pub fn new(
        store: Arc<dyn Store>,
        backend: Arc<dyn Backend>,
        gateway: Arc<Gateway>,
        config: ControllerConfig,
        wake: Wake,
        metrics: Metrics,
    ) -> Controller {
        Controller {
            store,
            backend,
            gateway,
            config,
            wake,
            metrics,
            replicas: Mutex::new(HashMap::new()),
            autoscalers: Mutex::new(HashMap::new()),
            endpoint_objects: tokio::sync::Mutex::new(HashMap::new()),
            lead: leader::Lead::new(true),
            shared_traffic: Mutex::new(None),
            published: Mutex::new(String::new()),
        }
    }

    /// Acts only while `lead` says so (kept by [`leader::keep`]); publishes routes otherwise.
    pub fn led_by(mut self, lead: leader::Lead) -> Controller {
        self.lead = lead;
        self
    }

    /// Reconciles until `shutdown` resolves.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.reconcile().await {
                tracing::warn!(error = %e, "reconcile pass failed; retrying");
            }
            // Only a gateway of this process has requests; in split roles the gateways'
            // reporters take its demand (and signal it through the database).
            let demanded = async {
                match self.config.mode {
                    Mode::Full => self.gateway.demanded().await,
                    Mode::Api | Mode::RouteOnly => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = self.wake.0.notified() => {}
                _ = demanded => {}
                _ = tokio::time::sleep(self.config.period) => {}
            }
        }
    }

    /// One pass over every deployed model and endpoint.
    pub async fn reconcile(&self) -> Result<(), ControllerError> {
        if self.config.mode == Mode::RouteOnly || !self.lead.leads() {
            return self.route_only().await;
        }
        if self.config.mode == Mode::Api {
            let since = Timestamp::from(time::OffsetDateTime::now_utc() - TRAFFIC_FRESHNESS);
            let traffic = match self.store.traffic_since(since).await {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the gateways' traffic; replica counts stay");
                    None
                }
            };
            *self.shared_traffic.lock().unwrap_or_else(|e| e.into_inner()) = traffic;
        }
        // Operations first: a service records a deployed model before its operation, so every
        // operation listed here finds its deployed model in the list that follows.
        let operations = self.store.list_unfinished_operations().await?;
        let deployed = self.store.list_all_deployed_models().await?;
        let mut observed = Observations::new();
        let mut succeeded = Vec::new();
        for dm in &deployed {
            let name = manifests::deployment_name(&dm.endpoint_id, &dm.deployed_model_id);
            let op = |kind: OperationKind| pending(&operations, dm, kind);
            let result = match dm.desired_state {
                DesiredState::Deploying | DesiredState::Deployed => {
                    let pending =
                        op(OperationKind::DeployModel).or_else(|| op(OperationKind::MutateDeployedModel));
                    self.reconcile_running(dm, &name, pending, &mut succeeded).await
                }
                DesiredState::Undeploying => self
                    .reconcile_undeploying(dm, &name, op(OperationKind::UndeployModel))
                    .await
                    .map(|()| None),
                DesiredState::Failed => self.remove_failed(dm, &name, None).await.map(|()| None),
            };
            match result {
                Ok(Some(seen)) => {
                    observed.insert((dm.endpoint_key(), dm.deployed_model_id.clone()), seen);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(deployed_model = %dm.deployed_model_id, error = %e, "reconcile failed")
                }
            }
        }
        self.remove_unwanted(&deployed).await;
        self.finish_orphaned(&operations, &deployed).await;
        let endpoints = self.store.list_all_endpoints().await?;
        self.reconcile_endpoint_objects(&endpoints).await;
        let names = self.model_names(&deployed).await;
        if self.publish(&endpoints, &deployed, &observed, &names)
            && self.config.mode == Mode::Api
            && let Err(e) = self.store.notify(Signal::RoutesChanged).await
        {
            tracing::warn!(error = %e, "cannot signal a routing change; gateways see it on their next pass");
        }
        for (op, response) in succeeded {
            if let Err(e) = operations::succeed(&*self.store, &op, response).await {
                tracing::warn!(operation = %op.operation_id, error = %e, "cannot finish the operation");
            }
        }
        Ok(())
    }

    /// Removes replicas of deployed models that no longer exist (for example deleted while
    /// the platform was down).
    async fn remove_unwanted(&self, deployed: &[DeployedModel]) {
        let expected: HashSet<String> = deployed
            .iter()
            .map(|d| manifests::deployment_name(&d.endpoint_id, &d.deployed_model_id))
            .collect();
        if let Ok(running) = self.backend.list().await {
            for name in running.into_iter().filter(|n| !expected.contains(n)) {
                tracing::info!(deployment = %name, "removing a deployment that nothing wants");
                if let Err(e) = self.backend.delete(&name).await {
                    tracing::warn!(deployment = %name, error = %e, "cannot remove");
                }
            }
        }
    }

    /// Finishes the operations whose deployed model is gone (its row was removed): an undeploy
    /// succeeded, anything else was aborted.
    async fn finish_orphaned(&self, operations: &[Operation], deployed: &[DeployedModel]) {
        for op in operations {
            let Some(id) = op.metadata.deployed_model_id.as_deref() else { continue };
            if deployed.iter().any(|d| d.deployed_model_id == id && d.endpoint_key().name() == op.target) {
                continue;
            }
            let result = match op.kind {
                OperationKind::UndeployModel => {
                    operations::succeed(
                        &*self.store,
                        op,
                        operations::typed("UndeployModelResponse", json!({})),
                    )
                    .await
                }
                _ => {
                    operations::fail(
                        &*self.store,
                        op,
                        api::Code::Aborted,
                        "the deployed model no longer exists",
                    )
                    .await
                }
            };
            if let Err(e) = result {
                tracing::warn!(operation = %op.operation_id, error = %e, "cannot finish the operation");
            }
        }
    }

    /// Applies each endpoint's Ingress or NetworkPolicy when it changed; removes those of
    /// deleted endpoints.
    async fn reconcile_endpoint_objects(&self, endpoints: &[Endpoint]) {
        let mut applied = self.endpoint_objects.lock().await;
        let mut seen = HashSet::new();
        for e in endpoints {
            seen.insert(e.endpoint_id.clone());
            let input = manifests::EndpointInput {
                project: e.project.clone(),
                location: e.location.clone(),
                endpoint_id: e.endpoint_id.clone(),
                access: e.access,
            };
            let objects = manifests::render_endpoint(&input, &self.config.render);
            let Ok(yaml) = objects.to_yaml() else { continue };
            if applied.get(&e.endpoint_id) == Some(&yaml) {
                continue;
            }
            match self.backend.apply_endpoint(&objects).await {
                Ok(_) => {
                    applied.insert(e.endpoint_id.clone(), yaml);
                }
                Err(err) => {
                    tracing::warn!(endpoint = %e.endpoint_id, error = %err, "cannot apply the endpoint's objects")
                }
            }
        }
        let gone: Vec<String> = applied.keys().filter(|id| !seen.contains(*id)).cloned().collect();
        for id in gone {
            match self.backend.delete_endpoint(&id).await {
                Ok(()) => {
                    applied.remove(&id);
                }
                Err(err) => {
                    tracing::warn!(endpoint = %id, error = %err, "cannot remove the endpoint's objects")
                }
            }
        }
    }

    /// A gateway process: the routing table from the database and the backend, nothing else.
    async fn route_only(&self) -> Result<(), ControllerError> {
        let deployed = self.store.list_all_deployed_models().await?;
        let mut observed = Observations::new();
        for dm in deployed.iter().filter(|d| d.desired_state.is_live()) {
            let name = manifests::deployment_name(&dm.endpoint_id, &dm.deployed_model_id);
            if let Some(seen) = self.observe(dm, &name).await? {
                observed.insert((dm.endpoint_key(), dm.deployed_model_id.clone()), seen);
            }
        }
        let endpoints = self.store.list_all_endpoints().await?;
        let names = self.model_names(&deployed).await;
        self.publish(&endpoints, &deployed, &observed, &names);
        Ok(())
    }

    /// The display names of the models of `deployed`, one list per location.
    async fn model_names(&self, deployed: &[DeployedModel]) -> routing::ModelNames {
        let locations: HashSet<(&str, &str)> =
            deployed.iter().map(|d| (d.project.as_str(), d.location.as_str())).collect();
        let mut names = routing::ModelNames::new();
        for (project, location) in locations {
            match self.store.list_models(project, location).await {
                Ok(models) => names.extend(models.into_iter().map(|m| (m.key().name(), m.display_name))),
                Err(e) => {
                    tracing::warn!(%project, %location, error = %e, "cannot list the models' display names")
                }
            }
        }
        names
    }

    /// Swaps in a new routing table, and forgets what belonged to deployed models that are gone.
    /// Whether the table routes differently from the last one.
    fn publish(
        &self,
        endpoints: &[Endpoint],
        deployed: &[DeployedModel],
        observed: &Observations,
        model_names: &routing::ModelNames,
    ) -> bool {
        let table = {
            let mut pool = self.replicas.lock().unwrap_or_else(|e| e.into_inner());
            routing::routing_table(endpoints, deployed, observed, model_names, &mut pool, |id| {
                self.gateway.stats(id)
            })
        };
        self.metrics.ready_replicas.reset();
        let mut ready_by_endpoint: HashMap<String, u32> =
            endpoints.iter().map(|e| (e.key().name(), 0)).collect();
        for ((key, id), seen) in observed {
            if deployed.iter().any(|d| d.deployed_model_id == *id && d.desired_state.is_live()) {
                let ready = seen.status.ready_addresses().len();
                self.metrics.ready_replicas.with_label_values(&[&key.endpoint_id, id]).set(ready as i64);
                *ready_by_endpoint.entry(key.name()).or_default() += ready as u32;
            }
        }
        for (endpoint, ready) in &ready_by_endpoint {
            self.metrics.history.replicas(endpoint, *ready);
        }
        self.metrics.history.retain(&ready_by_endpoint.keys().cloned().collect());
        let live: HashSet<String> = deployed.iter().map(|d| d.deployed_model_id.clone()).collect();
        self.gateway.retain_stats(&live);
        let names: HashSet<String> = deployed
            .iter()
            .map(|d| manifests::deployment_name(&d.endpoint_id, &d.deployed_model_id))
            .collect();
        self.autoscalers.lock().unwrap_or_else(|e| e.into_inner()).retain(|n, _| names.contains(n));
        let print = routing::fingerprint(&table);
        self.gateway.publish(table);
        let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
        let changed = *published != print;
        *published = print;
        changed
    }
}

/// One deployed model's autoscaler, and what of its decisions was last recorded in the database
/// (the counts and the kind of reason: the measured values in the words change on every pass).
#[derive(Default)]
struct Scaling {
    autoscaler: Autoscaler,
    recorded: Option<(u32, u32, std::mem::Discriminant<Reason>)>,
}

/// The unfinished operation of `kind` acting on `dm`.
fn pending<'a>(
    operations: &'a [Operation],
    dm: &DeployedModel,
    kind: OperationKind,
) -> Option<&'a Operation> {
    operations.iter().find(|o| {
        o.kind == kind
            && o.target == dm.endpoint_key().name()
            && o.metadata.deployed_model_id.as_deref() == Some(dm.deployed_model_id.as_str())
    })
}
