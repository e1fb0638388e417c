//! The manifests behind a deployed model: revisions, edits, rollbacks (an extension of this
//! platform; Vertex AI does not show them).

use serde::{Deserialize, Serialize};
use serde_with::serde_as;
use utoipa::ToSchema;

use crate::int64::Int64;

/// An immutable snapshot of a deployed model's manifests.
#[serde_as]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    /// `projects/{p}/locations/{l}/endpoints/{e}/deployedModels/{d}/revisions/{n}`.
    pub name: String,
    #[serde_as(as = "Int64")]
    #[schema(value_type = String)]
    pub revision: i64,
    /// `rendered` (by the platform), `edited` (a PUT) or `rollback`.
    pub source: String,
    pub create_time: String,
    /// Multi-document YAML; only when one revision is read.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub manifests: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListRevisionsResponse {
    pub revisions: Vec<Revision>,
}

/// The answer to a PUT of edited manifests (also with `?dryRun=true`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplyManifestsResponse {
    /// The new revision; absent on a dry run or when nothing changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<Revision>,
    /// Unified diff from the current revision to the edit.
    pub diff: String,
    /// Fields the backend cannot honour.
    #[serde(default)]
    pub warnings: Vec<String>,
    #[serde(default)]
    pub dry_run: bool,
}
