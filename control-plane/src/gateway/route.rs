//! The gateway's routing snapshot and the pure decisions made on it: which deployed model
//! takes a request (traffic split), and which replica serves it (least outstanding requests,
//! below the deployed model's per-replica concurrency limit, and not one that refused a
//! connection a moment ago).
//!
//! The controller builds a new [`RoutingTable`] whenever desired state or replica readiness
//! changes and swaps it in atomically; the request path only reads it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use api::Access;

use crate::store::{EndpointKey, PredictionLogging};

/// A ready replica. Its in-flight counter is shared across snapshots, so that load is not
/// forgotten when the table is rebuilt.
#[derive(Debug)]
pub struct Replica {
    pub address: SocketAddr,
    outstanding: AtomicUsize,
    /// When this replica was first routed to: the base of `ejected_until`.
    born: Instant,
    /// Milliseconds after `born` until which the replica is left out (it refused a connection);
    /// 0 when it is not.
    ejected_until: AtomicU64,
}

impl Replica {
    pub fn new(address: SocketAddr) -> Replica {
        Replica {
            address,
            outstanding: AtomicUsize::new(0),
            born: Instant::now(),
            ejected_until: AtomicU64::new(0),
        }
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Counts a request in flight until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Counts a request in flight when fewer than `limit` are: the replica's concurrency limit.
    pub fn try_begin(self: &Arc<Self>, limit: usize) -> Option<InFlight> {
        self.outstanding
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| (n < limit).then_some(n + 1))
            .ok()
            .map(|_| InFlight(self.clone()))
    }

    /// Leaves the replica out of routing until `now + period` (it refused a connection). The
    /// controller's next table brings it back sooner when its readiness probe failed and passed
    /// again (a replica that was not ready comes back as a new entry).
    pub fn eject(&self, now: Instant, period: Duration) {
        let until = now.saturating_duration_since(self.born) + period;
        self.ejected_until
            .store(u64::try_from(until.as_millis()).unwrap_or(u64::MAX).max(1), Ordering::Relaxed);
    }

    /// Whether the replica is left out of routing at `now`.
    pub fn is_ejected(&self, now: Instant) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && (now.saturating_duration_since(self.born).as_millis() as u64) < until
    }
}

/// A request in flight on a replica.
#[derive(Debug)]
pub struct InFlight(Arc<Replica>);

impl InFlight {
    /// The replica the request is on.
    pub fn replica(&self) -> &Arc<Replica> {
        &self.0
    }
}

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
    /// The name the replicas serve the model under in the Open Inference Protocol V2
    /// (`/v2/models/{name}/...`), when they speak it (the prebuilt runtime); `None` for a
    /// custom container, to which the gateway routes no V2 call.
    pub v2_model: Option<String>,
    pub replicas: Vec<Arc<Replica>>,
    /// The most requests one replica is given at once (`containerConcurrency`); more wait in
    /// the deployed model's bounded queue.
    pub concurrency: usize,
    /// `enableAccessLogging`: one access-log line per prediction.
    pub access_logging: bool,
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
    /// Requests queued because every replica was at its concurrency limit.
    pub queued: std::sync::atomic::AtomicU64,
    /// Signalled when a request on one of its replicas finishes: a queued request may go.
    pub freed: tokio::sync::Notify,
}

