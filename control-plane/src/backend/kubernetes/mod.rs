//! The `kubernetes` backend: applies the rendered objects to a cluster with server-side apply
//! (field manager `platform`), reads replicas back from watch caches of Deployments,
//! ReplicaSets, Pods and EndpointSlices, scales through the scale subresource and deletes what
//! it created by label.

pub mod check;
pub mod lease;
pub mod status;
pub mod watch;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PropagationPolicy};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Backend, BackendError, DeploymentStatus};
use crate::manifests::CONTAINER_NAME;
use crate::manifests::{RenderConfig, Rendered, RenderedEndpoint, endpoint_object_name};
use watch::{Caches, LogCache, SERVICE_NAME_LABEL, Snapshot};

/// The field manager of every server-side apply: the fields the platform owns.
pub const FIELD_MANAGER: &str = "platform";
/// Log lines of a crash-looping container's previous run that explain its failure.
pub const CRASH_LOG_LINES: i64 = 20;

/// A namespace of a Kubernetes cluster that runs deployed models.
#[derive(Clone)]
pub struct Kubernetes {
    client: Client,
    render: RenderConfig,
    /// Watch caches of what the platform manages; `None` outside a Tokio runtime.
    caches: Option<Arc<Caches>>,
    logs: Arc<LogCache>,
}

impl Kubernetes {
    /// A backend on `client` for the objects `render` renders (its namespace is the default one).
    /// Starts watching the Deployments, ReplicaSets, Pods and EndpointSlices labelled
    /// `app.kubernetes.io/managed-by=<managed_by>` in that namespace (on the current Tokio
    /// runtime; the watches stop when the last clone of the backend is dropped).
    pub fn new(client: Client, render: RenderConfig) -> Kubernetes {
        let caches = Caches::start(&client, &render.namespace, &render.managed_by).map(Arc::new);
        Kubernetes { client, render, caches, logs: Arc::default() }
    }

    /// Whether `status` reads the watch caches (they have all been filled by a complete list);
    /// before that it asks the API server.
    pub fn watching(&self) -> bool {
        self.caches.as_ref().is_some_and(|c| c.synced())
    }

    /// Connects with in-cluster credentials (a pod's service account) or the local kubeconfig,
    /// whichever `kube` finds first. `namespace` defaults to the credentials' namespace; the
    /// returned backend's [`Kubernetes::render_config`] renders into it.
    pub async fn connect(
        namespace: Option<String>,
        mut render: RenderConfig,
    ) -> Result<Kubernetes, BackendError> {
        let client = Client::try_default()
            .await
            .map_err(|e| BackendError::Other(format!("cannot connect to the Kubernetes API: {e}")))?;
        render.namespace = namespace.unwrap_or_else(|| client.default_namespace().to_string());
        tracing::info!(namespace = %render.namespace, "kubernetes backend connected");
        Ok(Kubernetes::new(client, render))
    }

    /// The controllers' Lease in this backend's namespace, claimed as `identity`.
    pub fn lease(&self, name: &str, identity: &str, duration: std::time::Duration) -> lease::LeaseLock {
        lease::LeaseLock::new(self.client.clone(), &self.render.namespace, name, identity, duration)
    }

    /// How objects must be rendered for this backend (namespace, labels).
    pub fn render_config(&self) -> &RenderConfig {
        &self.render
    }

