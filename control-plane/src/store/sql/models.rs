//! Models, versions and aliases.

use async_trait::async_trait;

use super::{BindKey, DbConn, ThisStore, decode_all, etag_mismatch, found, on_foreign_key, on_unique};
use crate::store::codec::to_json;
use crate::store::models::{ModelRow, ModelVersionRow};
use crate::store::rules::{check_id, new_etag, normalize_aliases};
use crate::store::{
    DEFAULT_ALIAS, EndpointKey, Model, ModelKey, ModelStore, ModelVersion, Result, StoreError, Timestamp,
};

fn alias_name(key: &ModelKey, alias: &str) -> String {
    format!("{}@{alias}", key.name())
}

pub(super) async fn model_exists(conn: &mut DbConn, key: &ModelKey) -> Result<bool> {
    let row = sqlx::query("SELECT 1 FROM models WHERE project = $1 AND location = $2 AND model_id = $3")
        .bind_model(key)
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
    .bind_model(key)
    .execute(&mut *conn)
    .await?;
    super::changed(done.rows_affected(), "model", || key.name())
}

pub(super) async fn version_exists(conn: &mut DbConn, key: &ModelKey, version_id: i64) -> Result<bool> {
    let row = sqlx::query(
        "SELECT 1 FROM model_versions \
         WHERE project = $1 AND location = $2 AND model_id = $3 AND version_id = $4",
    )
    .bind_model(key)
    .bind(version_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.is_some())
}

/// NotFound naming the version, or its model when that is what is missing.
async fn version_not_found(conn: &mut DbConn, key: &ModelKey, version_id: i64) -> StoreError {
    match model_exists(conn, key).await {
        Ok(true) => StoreError::not_found("model version", key.version_name(version_id)),
        Ok(false) => StoreError::not_found("model", key.name()),
        Err(e) => e,
    }
}

async fn alias_holder(conn: &mut DbConn, key: &ModelKey, alias: &str) -> Result<Option<i64>> {
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT version_id FROM model_version_aliases \
         WHERE project = $1 AND location = $2 AND model_id = $3 AND alias = $4",
    )
    .bind_model(key)
    .bind(alias)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|(v,)| v))
}

async fn insert_alias(conn: &mut DbConn, key: &ModelKey, alias: &str, version_id: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO model_version_aliases (project, location, model_id, alias, version_id) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind_model(key)
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
    .bind_model(key)
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
    let row: ModelVersionRow = sqlx::query_as(concat!(
        "INSERT INTO model_versions (project, location, model_id, version_id, version_description, \
         container_spec, artifact_uri, artifact_sha256, predict_schemata, labels, create_time, update_time) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING ",
        version_columns!()
    ))
    .bind_model(key)
    .bind(version_id)
    .bind(&version.version_description)
    .bind(to_json(&version.container_spec))
    .bind(&version.artifact_uri)
    .bind(&version.artifact_sha256)
    .bind(to_json(&version.predict_schemata))
    .bind(to_json(&version.labels))
    .bind(now.unix_micros())
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| {
        on_unique(e, || StoreError::already_exists("model version", key.version_name(version_id)))
    })?;
    row.decode()
}

/// A version with its aliases.
async fn load_version(conn: &mut DbConn, key: &ModelKey, version_id: i64) -> Result<ModelVersion> {
    let row: Option<ModelVersionRow> = sqlx::query_as(concat!(
        "SELECT ",
        version_columns!(),
        " FROM model_versions WHERE project = $1 AND location = $2 AND model_id = $3 AND version_id = $4"
    ))
    .bind_model(key)
    .bind(version_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Err(version_not_found(conn, key, version_id).await) };
    let mut version = row.decode()?;
    let aliases: Vec<(String,)> = sqlx::query_as(
        "SELECT alias FROM model_version_aliases \
         WHERE project = $1 AND location = $2 AND model_id = $3 AND version_id = $4 ORDER BY alias",
    )
    .bind_model(key)
    .bind(version_id)
    .fetch_all(&mut *conn)
    .await?;
    version.aliases = aliases.into_iter().map(|(a,)| a).collect();
    Ok(version)
}

