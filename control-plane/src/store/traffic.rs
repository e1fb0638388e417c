//! What gateways count, shared through the database when the platform runs as separate
//! processes (`--role api` and `--role gateway`): each gateway records its counters per
//! deployed model every second, the API's controller sums them to autoscale; and signals
//! between the processes (a request waiting for a replica, a routing change), which PostgreSQL
//! carries as NOTIFY.

use std::collections::HashMap;

use async_trait::async_trait;

use super::{Result, Timestamp};

/// One gateway's counters for one deployed model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Requests forwarded since the gateway started.
    pub requests: u64,
    /// Requests on their way to a replica or waiting for its answer.
    pub in_flight: u64,
    /// Requests held because no replica was ready.
    pub waiting: u64,
}

impl std::ops::AddAssign for Traffic {
    fn add_assign(&mut self, other: Traffic) {
        self.requests = self.requests.saturating_add(other.requests);
        self.in_flight = self.in_flight.saturating_add(other.in_flight);
        self.waiting = self.waiting.saturating_add(other.waiting);
    }
}

/// Gateways' counters by deployed model id.
#[async_trait]
pub trait TrafficStore: Send + Sync {
    /// Records what `gateway` counted at `now`, one row per deployed model.
    async fn record_traffic(&self, gateway: &str, counts: &[(String, Traffic)], now: Timestamp)
    -> Result<()>;
    /// The sums over the gateways that recorded since `since`, by deployed model; rows older
    /// than that (gateways that stopped) are deleted.
    async fn traffic_since(&self, since: Timestamp) -> Result<HashMap<String, Traffic>>;
}

/// What one process tells the others on the same database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// A gateway holds a request for a deployed model without a ready replica.
    Demand,
    /// The routing table changed (the controller applied, scaled or changed a split).
    RoutesChanged,
}

impl Signal {
    /// The PostgreSQL channel.
    pub fn channel(self) -> &'static str {
        match self {
            Signal::Demand => "platform_demand",
            Signal::RoutesChanged => "platform_routes",
        }
    }
}

/// Signals between processes on one database.
#[async_trait]
pub trait Signals: Send + Sync {
    /// Tells the other processes that `signal` happened.
    async fn notify(&self, signal: Signal) -> Result<()>;
    /// The `signal`s other processes send from now on; `None` where the database has no way to
    /// carry them (SQLite, which one process owns).
    async fn listen(&self, signal: Signal) -> Result<Option<tokio::sync::mpsc::Receiver<()>>>;
}

/// A `gateway_traffic` sum as read.
#[derive(sqlx::FromRow)]
pub(crate) struct TrafficRow {
    pub deployed_model_id: String,
    requests: i64,
    in_flight: i64,
    waiting: i64,
}

impl TrafficRow {
    pub(crate) fn decode(&self) -> Traffic {
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Traffic {
            requests: count(self.requests),
            in_flight: count(self.in_flight),
            waiting: count(self.waiting),
        }
    }
}
