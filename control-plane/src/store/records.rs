//! The rows of the store, as plain structs.
//!
//! Nested specs that the control plane never queries by (labels, container specs, deployment
//! resources, operation metadata, ...) are stored as JSON text and typed [`serde_json::Value`]
//! here. A JSON column never holds `null`: `Value::Null` is stored as `{}`.
//!
//! Fields that the store assigns (creation and update times, etags, model version ids,
//! revision numbers, user ids) are ignored on input and filled in on the records the store
//! returns. Every record implements `Default`, so callers write only what they mean:
//! `Model { project, location, model_id, display_name, ..Default::default() }`.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The roles a user can have in a project.
pub const ROLES: [&str; 4] = ["viewer", "editor", "admin", "predictor"];
/// Who may call `:predict` on an endpoint.
pub const ENDPOINT_ACCESS: [&str; 3] = ["authenticated", "public", "private"];
/// The desired states of a deployed model.
pub const DEPLOYED_MODEL_STATES: [&str; 4] = ["deploying", "deployed", "undeploying", "failed"];
/// Where a revision's manifests came from.
pub const REVISION_SOURCES: [&str; 3] = ["rendered", "edited", "rollback"];
/// The alias that every model has on exactly one of its versions.
pub const DEFAULT_ALIAS: &str = "default";

/// A point in time, UTC, with microsecond precision.
///
/// Stored as microseconds since the Unix epoch (a 64-bit integer column in both databases);
/// serialized, and shown with `Display`, as RFC 3339 with a `Z` suffix
/// (`2020-10-19T17:53:16.502088Z`), which is how the API renders timestamps.
/// `Default` is the Unix epoch.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// The current time, truncated to microseconds.
    pub fn now() -> Self {
        let now = OffsetDateTime::now_utc();
        Self(now.replace_nanosecond(now.nanosecond() / 1000 * 1000).unwrap_or(now))
    }

    /// The time `micros` microseconds after the Unix epoch, or `None` when out of range.
    pub fn from_unix_micros(micros: i64) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000).ok().map(Self)
    }

    /// Microseconds since the Unix epoch (saturating far outside ±292,000 years).
    pub fn unix_micros(&self) -> i64 {
        let micros = self.0.unix_timestamp_nanos() / 1000;
        i64::try_from(micros).unwrap_or(if micros < 0 { i64::MIN } else { i64::MAX })
    }

    /// The `time` crate's value.
    pub fn as_offset_date_time(&self) -> OffsetDateTime {
        self.0
    }

    /// RFC 3339 with a `Z` suffix, as the API renders timestamps.
    pub fn to_rfc3339(&self) -> String {
        self.0.format(&Rfc3339).unwrap_or_else(|_| self.0.to_string())
    }

    /// Parses RFC 3339 (any offset; the result is UTC).
    pub fn parse_rfc3339(text: &str) -> Result<Self, time::error::Parse> {
        OffsetDateTime::parse(text, &Rfc3339).map(|t| Self(t.to_offset(time::UtcOffset::UTC)))
    }
}

impl Default for Timestamp {
    fn default() -> Self {
        Self(OffsetDateTime::UNIX_EPOCH)
    }
}

impl From<OffsetDateTime> for Timestamp {
    fn from(t: OffsetDateTime) -> Self {
        Self(t.to_offset(time::UtcOffset::UTC))
    }
}

impl From<Timestamp> for OffsetDateTime {
    fn from(t: Timestamp) -> Self {
        t.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

/// `projects/{project}/locations/{location}/models/{model_id}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelKey {
    pub project: String,
    pub location: String,
    pub model_id: String,
}

impl ModelKey {
    pub fn new(project: impl Into<String>, location: impl Into<String>, model_id: impl Into<String>) -> Self {
        Self { project: project.into(), location: location.into(), model_id: model_id.into() }
    }

    /// The resource name.
    pub fn name(&self) -> String {
        format!("projects/{}/locations/{}/models/{}", self.project, self.location, self.model_id)
    }
}

/// `projects/{project}/locations/{location}/endpoints/{endpoint_id}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EndpointKey {
    pub project: String,
    pub location: String,
    pub endpoint_id: String,
}

impl EndpointKey {
    pub fn new(
        project: impl Into<String>,
        location: impl Into<String>,
        endpoint_id: impl Into<String>,
    ) -> Self {
        Self { project: project.into(), location: location.into(), endpoint_id: endpoint_id.into() }
    }

