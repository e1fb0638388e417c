//! Replica logs (`GET .../endpoints/{endpoint}/logs`): one JSON object per line, as Cloud Run's
//! `services logs read` shows a service's container output.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One line a replica wrote, or the platform wrote about it (starts, restarts).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    /// RFC 3339, UTC; empty when unknown.
    #[serde(default)]
    pub time: String,
    pub deployed_model_id: String,
    pub replica: String,
    /// `stdout`, `stderr`, or `platform` for the platform's notes.
    pub stream: String,
    pub text: String,
}
