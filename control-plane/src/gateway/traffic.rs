//! A gateway process's counters, shared through the database (split roles): recorded every
//! `period` and at once when a request waits for a replica, which also signals the API's
//! controller to scale the deployed model up from zero.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Gateway, ModelStats};
use crate::store::{Signal, Store, Timestamp, Traffic};

/// Records `gateway`'s counters as `id` until `shutdown`.
pub async fn report(
    gateway: Arc<Gateway>,
    store: Arc<dyn Store>,
    id: String,
    period: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let demanded = tokio::select! {
            _ = &mut shutdown => return,
            _ = gateway.demanded() => true,
            _ = tokio::time::sleep(period) => false,
        };
        if let Err(e) = store.record_traffic(&id, &gateway.counters(), Timestamp::now()).await {
            tracing::warn!(error = %e, "cannot record the gateway's traffic; autoscaling on requests waits for it");
            continue;
        }
        if demanded && let Err(e) = store.notify(Signal::Demand).await {
            tracing::warn!(error = %e, "cannot signal a waiting request; the controller sees it on its next pass");
        }
    }
}

impl Gateway {
    /// The counters of every deployed model this gateway has routed to.
    pub fn counters(&self) -> Vec<(String, Traffic)> {
        let stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.iter().map(|(id, s)| (id.clone(), s.counted())).collect()
    }
}

impl ModelStats {
    /// The counters now. Requests queued for a slot on a replica (every replica at its
    /// `containerConcurrency`) count as in flight: they are demand as much as those on one.
    pub fn counted(&self) -> Traffic {
        Traffic {
            requests: self.requests.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed) + self.queued.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
        }
    }
}