    /// The resource name.
    pub fn name(&self) -> String {
        format!("projects/{}/locations/{}/endpoints/{}", self.project, self.location, self.endpoint_id)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// Assigned by the store.
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub created_at: Timestamp,
}

/// A user's role in one project (at most one role per user and project).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub user_id: i64,
    pub project: String,
    /// One of [`ROLES`].
    pub role: String,
}

/// An issued API token. The token itself (a JWT) is not stored, only its `jti` and claims.
/// `created_at` and `expires_at` are the caller's (they mirror the JWT's `iat` and `exp`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiToken {
    /// The JWT's `jti`.
    pub id: String,
    pub user_id: i64,
    /// Restricts the token to one project, if set.
    pub project: Option<String>,
    pub description: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    /// Set by the store when revoked.
    pub revoked_at: Option<Timestamp>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub project: String,
    pub location: String,
    pub model_id: String,
    pub display_name: String,
    pub description: String,
    pub labels: Value,
    pub create_time: Timestamp,
    pub update_time: Timestamp,
    /// Changes on every `update_model`; assigned by the store.
    pub etag: String,
}

impl Model {
    pub fn key(&self) -> ModelKey {
        ModelKey::new(&self.project, &self.location, &self.model_id)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    pub project: String,
    pub location: String,
    pub model_id: String,
    /// 1, 2, ... per model, never reused; assigned by the store.
    pub version_id: i64,
    pub version_description: String,
    pub container_spec: Value,
    pub artifact_uri: String,
    pub artifact_sha256: Option<String>,
    pub predict_schemata: Value,
    pub labels: Value,
    pub create_time: Timestamp,
    pub update_time: Timestamp,
    /// Sorted. Unique per model; exactly one version of a model holds `default`.
    pub aliases: Vec<String>,
}

impl ModelVersion {
    pub fn model_key(&self) -> ModelKey {
        ModelKey::new(&self.project, &self.location, &self.model_id)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub project: String,
    pub location: String,
    pub endpoint_id: String,
    pub display_name: String,
    pub description: String,
    pub labels: Value,
    /// One of [`ENDPOINT_ACCESS`]; empty means `authenticated`.
    pub access: String,
    /// `{deployedModelId: percent}`: empty, or integers summing to 100, naming only deployed
    /// models of this endpoint that are not being undeployed.
    pub traffic_split: Value,
    /// Changes on every change of the endpoint, its split or its set of deployed models.
    pub etag: String,
    pub create_time: Timestamp,
    pub update_time: Timestamp,
}

impl Endpoint {
    pub fn key(&self) -> EndpointKey {
        EndpointKey::new(&self.project, &self.location, &self.endpoint_id)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeployedModel {
    pub project: String,
    pub location: String,
    pub endpoint_id: String,
    pub deployed_model_id: String,
    /// The model, in the endpoint's project and location.
    pub model_id: String,
    pub version_id: i64,
    pub display_name: String,
    /// `dedicatedResources` / `automaticResources` and the other deployment options.
    pub spec: Value,
    /// One of [`DEPLOYED_MODEL_STATES`].
    pub desired_state: String,
    /// What the controller last observed (replicas, message, ...).
    pub status: Value,
    pub create_time: Timestamp,
    pub update_time: Timestamp,
}

impl DeployedModel {
    pub fn endpoint_key(&self) -> EndpointKey {
        EndpointKey::new(&self.project, &self.location, &self.endpoint_id)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    pub project: String,
    pub location: String,
    pub operation_id: String,
    /// The resource name the operation acts on.
    pub target: String,
    /// What it does, e.g. `deployModel`.
    pub kind: String,
    pub metadata: Value,
    pub done: bool,
    /// A google.rpc.Status; only when done, and then exactly one of `error` and `response`.
    pub error: Option<Value>,
    pub response: Option<Value>,
    /// Set by `request_cancel_operation`; the worker doing the operation honours it.
    pub cancel_requested: bool,
    pub create_time: Timestamp,
    pub update_time: Timestamp,
}

/// An immutable snapshot of the manifests of one deployed model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    pub project: String,
    pub location: String,
    pub endpoint_id: String,
    pub deployed_model_id: String,
    /// 1, 2, ... per deployed model; assigned by the store.
    pub revision: i64,
    /// Multi-document YAML.
    pub manifests: String,
    /// One of [`REVISION_SOURCES`].
    pub source: String,
    pub create_time: Timestamp,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    pub id: String,
    pub sha256: String,
    pub size_bytes: i64,
    pub uri: String,
    pub create_time: Timestamp,
}
