//! The SQL of the store, shared by both databases.
//!
//! This file is compiled twice, as `sqlite::sql` and `postgres::sql` (`#[path]` modules): the
//! parent module names the database (`Db`), the store type (`ThisStore`), the statement that
//! begins a write transaction (`BEGIN_WRITE`) and `BACKEND`. The SQL is the dialect the two
//! databases share: `$N` parameters, `RETURNING`, `ON CONFLICT ... DO UPDATE`; column types
//! are TEXT, 64-bit integers and booleans only.
//!
//! Locking: a transaction that reads before it writes begins with an `UPDATE` of its parent
//! row (`lock_model`, `lock_endpoint`, the revision counter), which PostgreSQL holds as a row
//! lock until commit; SQLite transactions are `BEGIN IMMEDIATE` and hold the database's write
//! lock from the start.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::Row;

use super::{BACKEND, BEGIN_WRITE, Db, ThisStore};
use crate::store::records::*;
use crate::store::rules::*;
use crate::store::{Result, Store, StoreError};

type DbRow = <Db as sqlx::Database>::Row;
type DbConn = <Db as sqlx::Database>::Connection;

// Column lists, one per table (the `*_from_row` functions read columns by name).
macro_rules! user_columns {
    () => {
        "id, username, password_hash, created_at"
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
        "project, location, endpoint_id, display_name, description, labels, access, traffic_split, etag, \
         create_time, update_time"
    };
}
macro_rules! deployed_model_columns {
    () => {
        "project, location, endpoint_id, deployed_model_id, model_id, version_id, display_name, spec, \
         desired_state, status, create_time, update_time"
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

fn user_from_row(row: &DbRow) -> Result<User> {
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        created_at: timestamp(row.try_get("created_at")?)?,
    })
}

fn token_from_row(row: &DbRow) -> Result<ApiToken> {
    Ok(ApiToken {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        project: row.try_get("project")?,
        description: row.try_get("description")?,
        created_at: timestamp(row.try_get("created_at")?)?,
        expires_at: opt_timestamp(row.try_get("expires_at")?)?,
        revoked_at: opt_timestamp(row.try_get("revoked_at")?)?,
    })
}

fn model_from_row(row: &DbRow) -> Result<Model> {
    Ok(Model {
        project: row.try_get("project")?,
        location: row.try_get("location")?,
        model_id: row.try_get("model_id")?,
        display_name: row.try_get("display_name")?,
        description: row.try_get("description")?,
        labels: parse_json(row.try_get("labels")?, "models.labels")?,
        create_time: timestamp(row.try_get("create_time")?)?,
        update_time: timestamp(row.try_get("update_time")?)?,
        etag: row.try_get("etag")?,
    })
}

/// A version without its aliases.
fn version_from_row(row: &DbRow) -> Result<ModelVersion> {
    Ok(ModelVersion {
        project: row.try_get("project")?,
        location: row.try_get("location")?,
        model_id: row.try_get("model_id")?,
        version_id: row.try_get("version_id")?,
        version_description: row.try_get("version_description")?,
        container_spec: parse_json(row.try_get("container_spec")?, "model_versions.container_spec")?,
        artifact_uri: row.try_get("artifact_uri")?,
        artifact_sha256: row.try_get("artifact_sha256")?,
        predict_schemata: parse_json(row.try_get("predict_schemata")?, "model_versions.predict_schemata")?,
        labels: parse_json(row.try_get("labels")?, "model_versions.labels")?,
        create_time: timestamp(row.try_get("create_time")?)?,
        update_time: timestamp(row.try_get("update_time")?)?,
        aliases: Vec::new(),
    })
}

fn endpoint_from_row(row: &DbRow) -> Result<Endpoint> {
    Ok(Endpoint {
        project: row.try_get("project")?,
        location: row.try_get("location")?,
        endpoint_id: row.try_get("endpoint_id")?,
        display_name: row.try_get("display_name")?,
        description: row.try_get("description")?,
        labels: parse_json(row.try_get("labels")?, "endpoints.labels")?,
        access: row.try_get("access")?,
        traffic_split: parse_json(row.try_get("traffic_split")?, "endpoints.traffic_split")?,
        etag: row.try_get("etag")?,
        create_time: timestamp(row.try_get("create_time")?)?,
        update_time: timestamp(row.try_get("update_time")?)?,
    })
}

fn deployed_model_from_row(row: &DbRow) -> Result<DeployedModel> {
    Ok(DeployedModel {
        project: row.try_get("project")?,
        location: row.try_get("location")?,
        endpoint_id: row.try_get("endpoint_id")?,
        deployed_model_id: row.try_get("deployed_model_id")?,
        model_id: row.try_get("model_id")?,
        version_id: row.try_get("version_id")?,
        display_name: row.try_get("display_name")?,
        spec: parse_json(row.try_get("spec")?, "deployed_models.spec")?,
        desired_state: row.try_get("desired_state")?,
        status: parse_json(row.try_get("status")?, "deployed_models.status")?,
        create_time: timestamp(row.try_get("create_time")?)?,
        update_time: timestamp(row.try_get("update_time")?)?,
    })
}

fn operation_from_row(row: &DbRow) -> Result<Operation> {
    Ok(Operation {
        project: row.try_get("project")?,
        location: row.try_get("location")?,
        operation_id: row.try_get("operation_id")?,
        target: row.try_get("target")?,
        kind: row.try_get("kind")?,
        metadata: parse_json(row.try_get("metadata")?, "operations.metadata")?,
        done: row.try_get("done")?,
        error: parse_opt_json(row.try_get("error")?, "operations.error")?,
        response: parse_opt_json(row.try_get("response")?, "operations.response")?,
        cancel_requested: row.try_get("cancel_requested")?,
        create_time: timestamp(row.try_get("create_time")?)?,
        update_time: timestamp(row.try_get("update_time")?)?,
    })
}

fn revision_from_row(row: &DbRow) -> Result<Revision> {
    Ok(Revision {
        project: row.try_get("project")?,
        location: row.try_get("location")?,
        endpoint_id: row.try_get("endpoint_id")?,
        deployed_model_id: row.try_get("deployed_model_id")?,
        revision: row.try_get("revision")?,
        manifests: row.try_get("manifests")?,
        source: row.try_get("source")?,
        create_time: timestamp(row.try_get("create_time")?)?,
    })
}