    fn api<K>(&self, namespace: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), namespace.unwrap_or(&self.render.namespace))
    }

    /// Server-side apply of one object, taking over fields other managers (`kubectl edit`) set:
    /// the manifests are the truth.
    async fn apply_object<K>(&self, object: &K) -> Result<(), BackendError>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Serialize + Debug,
        K::DynamicType: Default,
    {
        let meta = object.meta();
        let name = meta.name.clone().unwrap_or_default();
        let kind = K::kind(&K::DynamicType::default()).to_string();
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.api::<K>(meta.namespace.as_deref())
            .patch(&name, &params, &Patch::Apply(object))
            .await
            .map_err(|e| api_error(format!("apply {kind} {name}"), e))?;
        tracing::debug!(%kind, %name, "applied");
        Ok(())
    }

    /// Deletes one object by name; one that is already gone is fine.
    async fn delete_object<K>(&self, namespace: Option<&str>, name: &str) -> Result<(), BackendError>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        let kind = K::kind(&K::DynamicType::default()).to_string();
        let params =
            DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..Default::default() };
        match self.api::<K>(namespace).delete(name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(api_error(format!("delete {kind} {name}"), e)),
        }
    }

    /// Deletes every object of kind `K` with these labels.
    async fn delete_labelled<K>(&self, selector: &str) -> Result<(), BackendError>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        let kind = K::kind(&K::DynamicType::default()).to_string();
        let list = self
            .api::<K>(None)
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| api_error(format!("list {kind} {selector}"), e))?;
        for object in list.items {
            if let Some(name) = object.meta().name.as_deref() {
                self.delete_object::<K>(None, name).await?;
            }
        }
        Ok(())
    }

    async fn list_labelled<K>(&self, selector: &str) -> Result<Vec<K>, BackendError>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        let kind = K::kind(&K::DynamicType::default()).to_string();
        self.api::<K>(None)
            .list(&ListParams::default().labels(selector))
            .await
            .map(|l| l.items)
            .map_err(|e| api_error(format!("list {kind} {selector}"), e))
    }

    /// Deployment `name` with its ReplicaSets, Pods and EndpointSlices, listed from the API server.
    async fn listed(&self, name: &str) -> Result<Snapshot, BackendError> {
        let deployment = match self.api::<Deployment>(None).get(name).await {
            Ok(d) => d,
            Err(kube::Error::Api(status)) if status.code == 404 => {
                return Err(BackendError::NotFound(name.to_string()));
            }
            Err(e) => return Err(api_error(format!("get Deployment {name}"), e)),
        };
        let selector = deployment
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.as_ref())
            .map(selector_string)
            .unwrap_or_default();
        if selector.is_empty() {
            return Err(BackendError::Invalid(format!("Deployment {name} has no matchLabels selector")));
        }
        let replica_sets = self.list_labelled::<ReplicaSet>(&selector).await?;
        let pods = self.list_labelled::<Pod>(&selector).await?;
        let slices = self.list_labelled::<EndpointSlice>(&format!("{SERVICE_NAME_LABEL}={name}")).await?;
        Ok(Snapshot { deployment, replica_sets, pods, slices })
    }

    /// The previous run's last log lines of every crash-looping pod, fetched once per pod and
    /// restart count.
    async fn crash_logs(&self, pods: &[Pod], now: Timestamp) -> BTreeMap<String, String> {
        let mut logs = BTreeMap::new();
        for pod in pods.iter().filter(|p| status::needs_logs(p, now)) {
            let Some(pod_name) = pod.metadata.name.clone() else { continue };
            let restarts = status::restart_count(pod);
            let text = match self.logs.lookup(&pod_name, restarts) {
                Some(known) => known,
                None => {
                    let params = LogParams {
                        container: Some(CONTAINER_NAME.into()),
                        previous: true,
                        tail_lines: Some(CRASH_LOG_LINES),
                        ..Default::default()
                    };
                    // The logs only explain a failure that is reported anyway.
                    let fetched = match self.api::<Pod>(None).logs(&pod_name, &params).await {
                        Ok(text) => Some(text),
                        Err(e) => {
                            tracing::debug!(pod = %pod_name, error = %e, "no logs of the previous run");
                            None
                        }
                    };
                    self.logs.store(&pod_name, restarts, fetched.clone());
                    fetched
                }
            };
            if let Some(text) = text {
                logs.insert(pod_name, text);
            }
        }
        logs
    }

    /// The labels that mark everything this platform created for deployment `name`.
    fn owned_selector(&self, name: &str) -> String {
        format!("app.kubernetes.io/instance={name},app.kubernetes.io/managed-by={}", self.render.managed_by)
    }
}

#[async_trait]
impl Backend for Kubernetes {
    /// The rendered HorizontalPodAutoscaler reads it from the custom metrics API.
    fn scales_on_gpu_duty_cycle(&self) -> bool {
        true
    }

    async fn apply(&self, deployment: &Deployment) -> Result<Vec<String>, BackendError> {
        self.apply_object(deployment).await?;
        Ok(vec![])
    }

