//! The controller: makes desired state true. For every deployed model it renders the
//! manifests, keeps them as a Revision, asks the backend to run them, watches readiness,
//! progresses and finishes the operations, and publishes ready replicas to the gateway.
//! It runs on a short period and whenever the API records a change ([`Wake`]); after a restart
//! of the platform the same loop brings every deployed model back.

pub mod autoscale;
pub mod rollout;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;

use autoscale::{Autoscaler, Bounds, Observation};
use rollout::Verdict;
pub use rollout::parse_timeout;

use crate::backend::{Backend, DeploymentStatus};
use crate::endpoints::desired;
use crate::endpoints::traffic::TrafficSplit;
use crate::gateway::{EndpointRoute, Gateway, ModelRoute, Replica, RoutingTable};
use crate::machine::Catalog;
use crate::manifests::{self, RenderConfig, Rendered};
use crate::operations;
use crate::rest::endpoints::deployed_to_api;
use crate::store::{self, EndpointKey, ModelKey, Store, StoreError, Timestamp};
use crate::telemetry::Metrics;

/// Wakes the controller early (after the API changed desired state).
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
    /// Everything but request-based autoscaling, which needs the traffic that a separate
    /// gateway process sees (deployed models run at their minimum, at least one replica).
    NoRequestAutoscaling,
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
    /// Replicas by address, kept across routing snapshots so their load counters persist.
    replicas: Mutex<HashMap<SocketAddr, Arc<Replica>>>,
    /// The autoscaler's memory, by deployment name.
    autoscalers: Mutex<HashMap<String, Autoscaler>>,
    /// The endpoint objects (Ingress, NetworkPolicy) last applied, by endpoint id.
    endpoint_objects: tokio::sync::Mutex<HashMap<String, String>>,
}

