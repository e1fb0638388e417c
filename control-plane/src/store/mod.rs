//! Persistent state of the control plane: users, models, endpoints, operations, revisions.
//!
//! Storage sits behind the [`Store`] trait, with one implementation per database:
//! [`SqliteStore`] (the embedded default, a file in the data directory) and [`PostgresStore`]
//! (production). [`open`] picks one by URL scheme and runs that database's migrations
//! (`migrations/sqlite/`, `migrations/postgres/`, embedded in the binary).
//!
//! Queries are plain runtime queries with binds; no database is needed to build. Both
//! implementations share one body of SQL (`sql.rs`, compiled once per database), written in
//! the dialect the two have in common: `$N` parameters, `RETURNING`, `ON CONFLICT`.
//!
//! Consistency rules kept by the store, whatever the caller does:
//! - Every change of more than one row is one transaction. Transactions that read and then
//!   write first take a write lock on the parent row (model, endpoint, deployed model), so
//!   concurrent writers serialize on it in PostgreSQL; SQLite write transactions are
//!   `BEGIN IMMEDIATE`.
//! - Model version ids are 1, 2, ... per model and never reused; revision numbers likewise per
//!   deployed model.
//! - Aliases are unique per model, and exactly one version holds `default`: it can be moved,
//!   never removed, and the version holding it cannot be deleted.
//! - An endpoint's traffic split is empty or sums to 100, and names only its deployed models
//!   that are not being undeployed.
//! - A model version that is deployed cannot be deleted, nor its model; an endpoint with
//!   deployed models cannot be deleted.
//!
//! Time: [`Timestamp`], UTC with microsecond precision, stored as microseconds since the Unix
//! epoch in a 64-bit integer column in both databases, rendered as RFC 3339 with `Z`.

mod error;
mod postgres;
pub mod records;
mod rules;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

pub use error::StoreError;
pub use postgres::PostgresStore;
pub use records::*;
pub use sqlite::SqliteStore;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Opens the database named by `database_url` and brings its schema up to date.
///
/// - `sqlite://PATH?mode=rwc` (or `sqlite:PATH`): a file, created with its directory if
///   missing; WAL journal, foreign keys on, a busy timeout. `sqlite::memory:` works for
///   throwaway use.
/// - `postgres://user:password@host:port/database` (or `postgresql://`).
pub async fn open(database_url: &str) -> Result<Arc<dyn Store>> {
    if database_url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(database_url).await?))
    } else if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::open(database_url).await?))
    } else {
        let scheme = database_url.split(':').next().unwrap_or_default();
        Err(StoreError::InvalidArgument(format!(
            "unsupported database URL scheme {scheme:?}: use sqlite://PATH or postgres://..."
        )))
    }
}

