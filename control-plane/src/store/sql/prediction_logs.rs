//! Sampled predictions.

use std::collections::HashSet;

use async_trait::async_trait;

use super::{BindKey, ThisStore, decode_all};
use crate::store::codec::to_json;
use crate::store::prediction_logs::PredictionLogRow;
use crate::store::{EndpointKey, PredictionLog, PredictionLogQuery, PredictionLogStore, Result};

#[async_trait]
impl PredictionLogStore for ThisStore {
    async fn insert_prediction_logs(&self, logs: &[PredictionLog], keep: u32) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let mut written: HashSet<&EndpointKey> = HashSet::new();
        for log in logs {
            // A log that outlived its endpoint (deleted meanwhile) is dropped, not an error.
            let inserted = sqlx::query(
                "INSERT INTO prediction_logs (project, location, endpoint_id, deployed_model_id, method, time, \
                 status, latency_micros, request, response) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 WHERE EXISTS (SELECT 1 FROM endpoints \
                 WHERE project = $1 AND location = $2 AND endpoint_id = $3)",
            )
            .bind_endpoint(&log.endpoint)
            .bind(&log.deployed_model_id)
            .bind(log.method.as_str())
            .bind(log.time.unix_micros())
            .bind(i64::from(log.status))
            .bind(i64::try_from(log.latency.as_micros()).unwrap_or(i64::MAX))
            .bind(to_json(&log.request))
            .bind(to_json(&log.response))
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() > 0 {
                written.insert(&log.endpoint);
            }
        }
        for endpoint in written {
            // Everything at or below the id of the newest row not kept.
            sqlx::query(
                "DELETE FROM prediction_logs WHERE project = $1 AND location = $2 AND endpoint_id = $3 \
                 AND id <= (SELECT id FROM prediction_logs \
                 WHERE project = $1 AND location = $2 AND endpoint_id = $3 ORDER BY id DESC LIMIT 1 OFFSET $4)",
            )
            .bind_endpoint(endpoint)
            .bind(i64::from(keep))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_prediction_logs(
        &self,
        endpoint: &EndpointKey,
        query: &PredictionLogQuery,
    ) -> Result<Vec<PredictionLog>> {
        let rows: Vec<PredictionLogRow> = sqlx::query_as(
            "SELECT id, project, location, endpoint_id, deployed_model_id, method, time, status, latency_micros, \
             request, response FROM prediction_logs \
             WHERE project = $1 AND location = $2 AND endpoint_id = $3 \
             AND ($4 IS NULL OR deployed_model_id = $4) AND ($5 IS NULL OR id < $5) \
             ORDER BY id DESC LIMIT $6",
        )
        .bind_endpoint(endpoint)
        .bind(query.deployed_model_id.as_deref())
        .bind(query.before)
        .bind(i64::from(query.limit))
        .fetch_all(&self.pool)
        .await?;
        decode_all(rows, PredictionLogRow::decode)
    }
}
