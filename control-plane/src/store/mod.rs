//! Persistent state of the control plane: users, models, endpoints, operations, revisions,
//! artifacts, browser sessions.
//!
//! Storage sits behind the [`Store`] trait, the sum of one trait per domain ([`UserStore`],
//! [`ModelStore`], [`EndpointStore`], [`OperationStore`], [`RevisionStore`],
//! [`ArtifactIndex`], [`SessionStore`], [`TrafficStore`], [`PredictionLogStore`]), each declared with its records in a file of its own. There is one
//! implementation per database: [`SqliteStore`] (the embedded default, a file in the data
//! directory) and [`PostgresStore`] (production). [`open`] picks one by URL scheme and runs that
//! database's migrations (`migrations/sqlite/`, `migrations/postgres/`, embedded in the binary).
//!
//! Queries are plain runtime queries with binds; no database is needed to build. Both
//! implementations share one body of SQL (`sql/`, one file per domain, compiled once per
//! database), written in the dialect the two have in common: `$N` parameters, `RETURNING`,
//! `ON CONFLICT`. Rows are read into plain row structs (`sqlx::FromRow`) and decoded once
//! into typed records: enums for states and kinds, typed JSON for specs and labels. A row that
//! does not decode is [`StoreError::Corrupt`], naming the row, never a default.
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

mod artifacts;
mod codec;
mod endpoints;
mod error;
mod models;
mod operations;
mod postgres;
mod prediction_logs;
mod revisions;
mod rules;
mod sessions;
mod sqlite;
mod time;
mod traffic;
mod users;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

pub use artifacts::{Artifact, ArtifactIndex};
pub use endpoints::{
    DeployedModel, DeploymentSpec, DesiredState, Endpoint, EndpointKey, EndpointStore, TrafficSplit,
};
pub use error::StoreError;
pub use models::{DEFAULT_ALIAS, Model, ModelKey, ModelStore, ModelVersion};
pub use operations::{GenericMetadata, Operation, OperationKind, OperationMetadata, OperationStore};
pub use postgres::{AdvisoryLock, PostgresStore};
pub use prediction_logs::{
    Payload, PredictMethod, PredictionLog, PredictionLogQuery, PredictionLogStore, PredictionLogging,
};
pub use revisions::{Revision, RevisionSource, RevisionStore};
pub use rules::new_numeric_id;
pub use sessions::{SessionRecord, SessionStore};
pub use sqlite::SqliteStore;
pub use time::Timestamp;
pub use traffic::{Signal, Signals, Traffic, TrafficStore};
pub use users::{ApiToken, Membership, User, UserStore};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Labels of a resource: key -> value.
pub type Labels = BTreeMap<String, String>;

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
/// `Arc<dyn Store>` and imports the domain traits it uses.
///
/// Conventions: a missing resource is [`StoreError::NotFound`]; a duplicate id is
/// [`StoreError::AlreadyExists`]; a stale etag or a broken rule is [`StoreError::Conflict`].
/// Methods that create or change a row return it as stored. `expected_etag: None` skips the
/// etag check.
#[async_trait]
pub trait Store:
    UserStore
    + ModelStore
    + EndpointStore
    + OperationStore
    + RevisionStore
    + ArtifactIndex
    + SessionStore
    + TrafficStore
    + Signals
    + PredictionLogStore
{
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Closes the connection pool; later calls fail.
    async fn close(&self);
}
