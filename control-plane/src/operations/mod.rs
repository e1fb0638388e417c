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
    #[error("operation {id} is not an operation of {parent}")]
    NotUnder { id: String, parent: String },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl api::Coded for OperationError {
    fn code(&self) -> Code {
        match self {
            OperationError::InvalidId(_) | OperationError::InvalidFilter(_) => Code::InvalidArgument,
            OperationError::NotUnder { .. } => Code::NotFound,
            OperationError::Auth(e) => e.code(),
            OperationError::Store(e) => e.code(),
        }
    }
}

/// The operations service. Each method takes the operation's location and, when it is
/// addressed nested under the model or endpoint it acts on (`.../endpoints/{e}/operations/{id}`,
/// as Vertex names them), that resource's name: only its operations are found there.
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
        parent: Option<&str>,
        id: &str,
    ) -> Result<api::Operation, OperationError> {
        caller.require(Role::Viewer, &loc.project)?;
        Ok(to_api(&self.load(loc, parent, id).await?))
    }

    /// The operation `id`, if it belongs under `parent`.
    async fn load(
        &self,
        loc: &LocationName,
        parent: Option<&str>,
        id: &str,
    ) -> Result<Operation, OperationError> {
        check_id(id)?;
        let op = self.store.get_operation(&loc.project, &loc.location, id).await?;
        match parent {
            Some(parent) if !acts_on(&op, Some(parent)) => {
                Err(OperationError::NotUnder { id: id.to_string(), parent: parent.to_string() })
            }
            _ => Ok(op),
        }
    }

    /// The operations of a location, newest first; `filter` is empty, `done=true` or
    /// `done=false`.
    pub async fn list(
        &self,
        caller: &Caller,
        loc: &LocationName,
        parent: Option<&str>,
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
        ops.retain(|o| done.is_none_or(|d| o.done == d) && acts_on(o, parent));
        Ok(ops.iter().rev().map(to_api).collect())
    }

    /// The operation once it is done, or as it is after `timeout` (default 60 s, at most 600 s).
    pub async fn wait(
        &self,
        caller: &Caller,
        loc: &LocationName,
        parent: Option<&str>,
        id: &str,
        timeout: Option<api::Duration>,
    ) -> Result<api::Operation, OperationError> {
        caller.require(Role::Viewer, &loc.project)?;
        self.load(loc, parent, id).await?;
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
    pub async fn cancel(
        &self,
        caller: &Caller,
        loc: &LocationName,
        parent: Option<&str>,
        id: &str,
    ) -> Result<(), OperationError> {
        caller.require(Role::Editor, &loc.project)?;
        self.load(loc, parent, id).await?;
        self.store.request_cancel_operation(&loc.project, &loc.location, id).await?;
        self.wake.wake();
        Ok(())
    }

    /// Forgets an operation.
    pub async fn delete(
        &self,
        caller: &Caller,
        loc: &LocationName,
        parent: Option<&str>,
        id: &str,
    ) -> Result<(), OperationError> {
        caller.require(Role::Editor, &loc.project)?;
        self.load(loc, parent, id).await?;
        Ok(self.store.delete_operation(&loc.project, &loc.location, id).await?)
    }
}