/// Conflict when a version of the model (or this version, if given) is deployed.
async fn refuse_if_deployed(conn: &mut DbConn, key: &ModelKey, version_id: Option<i64>) -> Result<()> {
    let row: Option<(String, String, i64)> = sqlx::query_as(
        "SELECT endpoint_id, deployed_model_id, version_id FROM deployed_models \
         WHERE project = $1 AND location = $2 AND model_id = $3 AND ($4 IS NULL OR version_id = $4) \
         ORDER BY endpoint_id, deployed_model_id LIMIT 1",
    )
    .bind_model(key)
    .bind(version_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((endpoint, deployed, version)) = row else { return Ok(()) };
    let endpoint = EndpointKey::new(&key.project, &key.location, endpoint);
    Err(StoreError::Conflict(format!(
        "{} is deployed as {}; undeploy it first",
        key.version_name(version),
        endpoint.deployed_model_name(&deployed)
    )))
}

#[async_trait]
impl ModelStore for ThisStore {
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
        let row: ModelRow = sqlx::query_as(concat!(
            "INSERT INTO models (project, location, model_id, display_name, description, labels, etag, \
             version_counter, create_time, update_time) VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $8) \
             RETURNING ",
            model_columns!()
        ))
        .bind_model(&key)
        .bind(&model.display_name)
        .bind(&model.description)
        .bind(to_json(&model.labels))
        .bind(new_etag())
        .bind(now.unix_micros())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| on_unique(e, || StoreError::already_exists("model", key.name())))?;
        let stored = row.decode()?;
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
        let row: Option<(i64,)> = sqlx::query_as(
            "UPDATE models SET version_counter = version_counter + 1 \
             WHERE project = $1 AND location = $2 AND model_id = $3 RETURNING version_counter",
        )
        .bind_model(key)
        .fetch_optional(&mut *tx)
        .await?;
        let (version_id,) = found(row, "model", || key.name())?;
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
        let row: Option<ModelRow> = sqlx::query_as(concat!(
            "SELECT ",
            model_columns!(),
            " FROM models WHERE project = $1 AND location = $2 AND model_id = $3"
        ))
        .bind_model(key)
        .fetch_optional(&self.pool)
        .await?;
        found(row, "model", || key.name())?.decode()
    }

    async fn list_models(&self, project: &str, location: &str) -> Result<Vec<Model>> {
        let rows: Vec<ModelRow> = sqlx::query_as(concat!(
            "SELECT ",
            model_columns!(),
            " FROM models WHERE project = $1 AND location = $2 ORDER BY create_time, model_id"
        ))
        .bind(project)
        .bind(location)
        .fetch_all(&self.pool)
        .await?;
        decode_all(rows, ModelRow::decode)
    }

    async fn update_model(&self, model: &Model, expected_etag: Option<&str>) -> Result<Model> {
        let key = model.key();
        let row: Option<ModelRow> = sqlx::query_as(concat!(
            "UPDATE models SET display_name = $4, description = $5, labels = $6, etag = $7, update_time = $8 \
             WHERE project = $1 AND location = $2 AND model_id = $3 AND ($9 IS NULL OR etag = $9) \
             RETURNING ",
            model_columns!()
        ))
        .bind_model(&key)
        .bind(&model.display_name)
        .bind(&model.description)
        .bind(to_json(&model.labels))
        .bind(new_etag())
        .bind(Timestamp::now().unix_micros())
        .bind(expected_etag)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = row {
            return row.decode();
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
            .bind_model(key)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                on_foreign_key(e, || {
                    StoreError::Conflict(format!("{} has deployed versions; undeploy them first", key.name()))
                })
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
        let rows: Vec<ModelVersionRow> = sqlx::query_as(concat!(
            "SELECT ",
            version_columns!(),
            " FROM model_versions WHERE project = $1 AND location = $2 AND model_id = $3 ORDER BY version_id"
        ))
        .bind_model(key)
        .fetch_all(&mut *conn)
        .await?;
        let mut versions = decode_all(rows, ModelVersionRow::decode)?;
        let aliases: Vec<(String, i64)> = sqlx::query_as(
            "SELECT alias, version_id FROM model_version_aliases \
             WHERE project = $1 AND location = $2 AND model_id = $3 ORDER BY alias",
        )
        .bind_model(key)
        .fetch_all(&mut *conn)
        .await?;
        for (alias, version_id) in aliases {
            if let Some(version) = versions.iter_mut().find(|v| v.version_id == version_id) {
                version.aliases.push(alias);
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
            return Err(StoreError::not_found("model version", key.version_name(version_id)));
        }
        for alias in &remove {
            match alias_holder(&mut tx, key, alias).await? {
                Some(holder) if holder == version_id => {
                    sqlx::query(
                        "DELETE FROM model_version_aliases \
                         WHERE project = $1 AND location = $2 AND model_id = $3 AND alias = $4",
                    )
                    .bind_model(key)
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
        .bind_model(key)
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
        sqlx::query(
            "UPDATE model_versions SET version_description = $5, labels = $6, update_time = $7 \
             WHERE project = $1 AND location = $2 AND model_id = $3 AND version_id = $4",
        )
        .bind_model(&key)
        .bind(version.version_id)
        .bind(&version.version_description)
        .bind(to_json(&version.labels))
        .bind(Timestamp::now().unix_micros())
        .execute(&mut *conn)
        .await?;
        // load_version says whether the model or the version is missing.
        load_version(&mut conn, &key, version.version_id).await
    }

    async fn delete_model_version(&self, key: &ModelKey, version_id: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        lock_model(&mut tx, key).await?;
        if !version_exists(&mut tx, key, version_id).await? {
            return Err(StoreError::not_found("model version", key.version_name(version_id)));
        }
        if alias_holder(&mut tx, key, DEFAULT_ALIAS).await? == Some(version_id) {
            return Err(StoreError::Conflict(format!(
                "{} holds the {DEFAULT_ALIAS:?} alias; move the alias to another version first \
                 (mergeVersionAliases), or delete the whole model",
                key.version_name(version_id)
            )));
        }
        refuse_if_deployed(&mut tx, key, Some(version_id)).await?;
        sqlx::query(
            "DELETE FROM model_versions WHERE project = $1 AND location = $2 AND model_id = $3 AND version_id = $4",
        )
        .bind_model(key)
        .bind(version_id)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            on_foreign_key(e, || {
                StoreError::Conflict(format!("{} is deployed; undeploy it first", key.version_name(version_id)))
            })
        })?;
        tx.commit().await?;
        Ok(())
    }
}