    /// Applies the Deployment, Service, HPA and PDB; an HPA or PDB that the manifests no longer
    /// have is deleted.
    async fn apply_rendered(&self, rendered: &Rendered) -> Result<Vec<String>, BackendError> {
        let mut deployment = rendered.deployment.clone();
        if rendered.hpa.is_some()
            && let Some(spec) = deployment.spec.as_mut()
        {
            // The HPA owns the replica count: applying it too would reset the HPA's decision on
            // every apply (the documented way to combine apply and an HPA).
            spec.replicas = None;
        }
        self.apply_object(&deployment).await?;
        self.apply_object(&rendered.service).await?;
        let name = rendered.deployment.metadata.name.clone().unwrap_or_default();
        let namespace = rendered.deployment.metadata.namespace.as_deref();
        match &rendered.hpa {
            Some(hpa) => self.apply_object(hpa).await?,
            None => self.delete_object::<HorizontalPodAutoscaler>(namespace, &name).await?,
        }
        match &rendered.pdb {
            Some(pdb) => self.apply_object(pdb).await?,
            None => self.delete_object::<PodDisruptionBudget>(namespace, &name).await?,
        }
        Ok(vec![])
    }

    async fn apply_endpoint(&self, endpoint: &RenderedEndpoint) -> Result<Vec<String>, BackendError> {
        if let Some(ingress) = &endpoint.ingress {
            self.apply_object(ingress).await?;
        }
        if let Some(policy) = &endpoint.network_policy {
            self.apply_object(policy).await?;
        }
        Ok(vec![])
    }

    async fn delete_endpoint(&self, endpoint_id: &str) -> Result<(), BackendError> {
        let name = endpoint_object_name(endpoint_id);
        let gateway_namespace = self.render.ingress.gateway_namespace.as_deref();
        self.delete_object::<Ingress>(gateway_namespace, &name).await?;
        self.delete_object::<NetworkPolicy>(None, &name).await
    }

    async fn delete(&self, name: &str) -> Result<(), BackendError> {
        let selector = self.owned_selector(name);
        self.delete_labelled::<Deployment>(&selector).await?;
        self.delete_labelled::<Service>(&selector).await?;
        self.delete_labelled::<HorizontalPodAutoscaler>(&selector).await?;
        self.delete_labelled::<PodDisruptionBudget>(&selector).await
    }

    /// From the watch caches once they are synced; from the API server before that, or when
    /// the cache does not have the Deployment (yet).
    async fn status(&self, name: &str) -> Result<DeploymentStatus, BackendError> {
        let cached = self.caches.as_ref().filter(|c| c.synced()).and_then(|c| c.snapshot(name));
        let snapshot = match cached {
            Some(snapshot) => snapshot,
            None => self.listed(name).await?,
        };
        let Snapshot { deployment, replica_sets, pods, slices } = snapshot;
        if deployment
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.as_ref())
            .is_none_or(|l| l.is_empty())
        {
            return Err(BackendError::Invalid(format!("Deployment {name} has no matchLabels selector")));
        }
        let now = Timestamp::now();
        let logs = self.crash_logs(&pods, now).await;
        if let Some(caches) = &self.caches {
            self.logs.retain(&caches.pod_names());
        }
        Ok(status::deployment_status(&deployment, &replica_sets, &pods, &slices, &logs, now))
    }

    async fn scale(&self, name: &str, replicas: u32) -> Result<(), BackendError> {
        let patch = serde_json::json!({ "spec": { "replicas": replicas } });
        let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        match self.api::<Deployment>(None).patch_scale(name, &params, &Patch::Merge(&patch)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => {
                Err(BackendError::NotFound(name.to_string()))
            }
            Err(e) => Err(api_error(format!("scale Deployment {name}"), e)),
        }
    }

    async fn list(&self) -> Result<Vec<String>, BackendError> {
        let selector = format!("app.kubernetes.io/managed-by={}", self.render.managed_by);
        let deployments = self.list_labelled::<Deployment>(&selector).await?;
        let mut names: Vec<String> = deployments.into_iter().filter_map(|d| d.metadata.name).collect();
        names.sort();
        Ok(names)
    }
}

/// `k=v,k2=v2`, in key order.
fn selector_string(labels: &BTreeMap<String, String>) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// An API error as a backend error that says what was attempted and what the API server said.
fn api_error(action: String, e: kube::Error) -> BackendError {
    match e {
        kube::Error::Api(status) => {
            let message =
                if status.message.is_empty() { status.reason.clone() } else { status.message.clone() };
            match status.code {
                404 => BackendError::NotFound(format!("{action}: {message}")),
                400 | 422 => {
                    BackendError::Invalid(format!("{action}: the API server rejected it: {message}"))
                }
                409 => BackendError::Conflict(format!("{action}: {message}")),
                401 | 403 => BackendError::Forbidden(format!(
                    "{action}: {message} (does the platform's service account have the RBAC it needs?)"
                )),
                code => BackendError::Api { action, code, message },
            }
        }
        other => BackendError::Api { action, code: 0, message: other.to_string() },
    }
}
