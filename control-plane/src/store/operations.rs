//! Long-running operations.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::codec::{from_json, from_opt_json, name_of, timestamp};
use super::{Result, Timestamp, TrafficSplit};

/// What an operation does (its `verb`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OperationKind {
    CreateEndpoint,
    UploadModel,
    DeployModel,
    UndeployModel,
    MutateDeployedModel,
    /// Deleting a model, a model version or an endpoint.
    Delete,
}

impl OperationKind {
    pub const ALL: [OperationKind; 6] = [
        OperationKind::CreateEndpoint,
        OperationKind::UploadModel,
        OperationKind::DeployModel,
        OperationKind::UndeployModel,
        OperationKind::MutateDeployedModel,
        OperationKind::Delete,
    ];

    /// The stored name, also the metadata's `verb`.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::CreateEndpoint => "createEndpoint",
            OperationKind::UploadModel => "uploadModel",
            OperationKind::DeployModel => "deployModel",
            OperationKind::UndeployModel => "undeployModel",
            OperationKind::MutateDeployedModel => "mutateDeployedModel",
            OperationKind::Delete => "delete",
        }
    }

    pub fn parse(text: &str) -> Option<OperationKind> {
        OperationKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// Creation and update times of an operation, as Vertex's `genericMetadata` shows them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenericMetadata {
    pub create_time: Timestamp,
    pub update_time: Timestamp,
}

/// An operation's `metadata` in Vertex's shape: `@type`, `genericMetadata`, progress, and the
/// fields of the operation's own kind.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationMetadata {
    #[serde(rename = "@type")]
    pub type_url: String,
    pub generic_metadata: GenericMetadata,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub verb: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_percent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_message: Option<String>,
    /// The deployed model a deploy, undeploy or mutation acts on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_model_id: Option<String>,
    /// A deploy's traffic split from before it, restored when it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_traffic_split: Option<TrafficSplit>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Operation {
    pub project: String,
    pub location: String,
    pub operation_id: String,
    /// The resource name the operation acts on.
    pub target: String,
    pub kind: OperationKind,
    pub metadata: OperationMetadata,
    pub done: bool,
    /// Only when done, and then exactly one of `error` and `response`. `error.code` is the
    /// `google.rpc.Code` number.
    pub error: Option<api::Status>,
    /// The result with its `@type`, as clients read it.
    pub response: Option<Value>,
    /// Set by `request_cancel_operation`; the worker doing the operation honours it.
    pub cancel_requested: bool,
    pub create_time: Timestamp,
    pub update_time: Timestamp,
}

impl Operation {
    /// The resource name.
    pub fn name(&self) -> String {
        operation_name(&self.project, &self.location, &self.operation_id)
    }
}

pub(crate) fn operation_name(project: &str, location: &str, operation_id: &str) -> String {
    format!("projects/{project}/locations/{location}/operations/{operation_id}")
}

/// Long-running operations.
#[async_trait]
pub trait OperationStore: Send + Sync {
    /// Records a new operation (`cancel_requested` starts false).
    async fn insert_operation(&self, operation: &Operation) -> Result<Operation>;
    async fn get_operation(&self, project: &str, location: &str, operation_id: &str) -> Result<Operation>;
    /// The operations of a project and location, by creation time.
    async fn list_operations(&self, project: &str, location: &str) -> Result<Vec<Operation>>;
    /// Every operation not done yet, by creation time (what workers resume after a restart).
    async fn list_unfinished_operations(&self) -> Result<Vec<Operation>>;
    /// Writes `metadata`, `done`, `error` and `response`. Conflict once the operation is done.
    async fn update_operation(&self, operation: &Operation) -> Result<Operation>;
    /// Sets `cancel_requested` unless the operation is done already.
    async fn request_cancel_operation(
        &self,
        project: &str,
        location: &str,
        operation_id: &str,
    ) -> Result<Operation>;
    async fn delete_operation(&self, project: &str, location: &str, operation_id: &str) -> Result<()>;
}

/// An `operations` row as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct OperationRow {
    project: String,
    location: String,
    operation_id: String,
    target: String,
    kind: String,
    metadata: String,
    done: bool,
    error: Option<String>,
    response: Option<String>,
    cancel_requested: bool,
    create_time: i64,
    update_time: i64,
}

impl OperationRow {
    pub(crate) fn decode(self) -> Result<Operation> {
        let row = operation_name(&self.project, &self.location, &self.operation_id);
        Ok(Operation {
            kind: name_of(&self.kind, &row, "kind", OperationKind::parse)?,
            metadata: from_json(&self.metadata, &row, "metadata")?,
            error: from_opt_json(self.error, &row, "error")?,
            response: from_opt_json(self.response, &row, "response")?,
            create_time: timestamp(self.create_time, &row, "create_time")?,
            update_time: timestamp(self.update_time, &row, "update_time")?,
            project: self.project,
            location: self.location,
            operation_id: self.operation_id,
            target: self.target,
            done: self.done,
            cancel_requested: self.cancel_requested,
        })
    }
}