fn artifact_from_row(row: &DbRow) -> Result<Artifact> {
    Ok(Artifact {
        id: row.try_get("id")?,
        sha256: row.try_get("sha256")?,
        size_bytes: row.try_get("size_bytes")?,
        uri: row.try_get("uri")?,
        create_time: timestamp(row.try_get("create_time")?)?,
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_foreign_key_violation())
}

/// Maps a unique violation to `on_unique`, any other error to `StoreError::Database`.
fn on_unique(e: sqlx::Error, make: impl FnOnce() -> StoreError) -> StoreError {
    if is_unique_violation(&e) { make() } else { e.into() }
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

async fn model_exists(conn: &mut DbConn, key: &ModelKey) -> Result<bool> {
    let row = sqlx::query("SELECT 1 FROM models WHERE project = $1 AND location = $2 AND model_id = $3")
        .bind(&key.project)
        .bind(&key.location)
        .bind(&key.model_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.is_some())
}

/// Takes the model's row lock (a no-op update) for the rest of the transaction.
async fn lock_model(conn: &mut DbConn, key: &ModelKey) -> Result<()> {
    let done = sqlx::query(
        "UPDATE models SET version_counter = version_counter \
         WHERE project = $1 AND location = $2 AND model_id = $3",
    )
    .bind(&key.project)
    .bind(&key.location)
    .bind(&key.model_id)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 { Err(StoreError::not_found("model", key.name())) } else { Ok(()) }
}

async fn version_exists(conn: &mut DbConn, key: &ModelKey, version_id: i64) -> Result<bool> {
    let row = sqlx::query(
        "SELECT 1 FROM model_versions \
         WHERE project = $1 AND location = $2 AND model_id = $3 AND version_id = $4",
    )
    .bind(&key.project)
    .bind(&key.location)
    .bind(&key.model_id)
    .bind(version_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.is_some())
}

async fn alias_holder(conn: &mut DbConn, key: &ModelKey, alias: &str) -> Result<Option<i64>> {
    let row = sqlx::query(
        "SELECT version_id FROM model_version_aliases \
         WHERE project = $1 AND location = $2 AND model_id = $3 AND alias = $4",
    )
    .bind(&key.project)
    .bind(&key.location)
    .bind(&key.model_id)
    .bind(alias)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        Some(row) => Some(row.try_get("version_id")?),
        None => None,
    })
}

async fn insert_alias(conn: &mut DbConn, key: &ModelKey, alias: &str, version_id: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO model_version_aliases (project, location, model_id, alias, version_id) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&key.project)
    .bind(&key.location)
    .bind(&key.model_id)
    .bind(alias)
    .bind(version_id)
    .execute(&mut *conn)
    .await
    .map_err(|e| on_unique(e, || StoreError::already_exists("version alias", alias_name(key, alias))))?;
    Ok(())
}

/// Puts `alias` on the version, moving it from the version holding it, if any.
async fn upsert_alias(conn: &mut DbConn, key: &ModelKey, alias: &str, version_id: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO model_version_aliases (project, location, model_id, alias, version_id) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (project, location, model_id, alias) DO UPDATE SET version_id = excluded.version_id",
    )
    .bind(&key.project)
    .bind(&key.location)
    .bind(&key.model_id)
    .bind(alias)
    .bind(version_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn insert_version(
    conn: &mut DbConn,
    key: &ModelKey,
    version_id: i64,
    version: &ModelVersion,
    now: Timestamp,
) -> Result<ModelVersion> {
    let row = sqlx::query(concat!(
        "INSERT INTO model_versions (project, location, model_id, version_id, version_description, \
         container_spec, artifact_uri, artifact_sha256, predict_schemata, labels, create_time, update_time) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING ",
        version_columns!()
    ))
    .bind(&key.project)
    .bind(&key.location)
    .bind(&key.model_id)
    .bind(version_id)
    .bind(&version.version_description)
    .bind(json_text(&version.container_spec))
    .bind(&version.artifact_uri)
    .bind(&version.artifact_sha256)
    .bind(json_text(&version.predict_schemata))
    .bind(json_text(&version.labels))
    .bind(now.unix_micros())
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| {
        on_unique(e, || StoreError::already_exists("model version", version_name(key, version_id)))
    })?;
    version_from_row(&row)
}

/// A version with its aliases.
async fn load_version(conn: &mut DbConn, key: &ModelKey, version_id: i64) -> Result<ModelVersion> {
    let row = sqlx::query(concat!(
        "SELECT ",
        version_columns!(),
        " FROM model_versions WHERE project = $1 AND location = $2 AND model_id = $3 AND version_id = $4"
    ))
    .bind(&key.project)
    .bind(&key.location)
    .bind(&key.model_id)
    .bind(version_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Err(if model_exists(conn, key).await? {
            StoreError::not_found("model version", version_name(key, version_id))
        } else {
            StoreError::not_found("model", key.name())
        });
    };
    let mut version = version_from_row(&row)?;
    let aliases = sqlx::query(
        "SELECT alias FROM model_version_aliases \
         WHERE project = $1 AND location = $2 AND model_id = $3 AND version_id = $4 ORDER BY alias",
    )
    .bind(&key.project)
    .bind(&key.location)
    .bind(&key.model_id)
    .bind(version_id)
    .fetch_all(&mut *conn)
    .await?;
    version.aliases = aliases.iter().map(|r| r.try_get("alias")).collect::<Result<_, _>>()?;
    Ok(version)
}

/// Conflict when a version of the model (or this version, if given) is deployed.
async fn refuse_if_deployed(conn: &mut DbConn, key: &ModelKey, version_id: Option<i64>) -> Result<()> {
    let row = sqlx::query(
        "SELECT endpoint_id, deployed_model_id, version_id FROM deployed_models \
         WHERE project = $1 AND location = $2 AND model_id = $3 AND ($4 IS NULL OR version_id = $4) \
         ORDER BY endpoint_id, deployed_model_id LIMIT 1",
    )
    .bind(&key.project)
    .bind(&key.location)
    .bind(&key.model_id)
    .bind(version_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(()) };
    let endpoint: String = row.try_get("endpoint_id")?;
    let deployed: String = row.try_get("deployed_model_id")?;
    let version: i64 = row.try_get("version_id")?;
    let endpoint = EndpointKey::new(&key.project, &key.location, endpoint);
    Err(StoreError::Conflict(format!(
        "{} is deployed as {}; undeploy it first",
        version_name(key, version),
        deployed_model_name(&endpoint, &deployed)
    )))
}

async fn load_endpoint(conn: &mut DbConn, key: &EndpointKey) -> Result<Endpoint> {
    let row = sqlx::query(concat!(
        "SELECT ",
        endpoint_columns!(),
        " FROM endpoints WHERE project = $1 AND location = $2 AND endpoint_id = $3"
    ))
    .bind(&key.project)
    .bind(&key.location)
    .bind(&key.endpoint_id)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => endpoint_from_row(&row),
        None => Err(StoreError::not_found("endpoint", key.name())),
    }
}

/// Takes the endpoint's row lock by giving it a new etag (every change of an endpoint, its
/// split or its deployed models changes the etag), checking `expected_etag` if given.
/// Returns the traffic split as it was.
async fn lock_endpoint(
    conn: &mut DbConn,
    key: &EndpointKey,
    expected_etag: Option<&str>,
    now: Timestamp,
) -> Result<Value> {
    let row = sqlx::query(
        "UPDATE endpoints SET etag = $4, update_time = $5 \
         WHERE project = $1 AND location = $2 AND endpoint_id = $3 AND ($6 IS NULL OR etag = $6) \
         RETURNING traffic_split",
    )
    .bind(&key.project)
    .bind(&key.location)
    .bind(&key.endpoint_id)
    .bind(new_etag())
    .bind(now.unix_micros())
    .bind(expected_etag)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => parse_json(row.try_get("traffic_split")?, "endpoints.traffic_split"),
        None => {
            let current = current_endpoint_etag(conn, key).await?;
            Err(etag_mismatch(key.name(), expected_etag, current, "endpoint"))
        }
    }
}