/// Whether `op` acts on `parent` (a model, any of its versions, or an endpoint); every
/// operation does when there is no parent.
fn acts_on(op: &Operation, parent: Option<&str>) -> bool {
    parent
        .is_none_or(|p| op.target == p || op.target.strip_prefix(p).is_some_and(|rest| rest.starts_with('@')))
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

/// Fields of this platform's that are not in the message of the `@type` they sit in.
const EXTENSIONS: &[(&str, &[&str])] = &[("Endpoint", &["access", "predictUri"])];
/// Fields of this platform's in a `DeployedModel`, wherever one sits in a response
/// (`deployedModel` of a deploy or mutation, `deployedModels` of an endpoint).
const DEPLOYED_MODEL_EXTENSIONS: &[&str] = &["containerConcurrency"];

/// An operation with only the fields of `google.longrunning.Operation` and of the messages its
/// `metadata` and `response` name: without `progressPercent`, `progressMessage` and the other
/// metadata this platform adds, and without `error.status`. The Python SDK's operations client
/// parses operations strictly and refuses any field its messages do not have.
pub fn proto_view(mut op: api::Operation) -> api::Operation {
    if let Some(Value::Object(metadata)) = op.metadata.as_mut() {
        metadata.retain(|k, _| k == "@type" || k == "genericMetadata");
        if let Some(Value::Object(generic)) = metadata.get_mut("genericMetadata") {
            generic.retain(|k, _| ["createTime", "updateTime", "partialFailures"].contains(&k.as_str()));
        }
    }
    if let Some(error) = op.error.as_mut() {
        error.status.clear();
    }
    if let Some(Value::Object(response)) = op.response.as_mut() {
        let type_name = response.get("@type").and_then(Value::as_str).unwrap_or_default().to_string();
        for (name, fields) in EXTENSIONS {
            if type_name.strip_prefix(api::TYPE_PREFIX) == Some(name) {
                response.retain(|k, _| !fields.contains(&k.as_str()));
            }
        }
        for (key, value) in response.iter_mut() {
            let deployed_models = match (key.as_str(), value) {
                ("deployedModel", dm) => std::slice::from_mut(dm),
                ("deployedModels", Value::Array(dms)) => dms.as_mut_slice(),
                _ => continue,
            };
            for dm in deployed_models.iter_mut().filter_map(Value::as_object_mut) {
                dm.retain(|k, _| !DEPLOYED_MODEL_EXTENSIONS.contains(&k.as_str()));
            }
        }
    }
    op
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

    #[test]
    fn the_proto_view_has_only_the_fields_of_the_messages() {
        let endpoint = json!({"name": "e", "displayName": "e", "access": "PUBLIC", "predictUri": "u"});
        let mut op = finished(&loc(), OperationKind::CreateEndpoint, "t", typed("Endpoint", endpoint));
        op.metadata.deployed_model_id = Some("1".into());
        op.error = Some(api::Status::of(Code::FailedPrecondition, "m"));
        let full = to_api(&op);
        assert_eq!(full.metadata.as_ref().unwrap()["progressPercent"], 100);
        let proto = serde_json::to_value(proto_view(full)).unwrap();
        let metadata = proto["metadata"].as_object().unwrap();
        assert_eq!(metadata.keys().collect::<Vec<_>>(), ["@type", "genericMetadata"]);
        assert!(metadata["genericMetadata"]["createTime"].is_string());
        assert_eq!(
            proto["response"],
            json!({"@type": format!("{}Endpoint", api::TYPE_PREFIX), "name": "e", "displayName": "e"})
        );
        assert_eq!(proto["error"], json!({"code": 9, "message": "m"}));
    }

    #[test]
    fn the_proto_view_leaves_out_deployed_model_extensions() {
        let dm = json!({"id": "1", "containerConcurrency": 80});
        let endpoint = json!({"name": "e", "deployedModels": [dm.clone()]});
        let deployed = json!({"deployedModel": dm});
        for (type_name, response) in [("Endpoint", endpoint), ("DeployModelResponse", deployed)] {
            let op = finished(&loc(), OperationKind::DeployModel, "t", typed(type_name, response));
            let proto = serde_json::to_string(&proto_view(to_api(&op))).unwrap();
            assert!(proto.contains(r#""id":"1""#) && !proto.contains("containerConcurrency"), "{proto}");
        }
    }

    #[test]
    fn nested_paths_hold_the_operations_of_their_model_or_endpoint() {
        let upload = finished(&loc(), OperationKind::UploadModel, "projects/p/locations/l/models/m", empty());
        let version = finished(&loc(), OperationKind::Delete, "projects/p/locations/l/models/m@2", empty());
        assert!(acts_on(&upload, None));
        assert!(acts_on(&upload, Some("projects/p/locations/l/models/m")));
        assert!(acts_on(&version, Some("projects/p/locations/l/models/m")));
        assert!(!acts_on(&upload, Some("projects/p/locations/l/models/m2")));
        assert!(!acts_on(&upload, Some("projects/p/locations/l/endpoints/m")));
    }
}
