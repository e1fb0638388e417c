//! Gateways' counters.

use std::collections::HashMap;

use async_trait::async_trait;

use super::ThisStore;
use crate::store::traffic::TrafficRow;
use crate::store::{Result, Timestamp, Traffic, TrafficStore};

#[async_trait]
impl TrafficStore for ThisStore {
    async fn record_traffic(
        &self,
        gateway: &str,
        counts: &[(String, Traffic)],
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM gateway_traffic WHERE gateway_id = $1")
            .bind(gateway)
            .execute(&mut *tx)
            .await?;
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for (deployed_model_id, t) in counts {
            sqlx::query(
                "INSERT INTO gateway_traffic (gateway_id, deployed_model_id, requests, in_flight, waiting, \
                 update_time) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(gateway)
            .bind(deployed_model_id)
            .bind(count(t.requests))
            .bind(count(t.in_flight))
            .bind(count(t.waiting))
            .bind(now.unix_micros())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn traffic_since(&self, since: Timestamp) -> Result<HashMap<String, Traffic>> {
        sqlx::query("DELETE FROM gateway_traffic WHERE update_time < $1")
            .bind(since.unix_micros())
            .execute(&self.pool)
            .await?;
        let rows: Vec<TrafficRow> = sqlx::query_as(
            "SELECT deployed_model_id, CAST(SUM(requests) AS BIGINT) AS requests, \
             CAST(SUM(in_flight) AS BIGINT) AS in_flight, CAST(SUM(waiting) AS BIGINT) AS waiting \
             FROM gateway_traffic GROUP BY deployed_model_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| (r.deployed_model_id.clone(), r.decode())).collect())
    }
}
