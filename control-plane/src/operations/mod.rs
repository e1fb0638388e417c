//! Long-running operations: how they are created, progressed and finished, in Vertex's shape
//! (`metadata` with `genericMetadata` and the operation's own fields, `@type` everywhere).
//! The API creates them; the controller finishes the ones that wait for replicas.

use serde_json::{Value, json};

use crate::store::{self, Store, StoreError, Timestamp};

/// The metadata `@type` of each kind of operation.
pub fn metadata_type(kind: &str) -> String {
    let name = match kind {
        "createEndpoint" => "CreateEndpointOperationMetadata",
        "uploadModel" => "UploadModelOperationMetadata",
        "deployModel" => "DeployModelOperationMetadata",
        "undeployModel" => "UndeployModelOperationMetadata",
        "mutateDeployedModel" => "MutateDeployedModelOperationMetadata",
        _ => "DeleteOperationMetadata",
    };
    format!("{}{name}", api::TYPE_PREFIX)
}

/// A new operation record; `done` with `response` when the work is already finished.
pub fn new(
    project: &str,
    location: &str,
    kind: &str,
    target: &str,
    extra: Value,
    response: Option<Value>,
) -> store::Operation {
    let now = Timestamp::now();
    let mut metadata = json!({
        "@type": metadata_type(kind),
        "genericMetadata": {"createTime": now.to_string(), "updateTime": now.to_string()},
        "target": target,
        "verb": kind,
    });
    if let (Some(m), Value::Object(extra)) = (metadata.as_object_mut(), extra) {
        m.extend(extra);
    }
    if response.is_some() {
        metadata["progressPercent"] = json!(100);
    }
    store::Operation {
        project: project.to_string(),
        location: location.to_string(),
        operation_id: crate::rest::request::numeric_id(18),
        target: target.to_string(),
        kind: kind.to_string(),
        metadata,
        done: response.is_some(),
        error: None,
        response,
        cancel_requested: false,
        ..Default::default()
    }
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

fn touch(op: &mut store::Operation, progress: Option<u32>, message: Option<&str>) {
    let now = Timestamp::now().to_string();
    op.metadata["genericMetadata"]["updateTime"] = json!(now);
    if let Some(p) = progress {
        op.metadata["progressPercent"] = json!(p.min(100));
    }
    if let Some(m) = message {
        op.metadata["progressMessage"] = json!(m);
    }
}

/// Records progress of an unfinished operation.
pub async fn progress(
    store: &dyn Store,
    op: &store::Operation,
    percent: u32,
    message: &str,
) -> Result<store::Operation, StoreError> {
    if op.metadata.get("progressPercent") == Some(&json!(percent))
        && op.metadata.get("progressMessage") == Some(&json!(message))
    {
        return Ok(op.clone());
    }
    let mut op = op.clone();
    touch(&mut op, Some(percent), Some(message));
    store.update_operation(&op).await
}

/// Finishes an operation with its response.
pub async fn succeed(
    store: &dyn Store,
    op: &store::Operation,
    response: Value,
) -> Result<store::Operation, StoreError> {
    let mut op = op.clone();
    touch(&mut op, Some(100), Some("done"));
    op.done = true;
    op.response = Some(response);
    op.error = None;
    store.update_operation(&op).await
}

/// Finishes an operation with an error (`code` is the google.rpc.Code name).
pub async fn fail(
    store: &dyn Store,
    op: &store::Operation,
    code: &str,
    message: &str,
) -> Result<store::Operation, StoreError> {
    let mut op = op.clone();
    touch(&mut op, None, Some(message));
    op.done = true;
    op.response = None;
    op.error = Some(json!({"code": api::error::rpc_code(code), "message": message, "status": code}));
    store.update_operation(&op).await
}

/// The API's view of an operation.
pub fn to_api(op: &store::Operation) -> api::Operation {
    let error = op.error.as_ref().map(|e| api::Status {
        code: e.get("code").and_then(Value::as_i64).and_then(|c| i32::try_from(c).ok()).unwrap_or(2),
        message: e.get("message").and_then(Value::as_str).unwrap_or_default().to_string(),
        status: e.get("status").and_then(Value::as_str).unwrap_or("UNKNOWN").to_string(),
        details: vec![],
    });
    api::Operation {
        name: format!("projects/{}/locations/{}/operations/{}", op.project, op.location, op.operation_id),
        metadata: Some(op.metadata.clone()),
        done: op.done,
        error,
        response: op.response.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_carry_vertex_metadata() {
        let op = new("p", "l", "deployModel", "projects/p/locations/l/endpoints/e", json!({"x": 1}), None);
        assert!(!op.done);
        assert_eq!(op.metadata["@type"], format!("{}DeployModelOperationMetadata", api::TYPE_PREFIX));
        assert_eq!(op.metadata["x"], 1);
        let api = to_api(&op);
        assert!(api.name.starts_with("projects/p/locations/l/operations/"));
        let done =
            new("p", "l", "createEndpoint", "t", Value::Null, Some(typed("Endpoint", json!({"a": 1}))));
        assert!(done.done);
        assert_eq!(done.response.as_ref().unwrap()["@type"], format!("{}Endpoint", api::TYPE_PREFIX));
    }
}