async fn current_endpoint_etag(conn: &mut DbConn, key: &EndpointKey) -> Result<Option<String>> {
    let row =
        sqlx::query("SELECT etag FROM endpoints WHERE project = $1 AND location = $2 AND endpoint_id = $3")
            .bind(&key.project)
            .bind(&key.location)
            .bind(&key.endpoint_id)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(match row {
        Some(row) => Some(row.try_get("etag")?),
        None => None,
    })
}

async fn store_split(conn: &mut DbConn, key: &EndpointKey, split: &Value) -> Result<()> {
    sqlx::query(
        "UPDATE endpoints SET traffic_split = $4 WHERE project = $1 AND location = $2 AND endpoint_id = $3",
    )
    .bind(&key.project)
    .bind(&key.location)
    .bind(&key.endpoint_id)
    .bind(json_text(split))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The deployed models of the endpoint that may receive traffic (all but those undeploying).
async fn routable_deployed_models(conn: &mut DbConn, key: &EndpointKey) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT deployed_model_id FROM deployed_models \
         WHERE project = $1 AND location = $2 AND endpoint_id = $3 AND desired_state <> 'undeploying' \
         ORDER BY deployed_model_id",
    )
    .bind(&key.project)
    .bind(&key.location)
    .bind(&key.endpoint_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.iter().map(|r| r.try_get("deployed_model_id")).collect::<Result<_, _>>()?)
}

async fn load_deployed_model(conn: &mut DbConn, key: &EndpointKey, id: &str) -> Result<DeployedModel> {
    let row = sqlx::query(concat!(
        "SELECT ",
        deployed_model_columns!(),
        " FROM deployed_models \
          WHERE project = $1 AND location = $2 AND endpoint_id = $3 AND deployed_model_id = $4"
    ))
    .bind(&key.project)
    .bind(&key.location)
    .bind(&key.endpoint_id)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => deployed_model_from_row(&row),
        None => Err(StoreError::not_found("deployed model", deployed_model_name(key, id))),
    }
}

async fn deployed_model_exists(conn: &mut DbConn, key: &EndpointKey, id: &str) -> Result<()> {
    let row = sqlx::query(
        "SELECT 1 FROM deployed_models \
         WHERE project = $1 AND location = $2 AND endpoint_id = $3 AND deployed_model_id = $4",
    )
    .bind(&key.project)
    .bind(&key.location)
    .bind(&key.endpoint_id)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(_) => Ok(()),
        None => Err(StoreError::not_found("deployed model", deployed_model_name(key, id))),
    }
}

fn revision_name(key: &EndpointKey, deployed_model_id: &str, revision: i64) -> String {
    format!("{}/revisions/{revision}", deployed_model_name(key, deployed_model_id))
}

impl ThisStore {
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Db>> {
        Ok(self.pool.begin_with(BEGIN_WRITE).await?)
    }

    async fn update_deployed_model_column(
        &self,
        key: &EndpointKey,
        id: &str,
        query: &'static str,
        value: String,
    ) -> Result<DeployedModel> {
        let row = sqlx::query(query)
            .bind(&key.project)
            .bind(&key.location)
            .bind(&key.endpoint_id)
            .bind(id)
            .bind(value)
            .bind(Timestamp::now().unix_micros())
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => deployed_model_from_row(&row),
            None => Err(StoreError::not_found("deployed model", deployed_model_name(key, id))),
        }
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

    // --- users, memberships, API tokens ---------------------------------------------------

