//! Long-running operations: how they are recorded, progressed and finished in Vertex's shape
//! (`metadata` with `@type`, `genericMetadata` and the operation's own fields), and the
//! service behind get, list, `:wait`, `:cancel` and delete. The registry and endpoint services
//! create them; the controller finishes the ones that wait for replicas.

use std::sync::Arc;
use std::time::{Duration, Instant};

use api::{Code, LocationName, Role};
use serde_json::{Value, json};

use crate::auth::{AuthError, Caller};
use crate::controller::Wake;
use crate::store::{
    GenericMetadata, Operation, OperationKind, OperationMetadata, OperationStore, Store, StoreError,
    Timestamp, new_numeric_id,
};

/// The longest `:wait` (Vertex caps it too).
const MAX_WAIT: Duration = Duration::from_secs(600);
const DEFAULT_WAIT: Duration = Duration::from_secs(60);
/// How often `:wait` looks again.
const WAIT_POLL: Duration = Duration::from_millis(200);

/// Why an operation request failed.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    #[error("operation id `{0}` is invalid: operation ids are digits")]
    InvalidId(String),
    #[error("operations filter `{0}` is not supported: use done=true or done=false")]
    InvalidFilter(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl api::Coded for OperationError {
    fn code(&self) -> Code {
        match self {
            OperationError::InvalidId(_) | OperationError::InvalidFilter(_) => Code::InvalidArgument,
            OperationError::Auth(e) => e.code(),
            OperationError::Store(e) => e.code(),
        }
    }
}

/// The operations service.
pub struct Operations {
    store: Arc<dyn Store>,
    wake: Wake,
}

impl Operations {
    pub fn new(store: Arc<dyn Store>, wake: Wake) -> Operations {
        Operations { store, wake }
    }

    pub async fn get(
        &self,
        caller: &Caller,
        loc: &LocationName,
        id: &str,
    ) -> Result<api::Operation, OperationError> {
        caller.require(Role::Viewer, &loc.project)?;
        check_id(id)?;
        Ok(to_api(&self.store.get_operation(&loc.project, &loc.location, id).await?))
    }

    /// The operations of a location, newest first; `filter` is empty, `done=true` or
    /// `done=false`.
    pub async fn list(
        &self,
        caller: &Caller,
        loc: &LocationName,
        filter: &str,
    ) -> Result<Vec<api::Operation>, OperationError> {
        caller.require(Role::Viewer, &loc.project)?;
        let done = match filter.trim() {
            "" => None,
            "done=true" | "done = true" => Some(true),
            "done=false" | "done = false" => Some(false),
            other => return Err(OperationError::InvalidFilter(other.to_string())),
        };
        let mut ops = self.store.list_operations(&loc.project, &loc.location).await?;
        ops.retain(|o| done.is_none_or(|d| o.done == d));
        Ok(ops.iter().rev().map(to_api).collect())
    }

    /// The operation once it is done, or as it is after `timeout` (default 60 s, at most 600 s).
    pub async fn wait(
        &self,
        caller: &Caller,
        loc: &LocationName,
        id: &str,
        timeout: Option<api::Duration>,
    ) -> Result<api::Operation, OperationError> {
        caller.require(Role::Viewer, &loc.project)?;
        check_id(id)?;
        let timeout = timeout.map_or(DEFAULT_WAIT, |t| t.get().min(MAX_WAIT));
        let deadline = Instant::now() + timeout;
        loop {
            let op = self.store.get_operation(&loc.project, &loc.location, id).await?;
            let now = Instant::now();
            if op.done || now >= deadline {
                return Ok(to_api(&op));
            }
            tokio::time::sleep(WAIT_POLL.min(deadline - now)).await;
        }
    }

    /// Asks the worker doing the operation to stop; done operations stay as they are.
    pub async fn cancel(&self, caller: &Caller, loc: &LocationName, id: &str) -> Result<(), OperationError> {
        caller.require(Role::Editor, &loc.project)?;
        check_id(id)?;
        self.store.request_cancel_operation(&loc.project, &loc.location, id).await?;
        self.wake.wake();
        Ok(())
    }

    /// Forgets an operation.
    pub async fn delete(&self, caller: &Caller, loc: &LocationName, id: &str) -> Result<(), OperationError> {
        caller.require(Role::Editor, &loc.project)?;
        check_id(id)?;
        Ok(self.store.delete_operation(&loc.project, &loc.location, id).await?)
    }
}

fn check_id(id: &str) -> Result<(), OperationError> {
    if id.is_empty() || id.len() > 32 || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(OperationError::InvalidId(id.to_string()));
    }
    Ok(())
}

