//! Leader election: of several controllers that share one database (the replicas of the API
//! Deployment on a cluster, or several `platform serve` on one PostgreSQL), only the leader
//! applies manifests, progresses operations and autoscales; the others only publish routes.
//! When the leader stops, another takes over within the lease time.
//!
//! The leader renews its claim every third of the lease; a claim it cannot renew (an error, a
//! lost connection) ends its lead at once, well before the lease lets another take over, so two
//! controllers never act together.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use crate::backend::kubernetes::lease::LeaseLock;
use crate::store::AdvisoryLock;

/// Why a claim could not be taken or kept.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct LeaderError(pub String);

/// A claim that at most one process holds at a time.
#[async_trait]
pub trait Leadership: Send + Sync {
    /// Takes the claim, or keeps it when this process holds it; whether it holds it now.
    async fn hold(&self) -> Result<bool, LeaderError>;
    /// Gives the claim up (on shutdown), so that another process takes over at once.
    async fn release(&self);
    /// What the claim is, for logs.
    fn describe(&self) -> String;
}

/// The only controller there can be (SQLite: the data directory's lock keeps out a second
/// platform).
pub struct Sole;

#[async_trait]
impl Leadership for Sole {
    async fn hold(&self) -> Result<bool, LeaderError> {
        Ok(true)
    }

    async fn release(&self) {}

    fn describe(&self) -> String {
        "the only controller".into()
    }
}

#[async_trait]
impl Leadership for LeaseLock {
    async fn hold(&self) -> Result<bool, LeaderError> {
        self.try_hold().await.map_err(|e| LeaderError(format!("the Lease: {e}")))
    }

    async fn release(&self) {
        if let Err(e) = LeaseLock::release(self).await {
            tracing::warn!(error = %e, "cannot give the controllers' Lease up; another controller takes it when it lapses");
        }
    }

    fn describe(&self) -> String {
        LeaseLock::describe(self)
    }
}

#[async_trait]
impl Leadership for AdvisoryLock {
    async fn hold(&self) -> Result<bool, LeaderError> {
        self.try_hold().await.map_err(|e| LeaderError(format!("the PostgreSQL advisory lock: {e}")))
    }

    async fn release(&self) {
        AdvisoryLock::release(self).await
    }

    fn describe(&self) -> String {
        format!("PostgreSQL advisory lock {ADVISORY_LOCK_KEY}")
    }
}

/// The advisory lock of the controllers ("platform" in ASCII).
pub const ADVISORY_LOCK_KEY: i64 = 0x706c_6174_666f_726d;

/// Name of the controllers' Lease.
pub const LEASE_NAME: &str = "platform-controller";

/// Whether this process leads, as last found; kept by [`keep`].
#[derive(Clone)]
pub struct Lead(Arc<AtomicBool>);

impl Lead {
    /// Starts as `leading` (true for [`Sole`], false for an election until it is won).
    pub fn new(leading: bool) -> Lead {
        Lead(Arc::new(AtomicBool::new(leading)))
    }

    pub fn leads(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Records what the claim said; whether that changed anything.
    pub fn set(&self, leading: bool) -> bool {
        self.0.swap(leading, Ordering::AcqRel) != leading
    }
}

/// Keeps `claim` every `renew` until `shutdown`, then releases it. `changed` runs when the
/// lead is won or lost (the controller wakes to act at once).
pub async fn keep(
    claim: Arc<dyn Leadership>,
    lead: Lead,
    renew: Duration,
    changed: impl Fn(),
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let leading = match claim.hold().await {
            Ok(leading) => leading,
            Err(e) => {
                tracing::warn!(claim = %claim.describe(), error = %e, "cannot hold the controller's lead");
                false
            }
        };
        if lead.set(leading) {
            if leading {
                tracing::info!(claim = %claim.describe(), "this controller leads");
            } else {
                tracing::info!(claim = %claim.describe(), "this controller no longer leads; another one acts");
            }
            changed();
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(renew) => {}
        }
    }
    if lead.leads() {
        lead.set(false);
        claim.release().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A claim whose answers the test scripts.
    struct Scripted(Mutex<Vec<Result<bool, LeaderError>>>, Arc<AtomicBool>);

    #[async_trait]
    impl Leadership for Scripted {
        async fn hold(&self) -> Result<bool, LeaderError> {
            let mut answers = self.0.lock().unwrap();
            if answers.len() > 1 { answers.remove(0) } else { answers[0].clone() }
        }

        async fn release(&self) {
            self.1.store(true, Ordering::Release);
        }

        fn describe(&self) -> String {
            "scripted".into()
        }
    }

    #[tokio::test]
    async fn an_error_ends_the_lead_at_once_and_a_leader_releases_on_shutdown() {
        let released = Arc::new(AtomicBool::new(false));
        let claim = Arc::new(Scripted(
            Mutex::new(vec![Ok(true), Err(LeaderError("connection reset".into())), Ok(true)]),
            released.clone(),
        ));
        let lead = Lead::new(false);
        let (changed, mut changes) = tokio::sync::mpsc::unbounded_channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(keep(
            claim,
            lead.clone(),
            Duration::from_millis(10),
            {
                let lead = lead.clone();
                move || changed.send(lead.leads()).unwrap()
            },
            async move {
                let _ = stopped.await;
            },
        ));
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(changes.recv().await.unwrap());
        }
        assert_eq!(seen, [true, false, true], "an error is not a lead");
        stop.send(()).unwrap();
        task.await.unwrap();
        assert!(!lead.leads());
        assert!(released.load(Ordering::Acquire), "the claim is given up for the next one");
    }
}