    async fn create_user(&self, username: &str, password_hash: &str) -> Result<User> {
        check_id(username, "a username")?;
        let row = sqlx::query(concat!(
            "INSERT INTO users (username, password_hash, created_at) VALUES ($1, $2, $3) RETURNING ",
            user_columns!()
        ))
        .bind(username)
        .bind(password_hash)
        .bind(Timestamp::now().unix_micros())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| on_unique(e, || StoreError::already_exists("user", username)))?;
        user_from_row(&row)
    }

    async fn get_user(&self, id: i64) -> Result<User> {
        let row = sqlx::query(concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => user_from_row(&row),
            None => Err(StoreError::not_found("user", id.to_string())),
        }
    }

    async fn get_user_by_name(&self, username: &str) -> Result<User> {
        let row = sqlx::query(concat!("SELECT ", user_columns!(), " FROM users WHERE username = $1"))
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => user_from_row(&row),
            None => Err(StoreError::not_found("user", username)),
        }
    }

    async fn count_users(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users").fetch_one(&self.pool).await?;
        Ok(row.try_get("n")?)
    }

    async fn set_password_hash(&self, user_id: i64, password_hash: &str) -> Result<()> {
        let done = sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind(user_id)
            .bind(password_hash)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            Err(StoreError::not_found("user", user_id.to_string()))
        } else {
            Ok(())
        }
    }

    async fn set_role(&self, user_id: i64, project: &str, role: &str) -> Result<Membership> {
        check_one_of(role, &ROLES, "role")?;
        check_id(project, "a project")?;
        sqlx::query(
            "INSERT INTO memberships (user_id, project, role) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, project) DO UPDATE SET role = excluded.role",
        )
        .bind(user_id)
        .bind(project)
        .bind(role)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if is_foreign_key_violation(&e) {
                StoreError::not_found("user", user_id.to_string())
            } else {
                e.into()
            }
        })?;
        Ok(Membership { user_id, project: project.to_owned(), role: role.to_owned() })
    }

    async fn get_role(&self, user_id: i64, project: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT role FROM memberships WHERE user_id = $1 AND project = $2")
            .bind(user_id)
            .bind(project)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => Some(row.try_get("role")?),
            None => None,
        })
    }

    async fn list_memberships(&self, user_id: i64) -> Result<Vec<Membership>> {
        let rows =
            sqlx::query("SELECT user_id, project, role FROM memberships WHERE user_id = $1 ORDER BY project")
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| {
                Ok(Membership {
                    user_id: row.try_get("user_id")?,
                    project: row.try_get("project")?,
                    role: row.try_get("role")?,
                })
            })
            .collect()
    }

    async fn remove_membership(&self, user_id: i64, project: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM memberships WHERE user_id = $1 AND project = $2")
            .bind(user_id)
            .bind(project)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            Err(StoreError::not_found("membership", format!("user {user_id} in project {project}")))
        } else {
            Ok(())
        }
    }

    async fn insert_api_token(&self, token: &ApiToken) -> Result<ApiToken> {
        check_id(&token.id, "a token id")?;
        let row = sqlx::query(concat!(
            "INSERT INTO api_tokens (id, user_id, project, description, created_at, expires_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL) RETURNING ",
            token_columns!()
        ))
        .bind(&token.id)
        .bind(token.user_id)
        .bind(&token.project)
        .bind(&token.description)
        .bind(token.created_at.unix_micros())
        .bind(token.expires_at.map(|t| t.unix_micros()))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            if is_foreign_key_violation(&e) {
                StoreError::not_found("user", token.user_id.to_string())
            } else {
                on_unique(e, || StoreError::already_exists("API token", &token.id))
            }
        })?;
        token_from_row(&row)
    }

    async fn get_api_token(&self, id: &str) -> Result<ApiToken> {
        let row = sqlx::query(concat!("SELECT ", token_columns!(), " FROM api_tokens WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => token_from_row(&row),
            None => Err(StoreError::not_found("API token", id)),
        }
    }

    async fn list_api_tokens(&self, user_id: i64) -> Result<Vec<ApiToken>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM api_tokens WHERE user_id = $1 ORDER BY created_at, id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_api_token(&self, id: &str) -> Result<ApiToken> {
        let row = sqlx::query(concat!(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 RETURNING ",
            token_columns!()
        ))
        .bind(id)
        .bind(Timestamp::now().unix_micros())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => token_from_row(&row),
            None => Err(StoreError::not_found("API token", id)),
        }
    }

    // --- models and versions ----------------------------------------------------------------

    async fn create_model(
        &self,
        model: &Model,
        first_version: &ModelVersion,
    ) -> Result<(Model, ModelVersion)> {
        let key = model.key();
        check_id(&key.project, "a project")?;
        check_id(&key.location, "a location")?;
        check_id(&key.model_id, "a model id")?;
        let aliases = normalize_aliases(&first_version.aliases, true)?;
        let now = Timestamp::now();
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(concat!(
            "INSERT INTO models (project, location, model_id, display_name, description, labels, etag, \
             version_counter, create_time, update_time) VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $8) \
             RETURNING ",
            model_columns!()
        ))
        .bind(&key.project)
        .bind(&key.location)
        .bind(&key.model_id)
        .bind(&model.display_name)
        .bind(&model.description)
        .bind(json_text(&model.labels))
        .bind(new_etag())
        .bind(now.unix_micros())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| on_unique(e, || StoreError::already_exists("model", key.name())))?;
        let stored = model_from_row(&row)?;
        let mut version = insert_version(&mut tx, &key, 1, first_version, now).await?;
        for alias in &aliases {
            insert_alias(&mut tx, &key, alias, 1).await?;
        }
        tx.commit().await?;
        version.aliases = aliases;
        Ok((stored, version))
    }

    async fn add_model_version(&self, key: &ModelKey, version: &ModelVersion) -> Result<ModelVersion> {
        let aliases = normalize_aliases(&version.aliases, false)?;
        let now = Timestamp::now();
        let mut tx = self.begin_write().await?;
        // Allocating the id takes the model's row lock: concurrent adds queue here.
        let row = sqlx::query(
            "UPDATE models SET version_counter = version_counter + 1 \
             WHERE project = $1 AND location = $2 AND model_id = $3 RETURNING version_counter",
        )
        .bind(&key.project)
        .bind(&key.location)
        .bind(&key.model_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Err(StoreError::not_found("model", key.name())) };
        let version_id: i64 = row.try_get("version_counter")?;
        insert_version(&mut tx, key, version_id, version, now).await?;
        for alias in &aliases {
            if alias == DEFAULT_ALIAS {
                upsert_alias(&mut tx, key, alias, version_id).await?;
            } else {
                insert_alias(&mut tx, key, alias, version_id).await?;
            }
        }
        let stored = load_version(&mut tx, key, version_id).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn get_model(&self, key: &ModelKey) -> Result<Model> {
        let row = sqlx::query(concat!(
            "SELECT ",
            model_columns!(),
            " FROM models WHERE project = $1 AND location = $2 AND model_id = $3"
        ))
        .bind(&key.project)
        .bind(&key.location)
        .bind(&key.model_id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => model_from_row(&row),
            None => Err(StoreError::not_found("model", key.name())),
        }
    }

    async fn list_models(&self, project: &str, location: &str) -> Result<Vec<Model>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            model_columns!(),
            " FROM models WHERE project = $1 AND location = $2 ORDER BY create_time, model_id"
        ))
        .bind(project)
        .bind(location)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(model_from_row).collect()
    }

    async fn update_model(&self, model: &Model, expected_etag: Option<&str>) -> Result<Model> {
        let key = model.key();
        let row = sqlx::query(concat!(
            "UPDATE models SET display_name = $4, description = $5, labels = $6, etag = $7, update_time = $8 \
             WHERE project = $1 AND location = $2 AND model_id = $3 AND ($9 IS NULL OR etag = $9) \
             RETURNING ",
            model_columns!()
        ))
        .bind(&key.project)
        .bind(&key.location)
        .bind(&key.model_id)
        .bind(&model.display_name)
        .bind(&model.description)
        .bind(json_text(&model.labels))
        .bind(new_etag())
        .bind(Timestamp::now().unix_micros())
        .bind(expected_etag)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = row {
            return model_from_row(&row);
        }
        let current = match self.get_model(&key).await {
            Ok(model) => Some(model.etag),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        Err(etag_mismatch(key.name(), expected_etag, current, "model"))
    }

    async fn delete_model(&self, key: &ModelKey) -> Result<()> {
        let mut tx = self.begin_write().await?;
        lock_model(&mut tx, key).await?;
        refuse_if_deployed(&mut tx, key, None).await?;
        sqlx::query("DELETE FROM models WHERE project = $1 AND location = $2 AND model_id = $3")
            .bind(&key.project)
            .bind(&key.location)
            .bind(&key.model_id)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if is_foreign_key_violation(&e) {
                    StoreError::Conflict(format!("{} has deployed versions; undeploy them first", key.name()))
                } else {
                    e.into()
                }
            })?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_model_version(&self, key: &ModelKey, version_id: i64) -> Result<ModelVersion> {
        let mut conn = self.pool.acquire().await?;
        load_version(&mut conn, key, version_id).await
    }

    async fn list_model_versions(&self, key: &ModelKey) -> Result<Vec<ModelVersion>> {
        let mut conn = self.pool.acquire().await?;
        if !model_exists(&mut conn, key).await? {
            return Err(StoreError::not_found("model", key.name()));
        }
        let rows = sqlx::query(concat!(
            "SELECT ",
            version_columns!(),
            " FROM model_versions WHERE project = $1 AND location = $2 AND model_id = $3 ORDER BY version_id"
        ))
        .bind(&key.project)
        .bind(&key.location)
        .bind(&key.model_id)
        .fetch_all(&mut *conn)
        .await?;
        let mut versions = rows.iter().map(version_from_row).collect::<Result<Vec<_>>>()?;
        let aliases = sqlx::query(
            "SELECT alias, version_id FROM model_version_aliases \
             WHERE project = $1 AND location = $2 AND model_id = $3 ORDER BY alias",
        )
        .bind(&key.project)
        .bind(&key.location)
        .bind(&key.model_id)
        .fetch_all(&mut *conn)
        .await?;
        for row in &aliases {
            let version_id: i64 = row.try_get("version_id")?;
            if let Some(version) = versions.iter_mut().find(|v| v.version_id == version_id) {
                version.aliases.push(row.try_get("alias")?);
            }
        }
        Ok(versions)
    }

    async fn resolve_alias(&self, key: &ModelKey, alias: &str) -> Result<i64> {
        let mut conn = self.pool.acquire().await?;
        match alias_holder(&mut conn, key, alias).await? {
            Some(version_id) => Ok(version_id),
            None if model_exists(&mut conn, key).await? => {
                Err(StoreError::not_found("version alias", alias_name(key, alias)))
            }
            None => Err(StoreError::not_found("model", key.name())),
        }
    }

    async fn merge_version_aliases(
        &self,
        key: &ModelKey,
        version_id: i64,
        add: &[String],
        remove: &[String],
    ) -> Result<ModelVersion> {
        let add = normalize_aliases(add, false)?;
        let remove = normalize_aliases(remove, false)?;
        if let Some(both) = add.iter().find(|a| remove.contains(a)) {
            return Err(StoreError::InvalidArgument(format!("alias {both:?} is both added and removed")));
        }
        if remove.iter().any(|a| a == DEFAULT_ALIAS) {
            return Err(StoreError::Conflict(format!(
                "the {DEFAULT_ALIAS:?} alias of {} cannot be removed; move it by adding it to another version",
                key.name()
            )));
        }
        let mut tx = self.begin_write().await?;
        lock_model(&mut tx, key).await?;
        if !version_exists(&mut tx, key, version_id).await? {
            return Err(StoreError::not_found("model version", version_name(key, version_id)));
        }
        for alias in &remove {
            match alias_holder(&mut tx, key, alias).await? {
                Some(holder) if holder == version_id => {
                    sqlx::query(
                        "DELETE FROM model_version_aliases \
                         WHERE project = $1 AND location = $2 AND model_id = $3 AND alias = $4",
                    )
                    .bind(&key.project)
                    .bind(&key.location)
                    .bind(&key.model_id)
                    .bind(alias)
                    .execute(&mut *tx)
                    .await?;
                }
                Some(holder) => {
                    return Err(StoreError::Conflict(format!(
                        "alias {alias:?} is on version {holder} of {}, not on version {version_id}",
                        key.name()
                    )));
                }
                None => {}
            }
        }
        for alias in &add {
            upsert_alias(&mut tx, key, alias, version_id).await?;
        }
        sqlx::query(
            "UPDATE model_versions SET update_time = $5 \
             WHERE project = $1 AND location = $2 AND model_id = $3 AND version_id = $4",
        )
        .bind(&key.project)
        .bind(&key.location)
        .bind(&key.model_id)
        .bind(version_id)
        .bind(Timestamp::now().unix_micros())
        .execute(&mut *tx)
        .await?;
        let stored = load_version(&mut tx, key, version_id).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn update_model_version(&self, version: &ModelVersion) -> Result<ModelVersion> {
        let key = version.model_key();
        let mut conn = self.pool.acquire().await?;
        let done = sqlx::query(
            "UPDATE model_versions SET version_description = $5, labels = $6, update_time = $7 \
             WHERE project = $1 AND location = $2 AND model_id = $3 AND version_id = $4",
        )
        .bind(&key.project)
        .bind(&key.location)
        .bind(&key.model_id)
        .bind(version.version_id)
        .bind(&version.version_description)
        .bind(json_text(&version.labels))
        .bind(Timestamp::now().unix_micros())
        .execute(&mut *conn)
        .await?;
        // load_version says whether the model or the version is missing.
        let stored = load_version(&mut conn, &key, version.version_id).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("model version", version_name(&key, version.version_id)));
        }
        Ok(stored)
    }

    async fn delete_model_version(&self, key: &ModelKey, version_id: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        lock_model(&mut tx, key).await?;
        if !version_exists(&mut tx, key, version_id).await? {
            return Err(StoreError::not_found("model version", version_name(key, version_id)));
        }
        if alias_holder(&mut tx, key, DEFAULT_ALIAS).await? == Some(version_id) {
            return Err(StoreError::Conflict(format!(
                "{} holds the {DEFAULT_ALIAS:?} alias; move the alias to another version first \
                 (mergeVersionAliases), or delete the whole model",
                version_name(key, version_id)
            )));
        }
        refuse_if_deployed(&mut tx, key, Some(version_id)).await?;
        sqlx::query(
            "DELETE FROM model_versions WHERE project = $1 AND location = $2 AND model_id = $3 AND version_id = $4",
        )
        .bind(&key.project)
        .bind(&key.location)
        .bind(&key.model_id)
        .bind(version_id)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_foreign_key_violation(&e) {
                StoreError::Conflict(format!("{} is deployed; undeploy it first", version_name(key, version_id)))
            } else {
                e.into()
            }
        })?;
        tx.commit().await?;
        Ok(())
    }

    // --- endpoints and deployed models ------------------------------------------------------

    async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<Endpoint> {
        let key = endpoint.key();
        check_id(&key.project, "a project")?;
        check_id(&key.location, "a location")?;
        check_id(&key.endpoint_id, "an endpoint id")?;
        let access = if endpoint.access.is_empty() { "authenticated" } else { endpoint.access.as_str() };
        check_one_of(access, &ENDPOINT_ACCESS, "endpoint access")?;
        let split = check_split(&endpoint.traffic_split, &[], &key)?;
        let now = Timestamp::now();
        let row = sqlx::query(concat!(
            "INSERT INTO endpoints (project, location, endpoint_id, display_name, description, labels, access, \
             traffic_split, etag, create_time, update_time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING ",
            endpoint_columns!()
        ))
        .bind(&key.project)
        .bind(&key.location)
        .bind(&key.endpoint_id)
        .bind(&endpoint.display_name)
        .bind(&endpoint.description)
        .bind(json_text(&endpoint.labels))
        .bind(access)
        .bind(json_text(&split))
        .bind(new_etag())
        .bind(now.unix_micros())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| on_unique(e, || StoreError::already_exists("endpoint", key.name())))?;
        endpoint_from_row(&row)
    }

    async fn get_endpoint(&self, key: &EndpointKey) -> Result<Endpoint> {
        let mut conn = self.pool.acquire().await?;
        load_endpoint(&mut conn, key).await
    }

    async fn list_endpoints(&self, project: &str, location: &str) -> Result<Vec<Endpoint>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            endpoint_columns!(),
            " FROM endpoints WHERE project = $1 AND location = $2 ORDER BY create_time, endpoint_id"
        ))
        .bind(project)
        .bind(location)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(endpoint_from_row).collect()
    }

    async fn list_all_endpoints(&self) -> Result<Vec<Endpoint>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            endpoint_columns!(),
            " FROM endpoints ORDER BY create_time, project, location, endpoint_id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(endpoint_from_row).collect()
    }

    async fn update_endpoint(&self, endpoint: &Endpoint, expected_etag: Option<&str>) -> Result<Endpoint> {
        let key = endpoint.key();
        let access = if endpoint.access.is_empty() { "authenticated" } else { endpoint.access.as_str() };
        check_one_of(access, &ENDPOINT_ACCESS, "endpoint access")?;
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query(concat!(
            "UPDATE endpoints SET display_name = $4, description = $5, labels = $6, access = $7, etag = $8, \
             update_time = $9 \
             WHERE project = $1 AND location = $2 AND endpoint_id = $3 AND ($10 IS NULL OR etag = $10) \
             RETURNING ",
            endpoint_columns!()
        ))
        .bind(&key.project)
        .bind(&key.location)
        .bind(&key.endpoint_id)
        .bind(&endpoint.display_name)
        .bind(&endpoint.description)
        .bind(json_text(&endpoint.labels))
        .bind(access)
        .bind(new_etag())
        .bind(Timestamp::now().unix_micros())
        .bind(expected_etag)
        .fetch_optional(&mut *conn)
        .await?;
        match row {
            Some(row) => endpoint_from_row(&row),
            None => {
                let current = current_endpoint_etag(&mut conn, &key).await?;
                Err(etag_mismatch(key.name(), expected_etag, current, "endpoint"))
            }
        }
    }

    async fn set_traffic_split(
        &self,
        key: &EndpointKey,
        split: &Value,
        expected_etag: Option<&str>,
    ) -> Result<Endpoint> {
        let mut tx = self.begin_write().await?;
        lock_endpoint(&mut tx, key, expected_etag, Timestamp::now()).await?;
        let routable = routable_deployed_models(&mut tx, key).await?;
        let split = check_split(split, &routable, key)?;
        store_split(&mut tx, key, &split).await?;
        let stored = load_endpoint(&mut tx, key).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn delete_endpoint(&self, key: &EndpointKey) -> Result<()> {
        let mut tx = self.begin_write().await?;
        lock_endpoint(&mut tx, key, None, Timestamp::now()).await?;
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM deployed_models WHERE project = $1 AND location = $2 AND endpoint_id = $3",
        )
        .bind(&key.project)
        .bind(&key.location)
        .bind(&key.endpoint_id)
        .fetch_one(&mut *tx)
        .await?;
        let deployed: i64 = row.try_get("n")?;
        if deployed > 0 {
            return Err(StoreError::Conflict(format!(
                "{} has {deployed} deployed model(s); undeploy them first",
                key.name()
            )));
        }
        sqlx::query("DELETE FROM endpoints WHERE project = $1 AND location = $2 AND endpoint_id = $3")
            .bind(&key.project)
            .bind(&key.location)
            .bind(&key.endpoint_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn deploy(
        &self,
        endpoint: &EndpointKey,
        deployed_model: &DeployedModel,
        new_split: Option<&Value>,
    ) -> Result<(Endpoint, DeployedModel)> {
        let id = &deployed_model.deployed_model_id;
        check_id(id, "a deployed model id")?;
        let model = ModelKey::new(&endpoint.project, &endpoint.location, &deployed_model.model_id);
        let now = Timestamp::now();
        let mut tx = self.begin_write().await?;
        lock_endpoint(&mut tx, endpoint, None, now).await?;
        if !version_exists(&mut tx, &model, deployed_model.version_id).await? {
            return Err(StoreError::not_found(
                "model version",
                version_name(&model, deployed_model.version_id),
            ));
        }
        let row = sqlx::query(concat!(
            "INSERT INTO deployed_models (project, location, endpoint_id, deployed_model_id, model_id, version_id, \
             display_name, spec, desired_state, status, revision_counter, create_time, update_time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'deploying', $9, 0, $10, $10) RETURNING ",
            deployed_model_columns!()
        ))
        .bind(&endpoint.project)
        .bind(&endpoint.location)
        .bind(&endpoint.endpoint_id)
        .bind(id)
        .bind(&deployed_model.model_id)
        .bind(deployed_model.version_id)
        .bind(&deployed_model.display_name)
        .bind(json_text(&deployed_model.spec))
        .bind(json_text(&deployed_model.status))
        .bind(now.unix_micros())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| on_unique(e, || StoreError::already_exists("deployed model", deployed_model_name(endpoint, id))))?;
        let stored = deployed_model_from_row(&row)?;
        if let Some(split) = new_split {
            let routable = routable_deployed_models(&mut tx, endpoint).await?;
            let split = check_split(split, &routable, endpoint)?;
            store_split(&mut tx, endpoint, &split).await?;
        }
        let endpoint = load_endpoint(&mut tx, endpoint).await?;
        tx.commit().await?;
        Ok((endpoint, stored))
    }

    async fn undeploy(
        &self,
        endpoint: &EndpointKey,
        deployed_model_id: &str,
        new_split: Option<&Value>,
    ) -> Result<(Endpoint, DeployedModel)> {
        let id = deployed_model_id;
        let now = Timestamp::now();
        let mut tx = self.begin_write().await?;
        let current = lock_endpoint(&mut tx, endpoint, None, now).await?;
        let deployed = load_deployed_model(&mut tx, endpoint, id).await?;
        if deployed.desired_state == "undeploying" {
            return Err(StoreError::Conflict(format!(
                "{} is being undeployed already",
                deployed_model_name(endpoint, id)
            )));
        }
        let remaining: Vec<String> =
            routable_deployed_models(&mut tx, endpoint).await?.into_iter().filter(|d| d != id).collect();
        let split = if remaining.is_empty() {
            // Undeploying the last model always leaves the split empty.
            Value::Object(Default::default())
        } else {
            let (split, percent) = match new_split {
                Some(split) => (split, split_percent(split, id)),
                None => (&current, split_percent(&current, id)),
            };
            if percent > 0 {
                return Err(StoreError::Conflict(format!(
                    "{} would still receive {percent}% of the traffic; give a traffic split that moves \
                     its traffic to other deployed models",
                    deployed_model_name(endpoint, id)
                )));
            }
            check_split(&split_without(split, id), &remaining, endpoint)?
        };
        store_split(&mut tx, endpoint, &split).await?;
        let row = sqlx::query(concat!(
            "UPDATE deployed_models SET desired_state = 'undeploying', update_time = $5 \
             WHERE project = $1 AND location = $2 AND endpoint_id = $3 AND deployed_model_id = $4 RETURNING ",
            deployed_model_columns!()
        ))
        .bind(&endpoint.project)
        .bind(&endpoint.location)
        .bind(&endpoint.endpoint_id)
        .bind(id)
        .bind(now.unix_micros())
        .fetch_one(&mut *tx)
        .await?;
        let deployed = deployed_model_from_row(&row)?;
        let endpoint = load_endpoint(&mut tx, endpoint).await?;
        tx.commit().await?;
        Ok((endpoint, deployed))
    }

    async fn get_deployed_model(
        &self,
        endpoint: &EndpointKey,
        deployed_model_id: &str,
    ) -> Result<DeployedModel> {
        let mut conn = self.pool.acquire().await?;
        load_deployed_model(&mut conn, endpoint, deployed_model_id).await
    }

    async fn list_deployed_models(&self, endpoint: &EndpointKey) -> Result<Vec<DeployedModel>> {
        let mut conn = self.pool.acquire().await?;
        if current_endpoint_etag(&mut conn, endpoint).await?.is_none() {
            return Err(StoreError::not_found("endpoint", endpoint.name()));
        }
        let rows = sqlx::query(concat!(
            "SELECT ",
            deployed_model_columns!(),
            " FROM deployed_models WHERE project = $1 AND location = $2 AND endpoint_id = $3 \
              ORDER BY create_time, deployed_model_id"
        ))
        .bind(&endpoint.project)
        .bind(&endpoint.location)
        .bind(&endpoint.endpoint_id)
        .fetch_all(&mut *conn)
        .await?;
        rows.iter().map(deployed_model_from_row).collect()
    }

    async fn list_all_deployed_models(&self) -> Result<Vec<DeployedModel>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            deployed_model_columns!(),
            " FROM deployed_models ORDER BY project, location, endpoint_id, create_time, deployed_model_id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(deployed_model_from_row).collect()
    }

    async fn set_deployed_model_state(
        &self,
        endpoint: &EndpointKey,
        deployed_model_id: &str,
        desired_state: &str,
    ) -> Result<DeployedModel> {
        check_one_of(desired_state, &DEPLOYED_MODEL_STATES, "deployed model state")?;
        if desired_state == "undeploying" {
            return Err(StoreError::InvalidArgument(
                "undeploy a deployed model with `undeploy`, which also takes it out of the traffic split"
                    .to_owned(),
            ));
        }
        self.update_deployed_model_column(
            endpoint,
            deployed_model_id,
            concat!(
                "UPDATE deployed_models SET desired_state = $5, update_time = $6 \
                 WHERE project = $1 AND location = $2 AND endpoint_id = $3 AND deployed_model_id = $4 \
                 AND desired_state <> 'undeploying' RETURNING ",
                deployed_model_columns!()
            ),
            desired_state.to_owned(),
        )
        .await
    }

    async fn set_deployed_model_status(
        &self,
        endpoint: &EndpointKey,
        deployed_model_id: &str,
        status: &Value,
    ) -> Result<DeployedModel> {
        self.update_deployed_model_column(
            endpoint,
            deployed_model_id,
            concat!(
                "UPDATE deployed_models SET status = $5, update_time = $6 \
                 WHERE project = $1 AND location = $2 AND endpoint_id = $3 AND deployed_model_id = $4 \
                 RETURNING ",
                deployed_model_columns!()
            ),
            json_text(status),
        )
        .await
    }

    async fn update_deployed_model_spec(
        &self,
        endpoint: &EndpointKey,
        deployed_model_id: &str,
        spec: &Value,
    ) -> Result<DeployedModel> {
        self.update_deployed_model_column(
            endpoint,
            deployed_model_id,
            concat!(
                "UPDATE deployed_models SET spec = $5, update_time = $6 \
                 WHERE project = $1 AND location = $2 AND endpoint_id = $3 AND deployed_model_id = $4 \
                 RETURNING ",
                deployed_model_columns!()
            ),
            json_text(spec),
        )
        .await
    }

    async fn delete_deployed_model(&self, endpoint: &EndpointKey, deployed_model_id: &str) -> Result<()> {
        let id = deployed_model_id;
        let mut tx = self.begin_write().await?;
        let current = lock_endpoint(&mut tx, endpoint, None, Timestamp::now()).await?;
        deployed_model_exists(&mut tx, endpoint, id).await?;
        let percent = split_percent(&current, id);
        if percent > 0 {
            return Err(StoreError::Conflict(format!(
                "{} still receives {percent}% of the traffic; change the traffic split or undeploy it first",
                deployed_model_name(endpoint, id)
            )));
        }
        if current.get(id).is_some() {
            store_split(&mut tx, endpoint, &split_without(&current, id)).await?;
        }
        sqlx::query(
            "DELETE FROM deployed_models \
             WHERE project = $1 AND location = $2 AND endpoint_id = $3 AND deployed_model_id = $4",
        )
        .bind(&endpoint.project)
        .bind(&endpoint.location)
        .bind(&endpoint.endpoint_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    // --- long-running operations ------------------------------------------------------------

    async fn insert_operation(&self, operation: &Operation) -> Result<Operation> {
        check_id(&operation.operation_id, "an operation id")?;
        check_operation_result(operation)?;
        let name = operation_name(&operation.project, &operation.location, &operation.operation_id);
        let row = sqlx::query(concat!(
            "INSERT INTO operations (project, location, operation_id, target, kind, metadata, done, error, \
             response, cancel_requested, create_time, update_time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING ",
            operation_columns!()
        ))
        .bind(&operation.project)
        .bind(&operation.location)
        .bind(&operation.operation_id)
        .bind(&operation.target)
        .bind(&operation.kind)
        .bind(json_text(&operation.metadata))
        .bind(operation.done)
        .bind(json_opt_text(&operation.error))
        .bind(json_opt_text(&operation.response))
        .bind(false)
        .bind(Timestamp::now().unix_micros())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| on_unique(e, || StoreError::already_exists("operation", name)))?;
        operation_from_row(&row)
    }

    async fn get_operation(&self, project: &str, location: &str, operation_id: &str) -> Result<Operation> {
        let row = sqlx::query(concat!(
            "SELECT ",
            operation_columns!(),
            " FROM operations WHERE project = $1 AND location = $2 AND operation_id = $3"
        ))
        .bind(project)
        .bind(location)
        .bind(operation_id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => operation_from_row(&row),
            None => Err(StoreError::not_found("operation", operation_name(project, location, operation_id))),
        }
    }

    async fn list_operations(&self, project: &str, location: &str) -> Result<Vec<Operation>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            operation_columns!(),
            " FROM operations WHERE project = $1 AND location = $2 ORDER BY create_time, operation_id"
        ))
        .bind(project)
        .bind(location)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(operation_from_row).collect()
    }

    async fn list_unfinished_operations(&self) -> Result<Vec<Operation>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            operation_columns!(),
            " FROM operations WHERE done = $1 ORDER BY create_time, project, location, operation_id"
        ))
        .bind(false)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(operation_from_row).collect()
    }

    async fn update_operation(&self, operation: &Operation) -> Result<Operation> {
        check_operation_result(operation)?;
        let (project, location, id) = (&operation.project, &operation.location, &operation.operation_id);
        let row = sqlx::query(concat!(
            "UPDATE operations SET metadata = $4, done = $5, error = $6, response = $7, update_time = $8 \
             WHERE project = $1 AND location = $2 AND operation_id = $3 AND done = $9 RETURNING ",
            operation_columns!()
        ))
        .bind(project)
        .bind(location)
        .bind(id)
        .bind(json_text(&operation.metadata))
        .bind(operation.done)
        .bind(json_opt_text(&operation.error))
        .bind(json_opt_text(&operation.response))
        .bind(Timestamp::now().unix_micros())
        .bind(false)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => operation_from_row(&row),
            None => {
                // Missing (NotFound from get_operation), or done already.
                self.get_operation(project, location, id).await?;
                Err(StoreError::Conflict(format!(
                    "{} is done already; its result cannot change",
                    operation_name(project, location, id)
                )))
            }
        }
    }

    async fn request_cancel_operation(
        &self,
        project: &str,
        location: &str,
        operation_id: &str,
    ) -> Result<Operation> {
        let row = sqlx::query(concat!(
            "UPDATE operations SET cancel_requested = $4, update_time = $5 \
             WHERE project = $1 AND location = $2 AND operation_id = $3 AND done = $6 RETURNING ",
            operation_columns!()
        ))
        .bind(project)
        .bind(location)
        .bind(operation_id)
        .bind(true)
        .bind(Timestamp::now().unix_micros())
        .bind(false)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => operation_from_row(&row),
            // Done already (nothing to cancel), or missing.
            None => self.get_operation(project, location, operation_id).await,
        }
    }

    async fn delete_operation(&self, project: &str, location: &str, operation_id: &str) -> Result<()> {
        let done =
            sqlx::query("DELETE FROM operations WHERE project = $1 AND location = $2 AND operation_id = $3")
                .bind(project)
                .bind(location)
                .bind(operation_id)
                .execute(&self.pool)
                .await?;
        if done.rows_affected() == 0 {
            Err(StoreError::not_found("operation", operation_name(project, location, operation_id)))
        } else {
            Ok(())
        }
    }

    // --- revisions ---------------------------------------------------------------------------

    async fn insert_revision(&self, revision: &Revision) -> Result<Revision> {
        check_one_of(&revision.source, &REVISION_SOURCES, "revision source")?;
        let endpoint = EndpointKey::new(&revision.project, &revision.location, &revision.endpoint_id);
        let id = &revision.deployed_model_id;
        let mut tx = self.begin_write().await?;
        // Allocating the number takes the deployed model's row lock.
        let row = sqlx::query(
            "UPDATE deployed_models SET revision_counter = revision_counter + 1 \
             WHERE project = $1 AND location = $2 AND endpoint_id = $3 AND deployed_model_id = $4 \
             RETURNING revision_counter",
        )
        .bind(&endpoint.project)
        .bind(&endpoint.location)
        .bind(&endpoint.endpoint_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(StoreError::not_found("deployed model", deployed_model_name(&endpoint, id)));
        };
        let number: i64 = row.try_get("revision_counter")?;
        let row = sqlx::query(concat!(
            "INSERT INTO revisions (project, location, endpoint_id, deployed_model_id, revision, manifests, source, \
             create_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ",
            revision_columns!()
        ))
        .bind(&endpoint.project)
        .bind(&endpoint.location)
        .bind(&endpoint.endpoint_id)
        .bind(id)
        .bind(number)
        .bind(&revision.manifests)
        .bind(&revision.source)
        .bind(Timestamp::now().unix_micros())
        .fetch_one(&mut *tx)
        .await?;
        let stored = revision_from_row(&row)?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn list_revisions(&self, endpoint: &EndpointKey, deployed_model_id: &str) -> Result<Vec<Revision>> {
        let mut conn = self.pool.acquire().await?;
        deployed_model_exists(&mut conn, endpoint, deployed_model_id).await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            revision_columns!(),
            " FROM revisions \
              WHERE project = $1 AND location = $2 AND endpoint_id = $3 AND deployed_model_id = $4 \
              ORDER BY revision"
        ))
        .bind(&endpoint.project)
        .bind(&endpoint.location)
        .bind(&endpoint.endpoint_id)
        .bind(deployed_model_id)
        .fetch_all(&mut *conn)
        .await?;
        rows.iter().map(revision_from_row).collect()
    }

    async fn get_revision(
        &self,
        endpoint: &EndpointKey,
        deployed_model_id: &str,
        revision: i64,
    ) -> Result<Revision> {
        let mut conn = self.pool.acquire().await?;
        deployed_model_exists(&mut conn, endpoint, deployed_model_id).await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            revision_columns!(),
            " FROM revisions \
              WHERE project = $1 AND location = $2 AND endpoint_id = $3 AND deployed_model_id = $4 \
              AND revision = $5"
        ))
        .bind(&endpoint.project)
        .bind(&endpoint.location)
        .bind(&endpoint.endpoint_id)
        .bind(deployed_model_id)
        .bind(revision)
        .fetch_optional(&mut *conn)
        .await?;
        match row {
            Some(row) => revision_from_row(&row),
            None => {
                Err(StoreError::not_found("revision", revision_name(endpoint, deployed_model_id, revision)))
            }
        }
    }

    async fn latest_revision(
        &self,
        endpoint: &EndpointKey,
        deployed_model_id: &str,
    ) -> Result<Option<Revision>> {
        let mut conn = self.pool.acquire().await?;
        deployed_model_exists(&mut conn, endpoint, deployed_model_id).await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            revision_columns!(),
            " FROM revisions \
              WHERE project = $1 AND location = $2 AND endpoint_id = $3 AND deployed_model_id = $4 \
              ORDER BY revision DESC LIMIT 1"
        ))
        .bind(&endpoint.project)
        .bind(&endpoint.location)
        .bind(&endpoint.endpoint_id)
        .bind(deployed_model_id)
        .fetch_optional(&mut *conn)
        .await?;
        row.as_ref().map(revision_from_row).transpose()
    }

    // --- artifacts ---------------------------------------------------------------------------

    async fn insert_artifact(&self, artifact: &Artifact) -> Result<Artifact> {
        check_id(&artifact.id, "an artifact id")?;
        let row = sqlx::query(concat!(
            "INSERT INTO artifacts (id, sha256, size_bytes, uri, create_time) VALUES ($1, $2, $3, $4, $5) \
             RETURNING ",
            artifact_columns!()
        ))
        .bind(&artifact.id)
        .bind(&artifact.sha256)
        .bind(artifact.size_bytes)
        .bind(&artifact.uri)
        .bind(Timestamp::now().unix_micros())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| on_unique(e, || StoreError::already_exists("artifact", &artifact.id)))?;
        artifact_from_row(&row)
    }

    async fn get_artifact(&self, id: &str) -> Result<Artifact> {
        let row = sqlx::query(concat!("SELECT ", artifact_columns!(), " FROM artifacts WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => artifact_from_row(&row),
            None => Err(StoreError::not_found("artifact", id)),
        }
    }

    async fn find_artifact_by_sha256(&self, sha256: &str) -> Result<Option<Artifact>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            artifact_columns!(),
            " FROM artifacts WHERE sha256 = $1 ORDER BY create_time, id LIMIT 1"
        ))
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(artifact_from_row).transpose()
    }
}
