//! The platform's REST resources and messages, in the shapes of Vertex AI's `aiplatform.v1`
//! REST API (proto3 JSON: lowerCamelCase, int64 as strings, durations as `"30s"`), so that
//! people and tools that know Vertex feel at home. Shared by the server and `platform-cli`, so
//! that nothing is defined twice.

pub mod auth;
pub mod duration;
pub mod endpoint;
pub mod enums;
pub mod error;
pub mod int64;
pub mod logs;
pub mod manifest;
pub mod model;
pub mod names;
pub mod operation;
pub mod predict;
pub mod unmodelled;

pub use auth::*;
pub use duration::{Duration, DurationError};
pub use endpoint::*;
pub use error::{Code, Coded, ErrorBody, FieldViolation, Status};
pub use logs::*;
pub use manifest::*;
pub use model::*;
pub use names::*;
pub use operation::*;
pub use predict::*;
pub use unmodelled::Unmodelled;

/// Prefix of every `@type` in operation metadata and responses.
pub const TYPE_PREFIX: &str = "type.googleapis.com/google.cloud.aiplatform.v1.";

/// The project used when none is given.
pub const DEFAULT_PROJECT: &str = "default";
/// The location used when none is given.
pub const DEFAULT_LOCATION: &str = "local";

/// For `skip_serializing_if`: proto3 JSON leaves out fields at their default.
pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}
