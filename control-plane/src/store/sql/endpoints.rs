//! Endpoints, deployed models and traffic splits.

use async_trait::async_trait;

use super::models::version_exists;
use super::{BindKey, DbConn, ThisStore, changed, decode_all, etag_mismatch, found, on_unique};
use crate::store::codec::{from_json, to_json};
use crate::store::endpoints::{DeployedModelRow, EndpointRow, access_name, timeout_nanos};
use crate::store::rules::{check_id, check_split, new_etag, split_percent, split_without};
use crate::store::{
    DeployedModel, DeploymentSpec, DesiredState, Endpoint, EndpointKey, EndpointStore, ModelKey, Result,
    StoreError, Timestamp, TrafficSplit,
};

async fn load_endpoint(conn: &mut DbConn, key: &EndpointKey) -> Result<Endpoint> {
    let row: Option<EndpointRow> = sqlx::query_as(concat!(
        "SELECT ",
        endpoint_columns!(),
        " FROM endpoints WHERE project = $1 AND location = $2 AND endpoint_id = $3"
    ))
    .bind_endpoint(key)
    .fetch_optional(&mut *conn)
    .await?;
    found(row, "endpoint", || key.name())?.decode()
}

/// Takes the endpoint's row lock by giving it a new etag (every change of an endpoint, its
/// split or its deployed models changes the etag), checking `expected_etag` if given.
/// Returns the traffic split as it was.
async fn lock_endpoint(
    conn: &mut DbConn,
    key: &EndpointKey,
    expected_etag: Option<&str>,
    now: Timestamp,
) -> Result<TrafficSplit> {
    let row: Option<(String,)> = sqlx::query_as(
        "UPDATE endpoints SET etag = $4, update_time = $5 \
         WHERE project = $1 AND location = $2 AND endpoint_id = $3 AND ($6 IS NULL OR etag = $6) \
         RETURNING traffic_split",
    )
    .bind_endpoint(key)
    .bind(new_etag())
    .bind(now.unix_micros())
    .bind(expected_etag)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some((split,)) => from_json(&split, &key.name(), "traffic_split"),
        None => {
            let current = current_endpoint_etag(conn, key).await?;
            Err(etag_mismatch(key.name(), expected_etag, current, "endpoint"))
        }
    }
}

async fn current_endpoint_etag(conn: &mut DbConn, key: &EndpointKey) -> Result<Option<String>> {
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT etag FROM endpoints WHERE project = $1 AND location = $2 AND endpoint_id = $3",
    )
    .bind_endpoint(key)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|(etag,)| etag))
}

async fn store_split(conn: &mut DbConn, key: &EndpointKey, split: &TrafficSplit) -> Result<()> {
    sqlx::query(
        "UPDATE endpoints SET traffic_split = $4 WHERE project = $1 AND location = $2 AND endpoint_id = $3",
    )
    .bind_endpoint(key)
    .bind(to_json(split))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The deployed models of the endpoint that may receive traffic (all but those undeploying).
async fn routable_deployed_models(conn: &mut DbConn, key: &EndpointKey) -> Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT deployed_model_id FROM deployed_models \
         WHERE project = $1 AND location = $2 AND endpoint_id = $3 AND desired_state <> 'undeploying' \
         ORDER BY deployed_model_id",
    )
    .bind_endpoint(key)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

async fn load_deployed_model(conn: &mut DbConn, key: &EndpointKey, id: &str) -> Result<DeployedModel> {
    let row: Option<DeployedModelRow> = sqlx::query_as(concat!(
        "SELECT ",
        deployed_model_columns!(),
        " FROM deployed_models \
          WHERE project = $1 AND location = $2 AND endpoint_id = $3 AND deployed_model_id = $4"
    ))
    .bind_endpoint(key)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    found(row, "deployed model", || key.deployed_model_name(id))?.decode()
}

