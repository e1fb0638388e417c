//! Watches of the objects the platform manages: reflector caches of the Deployments, ReplicaSets,
//! Pods and EndpointSlices labelled `app.kubernetes.io/managed-by=<managed_by>` in the backend's
//! namespace, kept up to date by `kube`'s watcher (list, then watch from the list's
//! resourceVersion; on errors it backs off and resumes, re-listing after a 410 Gone) so that
//! `status` reads memory instead of asking the API server every second.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

/// The label EndpointSlices carry with the name of their Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// One watched kind: its cache and whether the cache has been filled by a complete list.
struct Watched<K: Resource + 'static>
where
    K::DynamicType: Eq + Hash + Clone,
{
    store: Store<K>,
    synced: Arc<AtomicBool>,
}

impl<K> Watched<K>
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    /// Starts watching `K` in `namespace` with `selector`; the returned task feeds the cache.
    fn start(client: Client, namespace: &str, selector: &str) -> (Watched<K>, JoinHandle<()>) {
        let (store, writer) = reflector::store::<K>();
        let synced = Arc::new(AtomicBool::new(false));
        let api = Api::<K>::namespaced(client, namespace);
        let kind = K::kind(&K::DynamicType::default()).to_string();
        let config = watcher::Config::default().labels(selector);
        let flag = synced.clone();
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher(api, config).default_backoff().reflect(writer));
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::InitDone) => {
                        if !flag.swap(true, Ordering::AcqRel) {
                            tracing::info!(%kind, "watch cache synced");
                        } else {
                            tracing::debug!(%kind, "watch cache re-listed");
                        }
                    }
                    Ok(_) => {}
                    // The watcher backs off and resumes (re-lists when the API server says the
                    // resourceVersion is gone); the cache keeps what it knew meanwhile.
                    Err(e) => tracing::warn!(%kind, error = %e, "watch failed; retrying"),
                }
            }
        });
        (Watched { store, synced }, task)
    }

    fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// The cached objects whose labels include every one of `labels`.
    fn labelled(&self, labels: &BTreeMap<String, String>) -> Vec<K> {
        self.store
            .state_filter(|o| {
                let have = o.meta().labels.as_ref();
                labels.iter().all(|(k, v)| have.and_then(|l| l.get(k)) == Some(v))
            })
            .into_iter()
            .map(|o| K::clone(&o))
            .collect()
    }
}

/// What the caches hold about one Deployment.
pub struct Snapshot {
    pub deployment: Deployment,
    pub replica_sets: Vec<ReplicaSet>,
    pub pods: Vec<Pod>,
    pub slices: Vec<EndpointSlice>,
}

/// The reflector caches of everything the platform manages in its namespace.
pub struct Caches {
    namespace: String,
    deployments: Watched<Deployment>,
    replica_sets: Watched<ReplicaSet>,
    pods: Watched<Pod>,
    slices: Watched<EndpointSlice>,
    tasks: Vec<JoinHandle<()>>,
}

impl Caches {
    /// Starts the four watches on the current Tokio runtime; `None` (and a warning) outside one.
    pub fn start(client: &Client, namespace: &str, managed_by: &str) -> Option<Caches> {
        if tokio::runtime::Handle::try_current().is_err() {
            tracing::warn!("no Tokio runtime: the kubernetes backend lists instead of watching");
            return None;
        }
        let selector = format!("app.kubernetes.io/managed-by={managed_by}");
        let (deployments, a) = Watched::start(client.clone(), namespace, &selector);
        let (replica_sets, b) = Watched::start(client.clone(), namespace, &selector);
        let (pods, c) = Watched::start(client.clone(), namespace, &selector);
        let (slices, d) = Watched::start(client.clone(), namespace, &selector);
        tracing::info!(%namespace, %selector, "watching Deployments, ReplicaSets, Pods and EndpointSlices");
        Some(Caches {
            namespace: namespace.to_string(),
            deployments,
            replica_sets,
            pods,
            slices,
            tasks: vec![a, b, c, d],
        })
    }

    /// Whether every cache has been filled by a complete list at least once.
    pub fn synced(&self) -> bool {
        self.deployments.synced() && self.replica_sets.synced() && self.pods.synced() && self.slices.synced()
    }

    /// The cached Deployment `name` with its ReplicaSets and Pods (by the Deployment's
    /// selector) and its Service's EndpointSlices; `None` when the cache does not have it.
    pub fn snapshot(&self, name: &str) -> Option<Snapshot> {
        let key = ObjectRef::<Deployment>::new(name).within(&self.namespace);
        let deployment = Deployment::clone(&*self.deployments.store.get(&key)?);
        let selector =
            deployment.spec.as_ref().and_then(|s| s.selector.match_labels.clone()).unwrap_or_default();
        let (replica_sets, pods) = if selector.is_empty() {
            (vec![], vec![])
        } else {
            (self.replica_sets.labelled(&selector), self.pods.labelled(&selector))
        };
        let slices =
            self.slices.labelled(&BTreeMap::from([(SERVICE_NAME_LABEL.to_string(), name.to_string())]));
        Some(Snapshot { deployment, replica_sets, pods, slices })
    }

    /// The names of every cached pod.
    pub fn pod_names(&self) -> Vec<String> {
        self.pods.store.state().iter().filter_map(|p| p.metadata.name.clone()).collect()
    }
}

impl Drop for Caches {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// How long a failed fetch of a crash-looping pod's logs is remembered before it is retried.
pub const LOG_RETRY: Duration = Duration::from_secs(30);

/// The previous run's logs of crash-looping pods, per pod and restart count: a run's logs do
/// not change, so they are fetched once per crash (a failed fetch is retried after
/// [`LOG_RETRY`]).
#[derive(Default)]
pub struct LogCache {
    entries: Mutex<HashMap<String, LogEntry>>,
}

struct LogEntry {
    restarts: i32,
    logs: Option<String>,
    fetched: Instant,
}

impl LogCache {
    /// `Some(logs)` when the logs of `pod`'s run before restart `restarts` are known; `None` when
    /// they should be fetched (never tried, a newer crash, or a failure long enough ago); `Some(None)`
    /// when a recent fetch failed.
    pub fn lookup(&self, pod: &str, restarts: i32) -> Option<Option<String>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(pod).filter(|e| e.restarts == restarts)?;
        match &entry.logs {
            Some(logs) => Some(Some(logs.clone())),
            None if entry.fetched.elapsed() < LOG_RETRY => Some(None),
            None => None,
        }
    }

    pub fn store(&self, pod: &str, restarts: i32, logs: Option<String>) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.insert(pod.to_string(), LogEntry { restarts, logs, fetched: Instant::now() });
    }

    /// Forgets the pods that no longer exist.
    pub fn retain(&self, pods: &[String]) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|name, _| pods.contains(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_are_cached_per_pod_and_restart_count() {
        let cache = LogCache::default();
        assert_eq!(cache.lookup("a", 1), None, "never fetched");
        cache.store("a", 1, Some("boom".into()));
        assert_eq!(cache.lookup("a", 1), Some(Some("boom".into())));
        assert_eq!(cache.lookup("a", 2), None, "a new crash has new logs");
        cache.store("b", 3, None);
        assert_eq!(cache.lookup("b", 3), Some(None), "a failed fetch is not retried at once");
        cache.retain(&["b".to_string()]);
        assert_eq!(cache.lookup("a", 1), None, "gone pods are forgotten");
    }
}
