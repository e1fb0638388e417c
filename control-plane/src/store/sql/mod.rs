//! The SQL of the store, shared by both databases, one file per domain.
//!
//! This directory is compiled twice, as `sqlite::sql` and `postgres::sql` (`#[path]` modules):
//! the parent module names the database (`Db`), the store type (`ThisStore`), the statement
//! that begins a write transaction (`BEGIN_WRITE`) and `BACKEND`. The SQL is the dialect the
//! two databases share: `$N` parameters, `RETURNING`, `ON CONFLICT ... DO UPDATE`; column types
//! are TEXT, 64-bit integers and booleans only. Rows are read into the row structs of each
//! domain (`sqlx::FromRow`) and decoded into records there.
//!
//! Locking: a transaction that reads before it writes begins with an `UPDATE` of its parent
//! row (`lock_model`, `lock_endpoint`, the revision counter), which PostgreSQL holds as a row
//! lock until commit; SQLite transactions are `BEGIN IMMEDIATE` and hold the database's write
//! lock from the start.

// Column lists, one per table; the row structs read columns by name.
macro_rules! user_columns {
    () => {
        "id, username, password_hash, created_at, disabled"
    };
}
macro_rules! token_columns {
    () => {
        "id, user_id, project, description, created_at, expires_at, revoked_at"
    };
}
macro_rules! model_columns {
    () => {
        "project, location, model_id, display_name, description, labels, etag, create_time, update_time"
    };
}
macro_rules! version_columns {
    () => {
        "project, location, model_id, version_id, version_description, container_spec, artifact_uri, \
         artifact_sha256, predict_schemata, labels, create_time, update_time"
    };
}
macro_rules! endpoint_columns {
    () => {
        "project, location, endpoint_id, display_name, description, labels, access, traffic_split, \
         inference_timeout_nanos, etag, create_time, update_time, prediction_logging"
    };
}
macro_rules! deployed_model_columns {
    () => {
        "project, location, endpoint_id, deployed_model_id, model_id, version_id, display_name, spec, \
         desired_state, status, autoscaling, create_time, update_time"
    };
}
macro_rules! operation_columns {
    () => {
        "project, location, operation_id, target, kind, metadata, done, error, response, cancel_requested, \
         create_time, update_time"
    };
}
macro_rules! revision_columns {
    () => {
        "project, location, endpoint_id, deployed_model_id, revision, manifests, source, create_time"
    };
}
macro_rules! artifact_columns {
    () => {
        "id, sha256, size_bytes, uri, create_time"
    };
}

mod artifacts;
mod endpoints;
mod models;
mod operations;
mod prediction_logs;
mod revisions;
mod sessions;
mod traffic;
mod users;

use async_trait::async_trait;

use super::{BACKEND, BEGIN_WRITE, Db, ThisStore};
use crate::store::{EndpointKey, ModelKey, Result, Store, StoreError};

type DbConn = <Db as sqlx::Database>::Connection;
type Args = <Db as sqlx::Database>::Arguments;

/// Binds the key columns of a resource (`project, location, {id}`), in the order every
/// statement names them.
trait BindKey: Sized {
    fn bind_text(self, value: &str) -> Self;

    fn bind_model(self, key: &ModelKey) -> Self {
        self.bind_text(&key.project).bind_text(&key.location).bind_text(&key.model_id)
    }

    fn bind_endpoint(self, key: &EndpointKey) -> Self {
        self.bind_text(&key.project).bind_text(&key.location).bind_text(&key.endpoint_id)
    }
}

impl BindKey for sqlx::query::Query<'_, Db, Args> {
    fn bind_text(self, value: &str) -> Self {
        self.bind(value.to_owned())
    }
}

impl<O> BindKey for sqlx::query::QueryAs<'_, Db, O, Args> {
    fn bind_text(self, value: &str) -> Self {
        self.bind(value.to_owned())
    }
}

/// The row, or NotFound naming the resource.
fn found<T>(row: Option<T>, kind: &'static str, name: impl FnOnce() -> String) -> Result<T> {
    row.ok_or_else(|| StoreError::not_found(kind, name()))
}

/// NotFound unless a statement changed a row.
fn changed(rows: u64, kind: &'static str, name: impl FnOnce() -> String) -> Result<()> {
    if rows == 0 { Err(StoreError::not_found(kind, name())) } else { Ok(()) }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_foreign_key_violation())
}

/// Maps a unique violation to `make()`, any other error to `StoreError::Database`.
fn on_unique(e: sqlx::Error, make: impl FnOnce() -> StoreError) -> StoreError {
    if is_unique_violation(&e) { make() } else { e.into() }
}

/// Maps a foreign key violation to `make()`, any other error to `StoreError::Database`.
fn on_foreign_key(e: sqlx::Error, make: impl FnOnce() -> StoreError) -> StoreError {
    if is_foreign_key_violation(&e) { make() } else { e.into() }
}

/// A stale etag or a missing resource, after a conditional update changed no row.
fn etag_mismatch(
    name: String,
    expected: Option<&str>,
    current: Option<String>,
    kind: &'static str,
) -> StoreError {
    match current {
        None => StoreError::not_found(kind, name),
        Some(current) => StoreError::Conflict(format!(
            "the etag {:?} of {name} is stale (it is now {current:?}): the {kind} changed since it was \
             read; read it again and retry",
            expected.unwrap_or_default()
        )),
    }
}

/// Decodes every row.
fn decode_all<R, T>(rows: Vec<R>, decode: fn(R) -> Result<T>) -> Result<Vec<T>> {
    rows.into_iter().map(decode).collect()
}

impl ThisStore {
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Db>> {
        Ok(self.pool.begin_with(BEGIN_WRITE).await?)
    }
}

#[async_trait]
impl Store for ThisStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