/// All the state of the control plane. Object-safe: the rest of the code holds an
/// `Arc<dyn Store>`.
///
/// Conventions: a missing resource is [`StoreError::NotFound`]; a duplicate id is
/// [`StoreError::AlreadyExists`]; a stale etag or a broken rule is [`StoreError::Conflict`].
/// Methods that create or change a row return it as stored. `expected_etag: None` skips the
/// etag check.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Closes the connection pool; later calls fail.
    async fn close(&self);

    // --- users, memberships, API tokens ---------------------------------------------------

    /// Creates a user; the id is assigned. AlreadyExists when the username is taken.
    async fn create_user(&self, username: &str, password_hash: &str) -> Result<User>;
    async fn get_user(&self, id: i64) -> Result<User>;
    async fn get_user_by_name(&self, username: &str) -> Result<User>;
    async fn count_users(&self) -> Result<i64>;
    async fn set_password_hash(&self, user_id: i64, password_hash: &str) -> Result<()>;

    /// Gives the user `role` in `project`, replacing any role they had there.
    async fn set_role(&self, user_id: i64, project: &str, role: &str) -> Result<Membership>;
    /// The user's role in `project`, if any.
    async fn get_role(&self, user_id: i64, project: &str) -> Result<Option<String>>;
    /// All of the user's memberships, by project.
    async fn list_memberships(&self, user_id: i64) -> Result<Vec<Membership>>;
    async fn remove_membership(&self, user_id: i64, project: &str) -> Result<()>;

    /// Records an issued token (`revoked_at` is ignored). NotFound when the user does not exist.
    async fn insert_api_token(&self, token: &ApiToken) -> Result<ApiToken>;
    async fn get_api_token(&self, id: &str) -> Result<ApiToken>;
    /// The user's tokens, oldest first.
    async fn list_api_tokens(&self, user_id: i64) -> Result<Vec<ApiToken>>;
    /// Marks the token revoked (now, or keeps the first revocation time).
    async fn revoke_api_token(&self, id: &str) -> Result<ApiToken>;

    // --- models and versions ----------------------------------------------------------------

    /// Creates the model and its version 1 in one transaction. The version's key fields are
    /// taken from `model`; it gets the alias `default` plus its own `aliases`.
    async fn create_model(
        &self,
        model: &Model,
        first_version: &ModelVersion,
    ) -> Result<(Model, ModelVersion)>;
    /// Adds a version with the next id (max so far + 1). Its `aliases` must not be held by
    /// another version (AlreadyExists), except `default`, which moves to the new version.
    async fn add_model_version(&self, key: &ModelKey, version: &ModelVersion) -> Result<ModelVersion>;
    async fn get_model(&self, key: &ModelKey) -> Result<Model>;
    /// The models of a project and location, by creation time.
    async fn list_models(&self, project: &str, location: &str) -> Result<Vec<Model>>;
    /// Updates `display_name`, `description` and `labels`.
    async fn update_model(&self, model: &Model, expected_etag: Option<&str>) -> Result<Model>;
    /// Deletes the model with its versions and aliases. Conflict while any version is deployed.
    async fn delete_model(&self, key: &ModelKey) -> Result<()>;
    async fn get_model_version(&self, key: &ModelKey, version_id: i64) -> Result<ModelVersion>;
    /// The versions of a model, by version id.
    async fn list_model_versions(&self, key: &ModelKey) -> Result<Vec<ModelVersion>>;
    /// The version id holding `alias`.
    async fn resolve_alias(&self, key: &ModelKey, alias: &str) -> Result<i64>;
    /// Adds `add` to the version (moving each from the version holding it, `default`
    /// included) and removes `remove` from it. `default` cannot be removed.
    async fn merge_version_aliases(
        &self,
        key: &ModelKey,
        version_id: i64,
        add: &[String],
        remove: &[String],
    ) -> Result<ModelVersion>;
    /// Updates `version_description` and `labels` (the rest of a version is immutable).
    async fn update_model_version(&self, version: &ModelVersion) -> Result<ModelVersion>;
    /// Deletes a version and its aliases. Conflict when it holds `default` or is deployed.
    async fn delete_model_version(&self, key: &ModelKey, version_id: i64) -> Result<()>;

    // --- endpoints and deployed models ------------------------------------------------------

    /// Creates an endpoint; its traffic split must be empty (nothing is deployed yet).
    async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<Endpoint>;
    async fn get_endpoint(&self, key: &EndpointKey) -> Result<Endpoint>;
    /// The endpoints of a project and location, by creation time.
    async fn list_endpoints(&self, project: &str, location: &str) -> Result<Vec<Endpoint>>;
    /// Every endpoint of every project (what the gateway serves).
    async fn list_all_endpoints(&self) -> Result<Vec<Endpoint>>;
    /// Updates `display_name`, `description`, `labels` and `access`.
    async fn update_endpoint(&self, endpoint: &Endpoint, expected_etag: Option<&str>) -> Result<Endpoint>;
    /// Replaces the traffic split (validated against the endpoint's deployed models).
    async fn set_traffic_split(
        &self,
        key: &EndpointKey,
        split: &Value,
        expected_etag: Option<&str>,
    ) -> Result<Endpoint>;
    /// Deletes an endpoint. Conflict while it has deployed models.
    async fn delete_endpoint(&self, key: &EndpointKey) -> Result<()>;

    /// In one transaction: records `deployed_model` on the endpoint (desired state
    /// `deploying`) and, when `new_split` is given, replaces the traffic split with it (real
    /// deployed model ids: the caller resolves the API's `"0"`). The model version must exist.
    async fn deploy(
        &self,
        endpoint: &EndpointKey,
        deployed_model: &DeployedModel,
        new_split: Option<&Value>,
    ) -> Result<(Endpoint, DeployedModel)>;
    /// In one transaction: marks the deployed model `undeploying` and takes it out of the
    /// traffic split, replacing the split with `new_split` when given. Conflict when the
    /// resulting split would still send it traffic; undeploying the last one empties the split.
    /// The controller deletes the row with `delete_deployed_model` once its replicas are gone.
    async fn undeploy(
        &self,
        endpoint: &EndpointKey,
        deployed_model_id: &str,
        new_split: Option<&Value>,
    ) -> Result<(Endpoint, DeployedModel)>;
    async fn get_deployed_model(
        &self,
        endpoint: &EndpointKey,
        deployed_model_id: &str,
    ) -> Result<DeployedModel>;
    /// The deployed models of an endpoint, by creation time.
    async fn list_deployed_models(&self, endpoint: &EndpointKey) -> Result<Vec<DeployedModel>>;
    /// Every deployed model of every endpoint (what the controller reconciles).
    async fn list_all_deployed_models(&self) -> Result<Vec<DeployedModel>>;
    /// Sets `deploying`, `deployed` or `failed` (`undeploying` is set by `undeploy`). A deployed
    /// model being undeployed stays so: NotFound.
    async fn set_deployed_model_state(
        &self,
        endpoint: &EndpointKey,
        deployed_model_id: &str,
        desired_state: &str,
    ) -> Result<DeployedModel>;
    async fn set_deployed_model_status(
        &self,
        endpoint: &EndpointKey,
        deployed_model_id: &str,
        status: &Value,
    ) -> Result<DeployedModel>;
    /// Replaces the deployment spec (mutateDeployedModel).
    async fn update_deployed_model_spec(
        &self,
        endpoint: &EndpointKey,
        deployed_model_id: &str,
        spec: &Value,
    ) -> Result<DeployedModel>;
    /// Deletes the deployed model and its revisions, and drops it from the split if it is
    /// there with 0%. Conflict while it still gets traffic.
    async fn delete_deployed_model(&self, endpoint: &EndpointKey, deployed_model_id: &str) -> Result<()>;

    // --- long-running operations ------------------------------------------------------------

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

    // --- revisions ---------------------------------------------------------------------------

    /// Stores a new revision with the next number for its deployed model.
    async fn insert_revision(&self, revision: &Revision) -> Result<Revision>;
    /// The revisions of a deployed model, oldest first.
    async fn list_revisions(&self, endpoint: &EndpointKey, deployed_model_id: &str) -> Result<Vec<Revision>>;
    async fn get_revision(
        &self,
        endpoint: &EndpointKey,
        deployed_model_id: &str,
        revision: i64,
    ) -> Result<Revision>;
    /// The newest revision, or None when there is none yet.
    async fn latest_revision(
        &self,
        endpoint: &EndpointKey,
        deployed_model_id: &str,
    ) -> Result<Option<Revision>>;

    // --- artifacts ---------------------------------------------------------------------------

    async fn insert_artifact(&self, artifact: &Artifact) -> Result<Artifact>;
    async fn get_artifact(&self, id: &str) -> Result<Artifact>;
    /// An artifact with this content, if one is stored.
    async fn find_artifact_by_sha256(&self, sha256: &str) -> Result<Option<Artifact>>;
}
