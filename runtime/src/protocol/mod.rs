//! The two wire protocols of the runtime, as pure conversions between request bodies and
//! tensors (no I/O here): Vertex AI predict and the Open Inference Protocol V2.

pub mod json;
pub mod v2;
pub mod vertex;

/// A request the model cannot run, with a message that says what to fix (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRequest(pub String);