/// The metadata `@type` of each kind of operation.
pub fn metadata_type(kind: OperationKind) -> String {
    let name = match kind {
        OperationKind::CreateEndpoint => "CreateEndpointOperationMetadata",
        OperationKind::UploadModel => "UploadModelOperationMetadata",
        OperationKind::DeployModel => "DeployModelOperationMetadata",
        OperationKind::UndeployModel => "UndeployModelOperationMetadata",
        OperationKind::MutateDeployedModel => "MutateDeployedModelOperationMetadata",
        OperationKind::Delete => "DeleteOperationMetadata",
    };
    format!("{}{name}", api::TYPE_PREFIX)
}

/// A new operation on `target`, not done yet.
pub fn start(loc: &LocationName, kind: OperationKind, target: &str) -> Operation {
    let now = Timestamp::now();
    Operation {
        project: loc.project.clone(),
        location: loc.location.clone(),
        operation_id: new_numeric_id(18),
        target: target.to_string(),
        kind,
        metadata: OperationMetadata {
            type_url: metadata_type(kind),
            generic_metadata: GenericMetadata { create_time: now, update_time: now },
            target: target.to_string(),
            verb: kind.as_str().to_string(),
            ..Default::default()
        },
        done: false,
        error: None,
        response: None,
        cancel_requested: false,
        create_time: now,
        update_time: now,
    }
}

/// A new operation whose work is already done, with its response.
pub fn finished(loc: &LocationName, kind: OperationKind, target: &str, response: Value) -> Operation {
    let mut op = start(loc, kind, target);
    op.metadata.progress_percent = Some(100);
    op.done = true;
    op.response = Some(response);
    op
}

/// `{"@type": ..., ...fields}` for a response message.
pub fn typed(type_name: &str, value: Value) -> Value {
    let mut out = json!({"@type": format!("{}{type_name}", api::TYPE_PREFIX)});
    if let (Some(o), Value::Object(fields)) = (out.as_object_mut(), value) {
        o.extend(fields);
    }
    out
}

/// `google.protobuf.Empty`, the response of deletions.
pub fn empty() -> Value {
    json!({"@type": "type.googleapis.com/google.protobuf.Empty"})
}

fn touch(op: &mut Operation, progress: Option<u32>, message: &str) {
    op.metadata.generic_metadata.update_time = Timestamp::now();
    if let Some(p) = progress {
        op.metadata.progress_percent = Some(p.min(100));
    }
    op.metadata.progress_message = Some(message.to_string());
}

/// Records progress of an unfinished operation (a no-op when nothing changed).
pub async fn progress(
    store: &dyn OperationStore,
    op: &Operation,
    percent: u32,
    message: &str,
) -> Result<Operation, StoreError> {
    if op.metadata.progress_percent == Some(percent)
        && op.metadata.progress_message.as_deref() == Some(message)
    {
        return Ok(op.clone());
    }
    let mut op = op.clone();
    touch(&mut op, Some(percent), message);
    store.update_operation(&op).await
}

/// Finishes an operation with its response.
pub async fn succeed(
    store: &dyn OperationStore,
    op: &Operation,
    response: Value,
) -> Result<Operation, StoreError> {
    let mut op = op.clone();
    touch(&mut op, Some(100), "done");
    op.done = true;
    op.response = Some(response);
    op.error = None;
    store.update_operation(&op).await
}

/// Finishes an operation with an error.
pub async fn fail(
    store: &dyn OperationStore,
    op: &Operation,
    code: Code,
    message: &str,
) -> Result<Operation, StoreError> {
    let mut op = op.clone();
    touch(&mut op, None, message);
    op.done = true;
    op.response = None;
    op.error = Some(api::Status::of(code, message));
    store.update_operation(&op).await
}

/// The API's view of an operation.
pub fn to_api(op: &Operation) -> api::Operation {
    api::Operation {
        name: op.name(),
        metadata: serde_json::to_value(&op.metadata).ok(),
        done: op.done,
        error: op.error.clone(),
        response: op.response.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc() -> LocationName {
        LocationName::new("p", "l").unwrap()
    }

    #[test]
    fn operations_carry_vertex_metadata() {
        let mut op = start(&loc(), OperationKind::DeployModel, "projects/p/locations/l/endpoints/e");
        op.metadata.deployed_model_id = Some("7".into());
        assert!(!op.done);
        let api = to_api(&op);
        let metadata = api.metadata.unwrap();
        assert_eq!(metadata["@type"], format!("{}DeployModelOperationMetadata", api::TYPE_PREFIX));
        assert_eq!(metadata["deployedModelId"], "7");
        assert_eq!(metadata["verb"], "deployModel");
        assert!(metadata["genericMetadata"]["createTime"].as_str().unwrap().ends_with('Z'));
        assert!(api.name.starts_with("projects/p/locations/l/operations/"));
        let done = finished(&loc(), OperationKind::CreateEndpoint, "t", typed("Endpoint", json!({"a": 1})));
        assert!(done.done);
        assert_eq!(done.response.as_ref().unwrap()["@type"], format!("{}Endpoint", api::TYPE_PREFIX));
        assert_eq!(to_api(&done).metadata.unwrap()["progressPercent"], 100);
    }
}