/// NotFound unless the deployed model exists.
pub(super) async fn deployed_model_exists(conn: &mut DbConn, key: &EndpointKey, id: &str) -> Result<()> {
    let row = sqlx::query(
        "SELECT 1 FROM deployed_models \
         WHERE project = $1 AND location = $2 AND endpoint_id = $3 AND deployed_model_id = $4",
    )
    .bind_endpoint(key)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    found(row, "deployed model", || key.deployed_model_name(id)).map(|_| ())
}

impl ThisStore {
    /// Sets one column of a deployed model (`query` binds the key as $1..$4, the value as $5 and
    /// the time as $6) and returns the row.
    async fn update_deployed_model_column(
        &self,
        key: &EndpointKey,
        id: &str,
        query: &'static str,
        value: String,
    ) -> Result<DeployedModel> {
        let row: Option<DeployedModelRow> = sqlx::query_as(query)
            .bind_endpoint(key)
            .bind(id)
            .bind(value)
            .bind(Timestamp::now().unix_micros())
            .fetch_optional(&self.pool)
            .await?;
        found(row, "deployed model", || key.deployed_model_name(id))?.decode()
    }
}

#[async_trait]
impl EndpointStore for ThisStore {
    async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<Endpoint> {
        let key = endpoint.key();
        check_id(&key.project, "a project")?;
        check_id(&key.location, "a location")?;
        check_id(&key.endpoint_id, "an endpoint id")?;
        check_split(&endpoint.traffic_split, &[], &key)?;
        let now = Timestamp::now();
        let row: EndpointRow = sqlx::query_as(concat!(
            "INSERT INTO endpoints (project, location, endpoint_id, display_name, description, labels, access, \
             traffic_split, etag, create_time, update_time, prediction_logging, inference_timeout_nanos) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12) RETURNING ",
            endpoint_columns!()
        ))
        .bind_endpoint(&key)
        .bind(&endpoint.display_name)
        .bind(&endpoint.description)
        .bind(to_json(&endpoint.labels))
        .bind(access_name(endpoint.access))
        .bind(to_json(&endpoint.traffic_split))
        .bind(new_etag())
        .bind(now.unix_micros())
        .bind(to_json(&endpoint.prediction_logging))
        .bind(timeout_nanos(endpoint.inference_timeout))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| on_unique(e, || StoreError::already_exists("endpoint", key.name())))?;
        row.decode()
    }

    async fn get_endpoint(&self, key: &EndpointKey) -> Result<Endpoint> {
        let mut conn = self.pool.acquire().await?;
        load_endpoint(&mut conn, key).await
    }

    async fn list_endpoints(&self, project: &str, location: &str) -> Result<Vec<Endpoint>> {
        let rows: Vec<EndpointRow> = sqlx::query_as(concat!(
            "SELECT ",
            endpoint_columns!(),
            " FROM endpoints WHERE project = $1 AND location = $2 ORDER BY create_time, endpoint_id"
        ))
        .bind(project)
        .bind(location)
        .fetch_all(&self.pool)
        .await?;
        decode_all(rows, EndpointRow::decode)
    }

    async fn list_all_endpoints(&self) -> Result<Vec<Endpoint>> {
        let rows: Vec<EndpointRow> = sqlx::query_as(concat!(
            "SELECT ",
            endpoint_columns!(),
            " FROM endpoints ORDER BY create_time, project, location, endpoint_id"
        ))
        .fetch_all(&self.pool)
        .await?;
        decode_all(rows, EndpointRow::decode)
    }

    async fn update_endpoint(&self, endpoint: &Endpoint, expected_etag: Option<&str>) -> Result<Endpoint> {
        let key = endpoint.key();
        let mut conn = self.pool.acquire().await?;
        let row: Option<EndpointRow> = sqlx::query_as(concat!(
            "UPDATE endpoints SET display_name = $4, description = $5, labels = $6, access = $7, etag = $8, \
             update_time = $9, prediction_logging = $11, inference_timeout_nanos = $12 \
             WHERE project = $1 AND location = $2 AND endpoint_id = $3 AND ($10 IS NULL OR etag = $10) \
             RETURNING ",
            endpoint_columns!()
        ))
        .bind_endpoint(&key)
        .bind(&endpoint.display_name)
        .bind(&endpoint.description)
        .bind(to_json(&endpoint.labels))
        .bind(access_name(endpoint.access))
        .bind(new_etag())
        .bind(Timestamp::now().unix_micros())
        .bind(expected_etag)
        .bind(to_json(&endpoint.prediction_logging))
        .bind(timeout_nanos(endpoint.inference_timeout))
        .fetch_optional(&mut *conn)
        .await?;
        match row {
            Some(row) => row.decode(),
            None => {
                let current = current_endpoint_etag(&mut conn, &key).await?;
                Err(etag_mismatch(key.name(), expected_etag, current, "endpoint"))
            }
        }
    }

    async fn set_traffic_split(
        &self,
        key: &EndpointKey,
        split: &TrafficSplit,
        expected_etag: Option<&str>,
    ) -> Result<Endpoint> {
        let mut tx = self.begin_write().await?;
        lock_endpoint(&mut tx, key, expected_etag, Timestamp::now()).await?;
        let routable = routable_deployed_models(&mut tx, key).await?;
        check_split(split, &routable, key)?;
        store_split(&mut tx, key, split).await?;
        let stored = load_endpoint(&mut tx, key).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn delete_endpoint(&self, key: &EndpointKey) -> Result<()> {
        let mut tx = self.begin_write().await?;
        lock_endpoint(&mut tx, key, None, Timestamp::now()).await?;
        let (deployed,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM deployed_models WHERE project = $1 AND location = $2 AND endpoint_id = $3",
        )
        .bind_endpoint(key)
        .fetch_one(&mut *tx)
        .await?;
        if deployed > 0 {
            return Err(StoreError::Conflict(format!(
                "{} has {deployed} deployed model(s); undeploy them first",
                key.name()
            )));
        }
        sqlx::query("DELETE FROM endpoints WHERE project = $1 AND location = $2 AND endpoint_id = $3")
            .bind_endpoint(key)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn deploy(
        &self,
        endpoint: &EndpointKey,
        deployed_model: &DeployedModel,
        new_split: Option<&TrafficSplit>,
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
                model.version_name(deployed_model.version_id),
            ));
        }
        let row: DeployedModelRow = sqlx::query_as(concat!(
            "INSERT INTO deployed_models (project, location, endpoint_id, deployed_model_id, model_id, version_id, \
             display_name, spec, desired_state, status, revision_counter, create_time, update_time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'deploying', $9, 0, $10, $10) RETURNING ",
            deployed_model_columns!()
        ))
        .bind_endpoint(endpoint)
        .bind(id)
        .bind(&deployed_model.model_id)
        .bind(deployed_model.version_id)
        .bind(&deployed_model.display_name)
        .bind(to_json(&deployed_model.spec))
        .bind(to_json(&deployed_model.status))
        .bind(now.unix_micros())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| on_unique(e, || StoreError::already_exists("deployed model", endpoint.deployed_model_name(id))))?;
        let stored = row.decode()?;
        if let Some(split) = new_split {
            let routable = routable_deployed_models(&mut tx, endpoint).await?;
            check_split(split, &routable, endpoint)?;
            store_split(&mut tx, endpoint, split).await?;
        }
        let endpoint = load_endpoint(&mut tx, endpoint).await?;
        tx.commit().await?;
        Ok((endpoint, stored))
    }

    async fn undeploy(
        &self,
        endpoint: &EndpointKey,
        deployed_model_id: &str,
        new_split: Option<&TrafficSplit>,
    ) -> Result<(Endpoint, DeployedModel)> {
        let id = deployed_model_id;
        let now = Timestamp::now();
        let mut tx = self.begin_write().await?;
        let current = lock_endpoint(&mut tx, endpoint, None, now).await?;
        let deployed = load_deployed_model(&mut tx, endpoint, id).await?;
        if deployed.desired_state == DesiredState::Undeploying {
            return Err(StoreError::Conflict(format!(
                "{} is being undeployed already",
                endpoint.deployed_model_name(id)
            )));
        }
        let remaining: Vec<String> =
            routable_deployed_models(&mut tx, endpoint).await?.into_iter().filter(|d| d != id).collect();
        let split = if remaining.is_empty() {
            // Undeploying the last model always leaves the split empty.
            TrafficSplit::new()
        } else {
            let split = new_split.unwrap_or(&current);
            let percent = split_percent(split, id);
            if percent > 0 {
                return Err(StoreError::Conflict(format!(
                    "{} would still receive {percent}% of the traffic; give a traffic split that moves \
                     its traffic to other deployed models",
                    endpoint.deployed_model_name(id)
                )));
            }
            let split = split_without(split, id);
            check_split(&split, &remaining, endpoint)?;
            split
        };
        store_split(&mut tx, endpoint, &split).await?;
        let row: DeployedModelRow = sqlx::query_as(concat!(
            "UPDATE deployed_models SET desired_state = 'undeploying', update_time = $5 \
             WHERE project = $1 AND location = $2 AND endpoint_id = $3 AND deployed_model_id = $4 RETURNING ",
            deployed_model_columns!()
        ))
        .bind_endpoint(endpoint)
        .bind(id)
        .bind(now.unix_micros())
        .fetch_one(&mut *tx)
        .await?;
        let deployed = row.decode()?;
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
        let rows: Vec<DeployedModelRow> = sqlx::query_as(concat!(
            "SELECT ",
            deployed_model_columns!(),
            " FROM deployed_models WHERE project = $1 AND location = $2 AND endpoint_id = $3 \
              ORDER BY create_time, deployed_model_id"
        ))
        .bind_endpoint(endpoint)
        .fetch_all(&mut *conn)
        .await?;
        decode_all(rows, DeployedModelRow::decode)
    }

    async fn list_all_deployed_models(&self) -> Result<Vec<DeployedModel>> {
        let rows: Vec<DeployedModelRow> = sqlx::query_as(concat!(
            "SELECT ",
            deployed_model_columns!(),
            " FROM deployed_models ORDER BY project, location, endpoint_id, create_time, deployed_model_id"
        ))
        .fetch_all(&self.pool)
        .await?;
        decode_all(rows, DeployedModelRow::decode)
    }

    async fn set_deployed_model_state(
        &self,
        endpoint: &EndpointKey,
        deployed_model_id: &str,
        desired_state: DesiredState,
    ) -> Result<DeployedModel> {
        if desired_state == DesiredState::Undeploying {
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
            desired_state.as_str().to_owned(),
        )
        .await
    }

    async fn set_deployed_model_status(
        &self,
        endpoint: &EndpointKey,
        deployed_model_id: &str,
        status: &api::DeployedModelStatus,
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
            to_json(status),
        )
        .await
    }

    async fn set_deployed_model_autoscaling(
        &self,
        endpoint: &EndpointKey,
        deployed_model_id: &str,
        autoscaling: &api::AutoscalingStatus,
    ) -> Result<DeployedModel> {
        self.update_deployed_model_column(
            endpoint,
            deployed_model_id,
            concat!(
                "UPDATE deployed_models SET autoscaling = $5, update_time = $6 \
                 WHERE project = $1 AND location = $2 AND endpoint_id = $3 AND deployed_model_id = $4 \
                 RETURNING ",
                deployed_model_columns!()
            ),
            to_json(autoscaling),
        )
        .await
    }

    async fn update_deployed_model_spec(
        &self,
        endpoint: &EndpointKey,
        deployed_model_id: &str,
        spec: &DeploymentSpec,
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
            to_json(spec),
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
                endpoint.deployed_model_name(id)
            )));
        }
        if current.contains_key(id) {
            store_split(&mut tx, endpoint, &split_without(&current, id)).await?;
        }
        let done = sqlx::query(
            "DELETE FROM deployed_models \
             WHERE project = $1 AND location = $2 AND endpoint_id = $3 AND deployed_model_id = $4",
        )
        .bind_endpoint(endpoint)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        changed(done.rows_affected(), "deployed model", || endpoint.deployed_model_name(id))?;
        tx.commit().await?;
        Ok(())
    }
}
