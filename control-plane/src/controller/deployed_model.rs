//! One deployed model through its life: applied and judged while deploying, kept running and
//! scaled while deployed, removed with its traffic given back when it fails, and removed when
//! undeployed. Each step finishes or progresses the operation waiting on it.

use std::time::Duration;

use api::Code;
use serde_json::json;

use super::autoscale::{Decision, Observation, Reason};
use super::revision::{self, Plan};
use super::rollout::{self, Verdict};
use super::routing::Observed;
use super::{Controller, Mode};
use crate::backend::BackendError;
use crate::endpoints::rendering::{self, RenderingError};
use crate::endpoints::{traffic, views};
use crate::operations;
use crate::store::{
    DeployedModel, DesiredState, ModelKey, Operation, OperationKind, Revision, RevisionSource, StoreError,
    Timestamp, TrafficSplit,
};

impl Controller {
    /// What runs for the deployed model now; a new rendered revision when the rendering changed.
    async fn plan(&self, dm: &DeployedModel) -> Result<Result<Plan, RenderingError>, StoreError> {
        let key = dm.endpoint_key();
        let version = self
            .store
            .get_model_version(&ModelKey::new(&dm.project, &dm.location, &dm.model_id), dm.version_id)
            .await?;
        let rendering = match rendering::render(dm, &version, &self.config.catalog, &self.config.render) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let latest = self.store.latest_revision(&key, &dm.deployed_model_id).await?;
        let (plan, store_rendered) =
            revision::plan(&rendering, latest.as_ref(), self.config.deploy_timeout, &self.config.render);
        if store_rendered && self.config.mode != Mode::RouteOnly {
            let revision = Revision {
                project: dm.project.clone(),
                location: dm.location.clone(),
                endpoint_id: dm.endpoint_id.clone(),
                deployed_model_id: dm.deployed_model_id.clone(),
                manifests: rendering.manifests.clone(),
                source: RevisionSource::Rendered,
                ..Default::default()
            };
            let stored = self.store.insert_revision(&revision).await?;
            tracing::info!(deployed_model = %dm.deployed_model_id, revision = stored.revision, "new revision");
        }
        Ok(Ok(plan))
    }

    /// Where the replicas of a deployed model are routed from (for a gateway process).
    pub(super) async fn observe(
        &self,
        dm: &DeployedModel,
        name: &str,
    ) -> Result<Option<Observed>, StoreError> {
        let Ok(plan) = self.plan(dm).await? else { return Ok(None) };
        Ok(self.backend.status(name).await.ok().map(|status| Observed {
            status,
            predict_route: plan.predict_route,
            v2_model: plan.v2_model,
        }))
    }

