//! The gateway's routing snapshot and the pure decisions made on it: which deployed model
//! takes a request (traffic split), and which replica serves it (least outstanding requests).
//!
//! The controller builds a new [`RoutingTable`] whenever desired state or replica readiness
//! changes and swaps it in atomically; the request path only reads it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use api::Access;

/// A ready replica. Its in-flight counter is shared across snapshots, so that load is not
/// forgotten when the table is rebuilt.
#[derive(Debug)]
pub struct Replica {
    pub address: SocketAddr,
    outstanding: AtomicUsize,
}

impl Replica {
    pub fn new(address: SocketAddr) -> Replica {
        Replica { address, outstanding: AtomicUsize::new(0) }
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Counts a request in flight until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// A request in flight on a replica.
pub struct InFlight(Arc<Replica>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One deployed model as the gateway sees it.
#[derive(Debug, Clone)]
pub struct ModelRoute {
    pub deployed_model_id: String,
    /// The model's resource name (without version).
    pub model: String,
    pub model_version_id: String,
    pub model_display_name: String,
    /// The container's predict route, where `:predict` and `:rawPredict` are forwarded.
    pub predict_route: String,
    pub replicas: Vec<Arc<Replica>>,
    /// What the autoscaler reads; shared across snapshots.
    pub stats: Arc<ModelStats>,
}

/// Counters of one deployed model, for the autoscaler.
#[derive(Debug, Default)]
pub struct ModelStats {
    /// Requests forwarded so far.
    pub requests: std::sync::atomic::AtomicU64,
    /// Requests on their way to a replica or waiting for its answer.
    pub in_flight: std::sync::atomic::AtomicU64,
    /// Requests held because no replica was ready (scale from zero).
    pub waiting: std::sync::atomic::AtomicU64,
}

/// One endpoint: its models and how traffic splits between them.
#[derive(Debug, Clone)]
pub struct EndpointRoute {
    pub project: String,
    pub access: Access,
    pub models: Vec<ModelRoute>,
    /// `(index into models, percent)`, percents summing to 100, or empty for no traffic.
    pub split: Vec<(usize, u32)>,
}

/// Every endpoint the gateway serves, by endpoint resource name.
#[derive(Debug, Clone, Default)]
pub struct RoutingTable {
    pub endpoints: HashMap<String, Arc<EndpointRoute>>,
}

/// The deployed model that takes a request, for a uniform `roll` in `0..100`.
pub fn pick_model(split: &[(usize, u32)], roll: u32) -> Option<usize> {
    let mut acc = 0;
    for &(ix, percent) in split {
        acc += percent;
        if roll < acc {
            return Some(ix);
        }
    }
    None
}

/// The replica with the fewest requests in flight; among equals, the first after `start`
/// (a rotating offset, so that equal replicas share the load).
pub fn pick_replica(replicas: &[Arc<Replica>], start: usize) -> Option<&Arc<Replica>> {
    let n = replicas.len();
    (0..n).map(|k| &replicas[(start + k) % n]).min_by_key(|r| r.outstanding())
}

/// A traffic split in the gateway's form, from `deployed model id -> percent`.
pub fn split_indices(models: &[ModelRoute], split: &HashMap<String, u32>) -> Vec<(usize, u32)> {
    let mut out: Vec<(usize, u32)> = models
        .iter()
        .enumerate()
        .filter_map(|(ix, m)| split.get(&m.deployed_model_id).filter(|p| **p > 0).map(|p| (ix, *p)))
        .collect();
    out.sort_by_key(|(ix, _)| *ix);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_splits_by_percent() {
        let split = [(0, 20), (1, 80)];
        let picks: Vec<usize> = (0..100).filter_map(|roll| pick_model(&split, roll)).collect();
        assert_eq!(picks.iter().filter(|ix| **ix == 0).count(), 20);
        assert_eq!(picks.iter().filter(|ix| **ix == 1).count(), 80);
        assert_eq!(pick_model(&[], 5), None);
        assert_eq!(pick_model(&[(3, 100)], 99), Some(3));
    }

    #[test]
    fn the_least_loaded_replica_serves() {
        let replicas: Vec<Arc<Replica>> =
            (0..3).map(|i| Arc::new(Replica::new(SocketAddr::from(([127, 0, 0, 1], 9000 + i))))).collect();
        let _a = replicas[0].begin();
        let _b = replicas[0].begin();
        let _c = replicas[1].begin();
        assert_eq!(pick_replica(&replicas, 0).map(|r| r.address.port()), Some(9002));
        let in_flight = replicas[2].begin();
        let _d = replicas[2].begin();
        assert_eq!(pick_replica(&replicas, 0).map(|r| r.address.port()), Some(9001));
        drop(in_flight);
        assert_eq!(replicas[2].outstanding(), 1);
        assert!(pick_replica(&[], 0).is_none());
        // Equal load: the rotating start spreads requests.
        let idle: Vec<Arc<Replica>> =
            (0..2).map(|i| Arc::new(Replica::new(SocketAddr::from(([127, 0, 0, 1], 9100 + i))))).collect();
        assert_ne!(pick_replica(&idle, 0).map(|r| r.address), pick_replica(&idle, 1).map(|r| r.address));
    }

    #[test]
    fn splits_map_ids_to_indices_and_drop_zero() {
        let model = |id: &str| ModelRoute {
            deployed_model_id: id.into(),
            model: String::new(),
            model_version_id: "1".into(),
            model_display_name: String::new(),
            predict_route: "/predict".into(),
            replicas: vec![],
            stats: Default::default(),
        };
        let models = vec![model("11"), model("22"), model("33")];
        let split = HashMap::from([("22".to_string(), 70), ("11".to_string(), 30), ("33".to_string(), 0)]);
        assert_eq!(split_indices(&models, &split), vec![(0, 30), (1, 70)]);
    }
}