/// What a deployed model renders to, with the inputs the controller needs again.
struct Desired {
    objects: Rendered,
    min_replicas: u32,
    bounds: Bounds,
    /// CPU each replica is given by its machine type, the base of CPU utilization.
    cpu_millis: u64,
    timeout: Duration,
    predict_route: String,
    /// Why the edited revision is not what runs, if so.
    problem: Option<String>,
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
        }
    }

    /// Reconciles until `shutdown` resolves.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.reconcile().await {
                tracing::warn!(error = %e, "reconcile pass failed; retrying");
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = self.wake.0.notified() => {}
                _ = self.gateway.demanded() => {}
                _ = tokio::time::sleep(self.config.period) => {}
            }
        }
    }

    /// One pass over every deployed model and endpoint.
    pub async fn reconcile(&self) -> Result<(), ControllerError> {
        if self.config.mode == Mode::RouteOnly {
            return self.route_only().await;
        }
        // Operations first: the API records a deployed model before its operation, so every
        // operation listed here finds its deployed model in the list that follows.
        let operations = self.store.list_unfinished_operations().await?;
        let deployed = self.store.list_all_deployed_models().await?;
        let mut statuses: HashMap<(EndpointKey, String), (DeploymentStatus, String)> = HashMap::new();
        let mut expected: HashSet<String> = HashSet::new();
        let mut succeeded = Vec::new();
        for dm in &deployed {
            let name = manifests::deployment_name(&dm.endpoint_id, &dm.deployed_model_id);
            expected.insert(name.clone());
            let op = |kind: &str| {
                operations.iter().find(|o| {
                    o.kind == kind
                        && o.target == dm.endpoint_key().name()
                        && o.metadata.get("deployedModelId").and_then(Value::as_str)
                            == Some(&dm.deployed_model_id)
                })
            };
            let result = match dm.desired_state.as_str() {
                "deploying" | "deployed" => {
                    let pending = op("deployModel").or_else(|| op("mutateDeployedModel"));
                    self.reconcile_running(dm, &name, pending, &mut succeeded).await
                }
                "undeploying" => self.reconcile_undeploying(dm, &name, op("undeployModel")).await,
                _ => self.remove_failed(dm, &name, None).await,
            };
            match result {
                Ok(Some(found)) => {
                    statuses.insert((dm.endpoint_key(), dm.deployed_model_id.clone()), found);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(deployed_model = %dm.deployed_model_id, error = %e, "reconcile failed")
                }
            }
        }
        // Replicas of deployed models that no longer exist (for example deleted while the
        // platform was down).
        if let Ok(running) = self.backend.list().await {
            for name in running.into_iter().filter(|n| !expected.contains(n)) {
                tracing::info!(deployment = %name, "removing a deployment that nothing wants");
                if let Err(e) = self.backend.delete(&name).await {
                    tracing::warn!(deployment = %name, error = %e, "cannot remove");
                }
            }
        }
        // Operations whose deployed model is gone (its row was removed) are finished here.
        for op in &operations {
            let id = op.metadata.get("deployedModelId").and_then(Value::as_str).unwrap_or_default();
            let exists =
                deployed.iter().any(|d| d.deployed_model_id == id && d.endpoint_key().name() == op.target);
            if exists || id.is_empty() {
                continue;
            }
            let result = match op.kind.as_str() {
                "undeployModel" => {
                    operations::succeed(
                        &*self.store,
                        op,
                        operations::typed("UndeployModelResponse", json!({})),
                    )
                    .await
                }
                _ => {
                    operations::fail(&*self.store, op, "ABORTED", "the deployed model no longer exists").await
                }
            };
            if let Err(e) = result {
                tracing::warn!(operation = %op.operation_id, error = %e, "cannot finish the operation");
            }
        }
        let endpoints = self.store.list_all_endpoints().await?;
        self.reconcile_endpoint_objects(&endpoints).await;
        self.publish(&endpoints, &deployed, &statuses);
        for (op, response) in succeeded {
            if let Err(e) = operations::succeed(&*self.store, &op, response).await {
                tracing::warn!(operation = %op.operation_id, error = %e, "cannot finish the operation");
            }
        }
        Ok(())
    }

    /// Applies each endpoint's Ingress or NetworkPolicy when it changed; removes those of
    /// deleted endpoints.
    async fn reconcile_endpoint_objects(&self, endpoints: &[store::Endpoint]) {
        let mut applied = self.endpoint_objects.lock().await;
        let mut seen = HashSet::new();
        for e in endpoints {
            seen.insert(e.endpoint_id.clone());
            let input = manifests::EndpointInput {
                project: e.project.clone(),
                location: e.location.clone(),
                endpoint_id: e.endpoint_id.clone(),
                access: crate::rest::endpoints::access_of(e),
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

    /// The objects to run for a deployed model: the newest revision when a person edited it
    /// (or rolled back), else the rendering; a new rendered revision when the rendering changed.
    async fn desired(&self, dm: &store::DeployedModel) -> Result<Result<Desired, String>, StoreError> {
        let key = dm.endpoint_key();
        let model = ModelKey::new(&dm.project, &dm.location, &dm.model_id);
        let version = self.store.get_model_version(&model, dm.version_id).await?;
        let desired = match desired::render(dm, &version, &self.config.catalog, &self.config.render) {
            Ok(d) => d,
            Err(message) => return Ok(Err(message)),
        };
        let timeout = match &desired.input.container.deployment_timeout {
            Some(t) => match parse_timeout(t) {
                Ok(t) => t,
                Err(message) => return Ok(Err(message)),
            },
            None => self.config.deploy_timeout,
        };
        let target = |metric: &str| {
            desired
                .compute
                .autoscaling
                .iter()
                .find(|(m, _)| m == metric)
                .and_then(|(_, t)| u32::try_from(*t).ok())
        };
        let mut bounds = Bounds {
            min: desired.compute.min_replicas,
            max: desired.compute.max_replicas,
            target_rpm: target(api::METRIC_REQUESTS),
            target_cpu: target(api::METRIC_CPU),
        };
        let latest = self.store.latest_revision(&key, &dm.deployed_model_id).await?;
        let mut objects = desired.rendered.clone();
        let mut problem = None;
        match latest {
            Some(r) if r.source != "rendered" => {
                match crate::manifests::validate::validate_deployed_model(&r.manifests, &desired.rendered) {
                    Ok(edited) => {
                        // Edited replicas are a fixed count; the autoscaler keeps out.
                        if let Some(n) =
                            desired::replicas(&edited).filter(|n| Some(*n) != desired::replicas(&objects))
                        {
                            bounds = Bounds { min: n, max: n, target_rpm: None, target_cpu: None };
                        }
                        objects = edited;
                    }
                    Err(problems) => {
                        problem = Some(format!(
                            "revision {} no longer fits this deployed model; running the rendered manifests: {problems}",
                            r.revision
                        ));
                    }
                }
            }
            Some(r) if r.manifests == desired.manifests => {}
            _ => {
                let revision = store::Revision {
                    project: dm.project.clone(),
                    location: dm.location.clone(),
                    endpoint_id: dm.endpoint_id.clone(),
                    deployed_model_id: dm.deployed_model_id.clone(),
                    manifests: desired.manifests.clone(),
                    source: "rendered".into(),
                    ..Default::default()
                };
                if self.config.mode != Mode::RouteOnly {
                    let stored = self.store.insert_revision(&revision).await?;
                    tracing::info!(deployed_model = %dm.deployed_model_id, revision = stored.revision, "new revision");
                }
            }
        }
        let predict_route = desired::predict_route(&objects).unwrap_or_default();
        let cpu_millis = desired.compute.machine.cpu_millis;
        Ok(Ok(Desired {
            objects,
            min_replicas: bounds.min,
            bounds,
            cpu_millis,
            timeout,
            predict_route,
            problem,
        }))
    }

    /// Keeps a deploying or deployed model running; finishes its deploy or mutate operation.
    async fn reconcile_running(
        &self,
        dm: &store::DeployedModel,
        name: &str,
        op: Option<&store::Operation>,
        succeeded: &mut Vec<(store::Operation, Value)>,
    ) -> Result<Option<(DeploymentStatus, String)>, StoreError> {
        let key = dm.endpoint_key();
        let desired = match self.desired(dm).await? {
            Ok(d) => d,
            Err(message) => return self.fail(dm, name, op, "INVALID_ARGUMENT", &message).await.map(|_| None),
        };
        let mut objects = desired.objects.clone();
        let replicas = self.autoscale(dm, name, &desired).await;
        if let Some(spec) = objects.deployment.spec.as_mut()
            && (objects.hpa.is_none() || self.backend.measures_cpu())
        {
            spec.replicas = Some(i32::try_from(replicas).unwrap_or(i32::MAX));
        }
        if let Err(e) = self.backend.apply_rendered(&objects).await {
            let message = e.to_string();
            if dm.desired_state == "deploying" {
                return self.fail(dm, name, op, "FAILED_PRECONDITION", &message).await.map(|_| None);
            }
            self.record_status(dm, 0, &message).await?;
            return Ok(None);
        }
        let status = match self.backend.status(name).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(deployment = %name, error = %e, "no status");
                return Ok(None);
            }
        };
        let elapsed = op
            .map(|o| (Timestamp::now().unix_micros() - o.create_time.unix_micros()).max(0))
            .map(|micros| Duration::from_micros(micros as u64))
            .unwrap_or_default();
        // A deploy proves itself with one ready replica even when it may scale to zero.
        let needed =
            if dm.desired_state == "deploying" { desired.min_replicas.max(1) } else { desired.min_replicas };
        let verdict =
            rollout::judge(&status, needed, elapsed, desired.timeout, op.is_some_and(|o| o.cancel_requested));
        let ready = status.ready_current();
        match verdict {
            Verdict::Ready => {
                let mut current = dm.clone();
                if dm.desired_state == "deploying" {
                    current =
                        self.store.set_deployed_model_state(&key, &dm.deployed_model_id, "deployed").await?;
                    tracing::info!(deployment = %name, ready, "deployed");
                }
                self.record_status(&current, ready, desired.problem.as_deref().unwrap_or_default()).await?;
                if let Some(op) = op {
                    let dto =
                        deployed_to_api(&self.store.get_deployed_model(&key, &dm.deployed_model_id).await?);
                    let type_name = if op.kind == "deployModel" {
                        "DeployModelResponse"
                    } else {
                        "MutateDeployedModelResponse"
                    };
                    // Finished once the gateway routes to it (after this pass publishes).
                    succeeded.push((op.clone(), operations::typed(type_name, json!({"deployedModel": dto}))));
                }
            }
            Verdict::Waiting { percent, message } => {
                self.record_status(dm, ready, &message).await?;
                if let Some(op) = op {
                    operations::progress(&*self.store, op, percent, &message).await?;
                }
            }
            Verdict::Failed { code, message } => {
                if dm.desired_state == "deploying" {
                    self.fail(dm, name, op, code, &message).await?;
                    return Ok(None);
                }
                if let Some(op) = op {
                    operations::fail(&*self.store, op, code, &message).await?;
                }
                self.record_status(dm, ready, &message).await?;
            }
        }
        Ok(Some((status, desired.predict_route)))
    }

    /// A gateway process: the routing table from the database and the backend, nothing else.
    async fn route_only(&self) -> Result<(), ControllerError> {
        let deployed = self.store.list_all_deployed_models().await?;
        let mut statuses = HashMap::new();
        for dm in deployed.iter().filter(|d| d.desired_state == "deploying" || d.desired_state == "deployed")
        {
            let name = manifests::deployment_name(&dm.endpoint_id, &dm.deployed_model_id);
            let Ok(desired) = self.desired(dm).await? else { continue };
            if let Ok(status) = self.backend.status(&name).await {
                statuses.insert(
                    (dm.endpoint_key(), dm.deployed_model_id.clone()),
                    (status, desired.predict_route),
                );
            }
        }
        let endpoints = self.store.list_all_endpoints().await?;
        self.publish(&endpoints, &deployed, &statuses);
        Ok(())
    }

    /// The replica count to run now: the autoscaler's decision from what the gateway counted.
    async fn autoscale(&self, dm: &store::DeployedModel, name: &str, desired: &Desired) -> u32 {
        if self.config.mode != Mode::Full {
            return desired.min_replicas.max(1);
        }
        let current = match self.backend.status(name).await {
            Ok(s) => s.desired,
            Err(_) => desired.min_replicas.max(1),
        };
        if dm.desired_state == "deploying" {
            return desired.min_replicas.max(1);
        }
        let stats = self.gateway.stats(&dm.deployed_model_id);
        let cpu_percent = match desired.bounds.target_cpu {
            Some(_) => self
                .backend
                .cpu_per_replica(name)
                .await
                .map(|cores| cores * 100_000.0 / desired.cpu_millis.max(1) as f64),
            None => None,
        };
        let seen = Observation {
            requests: stats.requests.load(std::sync::atomic::Ordering::Relaxed),
            in_flight: stats.in_flight.load(std::sync::atomic::Ordering::Relaxed),
            waiting: stats.waiting.load(std::sync::atomic::Ordering::Relaxed),
            cpu_percent,
        };
        let mut autoscalers = self.autoscalers.lock().unwrap_or_else(|e| e.into_inner());
        let scaler = autoscalers.entry(name.to_string()).or_default();
        let n =
            scaler.decide(std::time::Instant::now(), seen, current, desired.bounds, self.config.autoscale);
        if n != current {
            tracing::info!(deployment = %name, from = current, to = n, "autoscaling");
        }
        n
    }

    async fn record_status(
        &self,
        dm: &store::DeployedModel,
        ready: u32,
        message: &str,
    ) -> Result<(), StoreError> {
        let old: api::DeployedModelStatus = serde_json::from_value(dm.status.clone()).unwrap_or_default();
        let ready = i32::try_from(ready).unwrap_or(i32::MAX);
        if old.available_replica_count == ready && old.message == message && !old.last_update_time.is_empty()
        {
            return Ok(());
        }
        let status = api::DeployedModelStatus {
            message: message.to_string(),
            last_update_time: Timestamp::now().to_string(),
            available_replica_count: ready,
        };
        self.store
            .set_deployed_model_status(&dm.endpoint_key(), &dm.deployed_model_id, &json!(status))
            .await?;
        Ok(())
    }

    /// A deploy that cannot succeed: the operation fails, the replicas go, and the deployed
    /// model is removed with its traffic given back to the others.
    async fn fail(
        &self,
        dm: &store::DeployedModel,
        name: &str,
        op: Option<&store::Operation>,
        code: &str,
        message: &str,
    ) -> Result<(), StoreError> {
        tracing::warn!(deployment = %name, code, message, "deploy failed");
        if let Some(op) = op {
            operations::fail(&*self.store, op, code, message).await?;
        }
        self.store.set_deployed_model_state(&dm.endpoint_key(), &dm.deployed_model_id, "failed").await?;
        let previous =
            op.and_then(|o| serde_json::from_value(o.metadata.get("previousTrafficSplit")?.clone()).ok());
        self.remove_failed(dm, name, previous).await.map(|_| ())
    }

    /// Removes a failed deployed model. Its traffic goes back to the split from before its
    /// deploy when that still holds, else to the other models in proportion.
    async fn remove_failed(
        &self,
        dm: &store::DeployedModel,
        name: &str,
        previous: Option<TrafficSplit>,
    ) -> Result<Option<(DeploymentStatus, String)>, StoreError> {
        if let Err(e) = self.backend.delete(name).await {
            tracing::warn!(deployment = %name, error = %e, "cannot remove replicas");
            return Ok(None);
        }
        let key = dm.endpoint_key();
        let endpoint = self.store.get_endpoint(&key).await?;
        let split: TrafficSplit = serde_json::from_value(endpoint.traffic_split.clone()).unwrap_or_default();
        if split.contains_key(&dm.deployed_model_id) {
            let rest = rollout::split_without(&split, &dm.deployed_model_id);
            let restored = previous.filter(|p| !p.contains_key(&dm.deployed_model_id) && !p.is_empty());
            let applied = match restored {
                Some(p) => self.store.set_traffic_split(&key, &json!(p), None).await.is_ok(),
                None => false,
            };
            if !applied {
                self.store.set_traffic_split(&key, &json!(rest), None).await?;
            }
        }
        self.store.delete_deployed_model(&key, &dm.deployed_model_id).await?;
        Ok(None)
    }

    async fn reconcile_undeploying(
        &self,
        dm: &store::DeployedModel,
        name: &str,
        op: Option<&store::Operation>,
    ) -> Result<Option<(DeploymentStatus, String)>, StoreError> {
        if let Err(e) = self.backend.delete(name).await {
            tracing::warn!(deployment = %name, error = %e, "cannot remove replicas yet");
            return Ok(None);
        }
        let gone = match self.backend.status(name).await {
            Ok(s) => s.replicas.is_empty(),
            Err(crate::backend::BackendError::NotFound(_)) => true,
            Err(e) => {
                tracing::warn!(deployment = %name, error = %e, "no status");
                false
            }
        };
        if !gone {
            if let Some(op) = op {
                operations::progress(&*self.store, op, 50, "stopping replicas").await?;
            }
            return Ok(None);
        }
        self.store.delete_deployed_model(&dm.endpoint_key(), &dm.deployed_model_id).await?;
        tracing::info!(deployment = %name, "undeployed");
        if let Some(op) = op {
            operations::succeed(&*self.store, op, operations::typed("UndeployModelResponse", json!({})))
                .await?;
        }
        Ok(None)
    }

    /// Swaps in a new routing table: every endpoint, its models with ready replicas, its split.
    fn publish(
        &self,
        endpoints: &[store::Endpoint],
        deployed: &[store::DeployedModel],
        statuses: &HashMap<(EndpointKey, String), (DeploymentStatus, String)>,
    ) {
        let mut pool = self.replicas.lock().unwrap_or_else(|e| e.into_inner());
        let mut used: HashSet<SocketAddr> = HashSet::new();
        let mut table = RoutingTable::default();
        self.metrics.ready_replicas.reset();
        for e in endpoints {
            let key = e.key();
            let models: Vec<ModelRoute> = deployed
                .iter()
                .filter(|d| d.endpoint_key() == key && d.desired_state != "undeploying")
                .filter_map(|d| {
                    let (status, route) = statuses.get(&(key.clone(), d.deployed_model_id.clone()))?;
                    let ready = status.ready_addresses();
                    self.metrics
                        .ready_replicas
                        .with_label_values(&[&d.endpoint_id, &d.deployed_model_id])
                        .set(ready.len() as i64);
                    let replicas = ready
                        .into_iter()
                        .map(|a| {
                            used.insert(a);
                            pool.entry(a).or_insert_with(|| Arc::new(Replica::new(a))).clone()
                        })
                        .collect();
                    Some(ModelRoute {
                        deployed_model_id: d.deployed_model_id.clone(),
                        model: ModelKey::new(&d.project, &d.location, &d.model_id).name(),
                        model_version_id: d.version_id.to_string(),
                        model_display_name: d.display_name.clone(),
                        predict_route: route.clone(),
                        replicas,
                        stats: self.gateway.stats(&d.deployed_model_id),
                    })
                })
                .collect();
            let percents: BTreeMap<String, i32> =
                serde_json::from_value(e.traffic_split.clone()).unwrap_or_default();
            let split: HashMap<String, u32> =
                percents.into_iter().map(|(k, v)| (k, u32::try_from(v).unwrap_or(0))).collect();
            let route = EndpointRoute {
                project: e.project.clone(),
                access: crate::rest::endpoints::access_of(e),
                split: crate::gateway::route::split_indices(&models, &split),
                models,
            };
            table.endpoints.insert(key.name(), Arc::new(route));
        }
        pool.retain(|a, _| used.contains(a));
        drop(pool);
        let live: HashSet<String> = deployed.iter().map(|d| d.deployed_model_id.clone()).collect();
        self.gateway.retain_stats(&live);
        let names: HashSet<String> = deployed
            .iter()
            .map(|d| manifests::deployment_name(&d.endpoint_id, &d.deployed_model_id))
            .collect();
        self.autoscalers.lock().unwrap_or_else(|e| e.into_inner()).retain(|n, _| names.contains(n));
        self.gateway.publish(table);
    }
}
