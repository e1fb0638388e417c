//! The replicas of a deployed model as the backend sees them: state, restarts, the last exit
//! and the tail of each one's log.

use api::{EndpointName, Role};

use super::{Endpoints, Result};
use crate::auth::Caller;
use crate::backend::{BackendError, ReplicaStatus};
use crate::manifests;
use crate::store::EndpointKey;

/// One replica with the last lines of its log.
#[derive(Debug, Clone, PartialEq)]
pub struct Replica {
    pub status: ReplicaStatus,
    /// The end of the replica's output, when the backend has it.
    pub log_tail: Option<String>,
}

impl Endpoints {
    /// The replicas of a deployed model, the current ones first; none before the controller
    /// has applied it.
    pub async fn replicas(&self, caller: &Caller, name: &EndpointName, id: &str) -> Result<Vec<Replica>> {
        caller.require(Role::Viewer, &name.parent.project)?;
        api::check_deployed_model_id(id)?;
        let key = EndpointKey::of(name);
        self.store.get_deployed_model(&key, id).await?;
        let deployment = manifests::deployment_name(&key.endpoint_id, id);
        let status = match self.backend.status(&deployment).await {
            Ok(status) => status,
            Err(BackendError::NotFound(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut replicas = Vec::new();
        for status in status.replicas {
            let log_tail = self.log_tail(&deployment, &status).await;
            replicas.push(Replica { status, log_tail });
        }
        replicas.sort_by_key(|r| (!r.status.current, r.status.id.clone()));
        Ok(replicas)
    }

    /// The last lines a replica wrote. For now what the backend kept with the replica's last
    /// failure ([`ReplicaStatus::last_error`]); the one place to read the backends' replica
    /// logs instead once they offer them.
    async fn log_tail(&self, _deployment: &str, replica: &ReplicaStatus) -> Option<String> {
        replica.last_error.clone()
    }
}