/// One endpoint: its models and how traffic splits between them.
#[derive(Debug, Clone)]
pub struct EndpointRoute {
    pub key: EndpointKey,
    pub project: String,
    pub access: Access,
    /// Request-response logging: which share of predictions is kept.
    pub prediction_logging: PredictionLogging,
    pub models: Vec<Arc<ModelRoute>>,
    /// `(index into models, percent)`, percents summing to 100, or empty for no traffic.
    pub split: Vec<(usize, u32)>,
    /// `clientConnectionConfig.inferenceTimeout`: how long a request may wait for a replica's
    /// slot and its answer; `None` for the gateway's default (`--predict-timeout`).
    pub timeout: Option<Duration>,
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

/// The replica with the fewest requests in flight, leaving out those ejected at `now`; among
/// equals, the first after `start` (a rotating offset, so that equal replicas share the load).
pub fn pick_replica(replicas: &[Arc<Replica>], start: usize, now: Instant) -> Option<&Arc<Replica>> {
    let n = replicas.len();
    (0..n).map(|k| &replicas[(start + k) % n]).filter(|r| !r.is_ejected(now)).min_by_key(|r| r.outstanding())
}

/// What becomes of a request that wants a replica of a deployed model.
#[derive(Debug)]
pub enum Admission {
    /// Sent to this replica (counted in flight until dropped).
    Go(InFlight),
    /// Every routable replica is at the concurrency limit: queue, or refuse when the queue is full.
    Full,
    /// No replica may take it: none is ready, or all refused connections a moment ago.
    NoReplica,
}

/// Admits a request on the least loaded routable replica that is below `limit`.
pub fn admit(replicas: &[Arc<Replica>], start: usize, limit: usize, now: Instant) -> Admission {
    // Another request may take the last slot between the pick and the claim: look again.
    for _ in 0..4 {
        let Some(replica) = pick_replica(replicas, start, now) else { return Admission::NoReplica };
        if replica.outstanding() >= limit {
            return Admission::Full;
        }
        if let Some(in_flight) = replica.try_begin(limit) {
            return Admission::Go(in_flight);
        }
    }
    Admission::Full
}

/// A traffic split in the gateway's form, from `deployed model id -> percent`.
pub fn split_indices(models: &[Arc<ModelRoute>], split: &HashMap<String, u32>) -> Vec<(usize, u32)> {
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
        let now = Instant::now();
        let _a = replicas[0].begin();
        let _b = replicas[0].begin();
        let _c = replicas[1].begin();
        assert_eq!(pick_replica(&replicas, 0, now).map(|r| r.address.port()), Some(9002));
        let in_flight = replicas[2].begin();
        let _d = replicas[2].begin();
        assert_eq!(pick_replica(&replicas, 0, now).map(|r| r.address.port()), Some(9001));
        drop(in_flight);
        assert_eq!(replicas[2].outstanding(), 1);
        assert!(pick_replica(&[], 0, now).is_none());
        // Equal load: the rotating start spreads requests.
        let idle: Vec<Arc<Replica>> = (0..2).map(|i| replica(9100 + i)).collect();
        assert_ne!(
            pick_replica(&idle, 0, now).map(|r| r.address),
            pick_replica(&idle, 1, now).map(|r| r.address)
        );
    }

    fn replica(port: u16) -> Arc<Replica> {
        Arc::new(Replica::new(SocketAddr::from(([127, 0, 0, 1], port))))
    }

    #[test]
    fn replicas_take_requests_up_to_the_concurrency_limit() {
        let replicas = [replica(9200), replica(9201)];
        let now = Instant::now();
        let go = |a: Admission| match a {
            Admission::Go(f) => f,
            other => panic!("{other:?}"),
        };
        let first = go(admit(&replicas, 0, 2, now));
        let second = go(admit(&replicas, 0, 2, now));
        assert_ne!(first.replica().address, second.replica().address, "the least loaded replica first");
        let _third = go(admit(&replicas, 0, 2, now));
        let _fourth = go(admit(&replicas, 0, 2, now));
        assert!(matches!(admit(&replicas, 0, 2, now), Admission::Full), "two replicas of two slots each");
        assert!(replicas[0].try_begin(2).is_none());
        drop(first);
        assert!(matches!(admit(&replicas, 0, 2, now), Admission::Go(_)), "a freed slot is taken");
        assert!(matches!(admit(&[], 0, 2, now), Admission::NoReplica));
    }

    #[test]
    fn a_replica_that_refused_is_left_out_for_a_while() {
        let replicas = [replica(9300), replica(9301)];
        let now = Instant::now();
        replicas[0].eject(now, Duration::from_secs(5));
        assert!(replicas[0].is_ejected(now + Duration::from_secs(4)));
        for start in 0..2 {
            assert_eq!(pick_replica(&replicas, start, now).map(|r| r.address.port()), Some(9301));
        }
        replicas[1].eject(now, Duration::from_secs(5));
        assert!(matches!(admit(&replicas, 0, 10, now), Admission::NoReplica), "all refused: none");
        let later = now + Duration::from_secs(6);
        assert!(!replicas[0].is_ejected(later));
        assert!(matches!(admit(&replicas, 0, 10, later), Admission::Go(_)), "tried again after the period");
    }

    #[test]
    fn splits_map_ids_to_indices_and_drop_zero() {
        let model = |id: &str| ModelRoute {
            deployed_model_id: id.into(),
            model: String::new(),
            model_version_id: "1".into(),
            model_display_name: String::new(),
            predict_route: "/predict".into(),
            v2_model: None,
            replicas: vec![],
            concurrency: 80,
            access_logging: false,
            stats: Default::default(),
        };
        let models = vec![Arc::new(model("11")), Arc::new(model("22")), Arc::new(model("33"))];
        let split = HashMap::from([("22".to_string(), 70), ("11".to_string(), 30), ("33".to_string(), 0)]);
        assert_eq!(split_indices(&models, &split), vec![(0, 30), (1, 70)]);
    }
}