    /// Keeps a deploying or deployed model running; finishes its deploy or mutate operation
    /// (into `succeeded`, once the gateway routes to it).
    pub(super) async fn reconcile_running(
        &self,
        dm: &DeployedModel,
        name: &str,
        op: Option<&Operation>,
        succeeded: &mut Vec<(Operation, serde_json::Value)>,
    ) -> Result<Option<Observed>, StoreError> {
        let key = dm.endpoint_key();
        let plan = match self.plan(dm).await? {
            Ok(p) => p,
            Err(e) => {
                return self.fail(dm, name, op, Code::InvalidArgument, &e.to_string()).await.map(|_| None);
            }
        };
        let mut objects = plan.objects.clone();
        let delegated = objects.hpa.is_some() && !self.backend.measures_cpu();
        let replicas = self.autoscale(dm, name, &plan, delegated).await;
        if let Some(spec) = objects.deployment.spec.as_mut()
            && !delegated
        {
            spec.replicas = Some(i32::try_from(replicas).unwrap_or(i32::MAX));
        }
        if let Err(e) = self.backend.apply_rendered(&objects).await {
            let message = e.to_string();
            if dm.desired_state == DesiredState::Deploying {
                return self.fail(dm, name, op, Code::FailedPrecondition, &message).await.map(|_| None);
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
        let deploying = dm.desired_state == DesiredState::Deploying;
        // A deploy proves itself with one ready replica even when it may scale to zero.
        let needed = if deploying { plan.bounds.min.max(1) } else { plan.bounds.min };
        let verdict = rollout::judge(
            &status,
            needed,
            elapsed,
            plan.timeout,
            self.config.max_deploy_restarts,
            op.is_some_and(|o| o.cancel_requested),
        );
        let ready = status.ready_current();
        match verdict {
            Verdict::Ready => {
                let mut current = dm.clone();
                if deploying {
                    current = self
                        .store
                        .set_deployed_model_state(&key, &dm.deployed_model_id, DesiredState::Deployed)
                        .await?;
                    tracing::info!(deployment = %name, ready, "deployed");
                }
                let current =
                    self.record_status(&current, ready, plan.problem.as_deref().unwrap_or_default()).await?;
                if let Some(op) = op {
                    let type_name = if op.kind == OperationKind::DeployModel {
                        "DeployModelResponse"
                    } else {
                        "MutateDeployedModelResponse"
                    };
                    let response = json!({"deployedModel": views::deployed_model(&current)});
                    succeeded.push((op.clone(), operations::typed(type_name, response)));
                }
            }
            Verdict::Waiting { percent, message } => {
                self.record_status(dm, ready, &message).await?;
                if let Some(op) = op {
                    operations::progress(&*self.store, op, percent, &message).await?;
                }
            }
            Verdict::Failed { code, message } => {
                if deploying {
                    self.fail(dm, name, op, code, &message).await?;
                    return Ok(None);
                }
                if let Some(op) = op {
                    operations::fail(&*self.store, op, code, &message).await?;
                }
                self.record_status(dm, ready, &message).await?;
            }
        }
        Ok(Some(Observed { status, predict_route: plan.predict_route, v2_model: plan.v2_model }))
    }

    /// The replica count to run now: the autoscaler's decision from what the gateway counted,
    /// recorded for the API when it changed. `delegated`: a HorizontalPodAutoscaler decides
    /// (the count returned is then not applied), and what it decided is recorded.
    async fn autoscale(&self, dm: &DeployedModel, name: &str, plan: &Plan, delegated: bool) -> u32 {
        let at_least_one = plan.bounds.min.max(1);
        if self.config.mode == Mode::RouteOnly || dm.desired_state == DesiredState::Deploying {
            return at_least_one;
        }
        let (current, running) = match self.backend.status(name).await {
            Ok(s) => (s.desired, s.replicas.len() as u32),
            Err(_) => (at_least_one, 0),
        };
        if delegated {
            let decision = Decision { replicas: current, reason: Reason::HorizontalPodAutoscaler };
            self.record_decision(dm, name, running, &decision).await;
            return current;
        }
        let traffic = match self.config.mode {
            Mode::Api => {
                let shared = self.shared_traffic.lock().unwrap_or_else(|e| e.into_inner());
                match shared.as_ref() {
                    Some(all) => all.get(&dm.deployed_model_id).copied().unwrap_or_default(),
                    // The gateways' counts could not be read: decide nothing on no data.
                    None => return current.max(plan.bounds.min),
                }
            }
            Mode::Full | Mode::RouteOnly => self.gateway.stats(&dm.deployed_model_id).counted(),
        };
        let cpu_percent = match plan.bounds.target_cpu {
            Some(_) => self
                .backend
                .cpu_per_replica(name)
                .await
                .map(|cores| cores * 100_000.0 / plan.cpu_millis.max(1) as f64),
            None => None,
        };
        let seen = Observation {
            requests: traffic.requests,
            in_flight: traffic.in_flight,
            waiting: traffic.waiting,
            cpu_percent,
        };
        let decision = {
            let mut autoscalers = self.autoscalers.lock().unwrap_or_else(|e| e.into_inner());
            let scaling = autoscalers.entry(name.to_string()).or_default();
            let now = std::time::Instant::now();
            scaling.autoscaler.decide(now, seen, current, plan.bounds, self.config.autoscale)
        };
        if decision.replicas != current {
            tracing::info!(deployment = %name, from = current, to = decision.replicas,
                reason = %decision.reason, "autoscaling");
        }
        self.record_decision(dm, name, running, &decision).await;
        decision.replicas
    }

    /// Records the decision for the API (any process may serve it) when its counts or the kind
    /// of its reason changed since the last one recorded, not on every pass.
    async fn record_decision(&self, dm: &DeployedModel, name: &str, running: u32, decision: &Decision) {
        let key = (running, decision.replicas, std::mem::discriminant(&decision.reason));
        {
            let autoscalers = self.autoscalers.lock().unwrap_or_else(|e| e.into_inner());
            if autoscalers.get(name).and_then(|s| s.recorded) == Some(key) {
                return;
            }
        }
        let status = api::AutoscalingStatus {
            current_replica_count: i32::try_from(running).unwrap_or(i32::MAX),
            desired_replica_count: i32::try_from(decision.replicas).unwrap_or(i32::MAX),
            reason: decision.reason.to_string(),
            decide_time: Timestamp::now().to_string(),
        };
        match self
            .store
            .set_deployed_model_autoscaling(&dm.endpoint_key(), &dm.deployed_model_id, &status)
            .await
        {
            Ok(_) => {
                let mut autoscalers = self.autoscalers.lock().unwrap_or_else(|e| e.into_inner());
                autoscalers.entry(name.to_string()).or_default().recorded = Some(key);
            }
            Err(e) => {
                tracing::warn!(deployment = %name, error = %e, "cannot record the autoscaling decision")
            }
        }
    }

    /// Records what was observed, when it changed.
    async fn record_status(
        &self,
        dm: &DeployedModel,
        ready: u32,
        message: &str,
    ) -> Result<DeployedModel, StoreError> {
        let old = &dm.status;
        let ready = i32::try_from(ready).unwrap_or(i32::MAX);
        if old.available_replica_count == ready && old.message == message && !old.last_update_time.is_empty()
        {
            return Ok(dm.clone());
        }
        let status = api::DeployedModelStatus {
            message: message.to_string(),
            last_update_time: Timestamp::now().to_string(),
            available_replica_count: ready,
        };
        self.store.set_deployed_model_status(&dm.endpoint_key(), &dm.deployed_model_id, &status).await
    }

    /// A deploy that cannot succeed: the operation fails, the replicas go, and the deployed
    /// model is removed with its traffic given back to the others.
    async fn fail(
        &self,
        dm: &DeployedModel,
        name: &str,
        op: Option<&Operation>,
        code: Code,
        message: &str,
    ) -> Result<(), StoreError> {
        tracing::warn!(deployment = %name, code = code.name(), message, "deploy failed");
        if let Some(op) = op {
            operations::fail(&*self.store, op, code, message).await?;
        }
        self.store
            .set_deployed_model_state(&dm.endpoint_key(), &dm.deployed_model_id, DesiredState::Failed)
            .await?;
        let previous = op.and_then(|o| o.metadata.previous_traffic_split.clone());
        self.remove_failed(dm, name, previous).await
    }

    /// Removes a failed deployed model. Its traffic goes back to the split from before its
    /// deploy when that still holds, else to the other models in proportion.
    pub(super) async fn remove_failed(
        &self,
        dm: &DeployedModel,
        name: &str,
        previous: Option<TrafficSplit>,
    ) -> Result<(), StoreError> {
        if let Err(e) = self.backend.delete(name).await {
            tracing::warn!(deployment = %name, error = %e, "cannot remove replicas");
            return Ok(());
        }
        let key = dm.endpoint_key();
        let endpoint = self.store.get_endpoint(&key).await?;
        let split = &endpoint.traffic_split;
        if split.contains_key(&dm.deployed_model_id) {
            let rest = traffic::redistribute_without(split, &dm.deployed_model_id);
            let restored = previous.filter(|p| !p.contains_key(&dm.deployed_model_id) && !p.is_empty());
            let applied = match restored {
                Some(p) => self.store.set_traffic_split(&key, &p, None).await.is_ok(),
                None => false,
            };
            if !applied {
                self.store.set_traffic_split(&key, &rest, None).await?;
            }
        }
        self.store.delete_deployed_model(&key, &dm.deployed_model_id).await
    }

    /// Stops the replicas of an undeployed model; once they are gone, removes it and finishes
    /// its operation.
    pub(super) async fn reconcile_undeploying(
        &self,
        dm: &DeployedModel,
        name: &str,
        op: Option<&Operation>,
    ) -> Result<(), StoreError> {
        if let Err(e) = self.backend.delete(name).await {
            tracing::warn!(deployment = %name, error = %e, "cannot remove replicas yet");
            return Ok(());
        }
        let gone = match self.backend.status(name).await {
            Ok(s) => s.replicas.is_empty(),
            Err(BackendError::NotFound(_)) => true,
            Err(e) => {
                tracing::warn!(deployment = %name, error = %e, "no status");
                false
            }
        };
        if !gone {
            if let Some(op) = op {
                operations::progress(&*self.store, op, 50, "stopping replicas").await?;
            }
            return Ok(());
        }
        self.store.delete_deployed_model(&dm.endpoint_key(), &dm.deployed_model_id).await?;
        tracing::info!(deployment = %name, "undeployed");
        if let Some(op) = op {
            operations::succeed(&*self.store, op, operations::typed("UndeployModelResponse", json!({})))
                .await?;
        }
        Ok(())
    }
}
