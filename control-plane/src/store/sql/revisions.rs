//! Revisions of deployed models.

use async_trait::async_trait;

use super::endpoints::deployed_model_exists;
use super::{BindKey, ThisStore, decode_all, found};
use crate::store::revisions::{RevisionRow, revision_name};
use crate::store::{EndpointKey, Result, Revision, RevisionStore, Timestamp};

#[async_trait]
impl RevisionStore for ThisStore {
    async fn insert_revision(&self, revision: &Revision) -> Result<Revision> {
        let endpoint = revision.endpoint_key();
        let id = &revision.deployed_model_id;
        let mut tx = self.begin_write().await?;
        // Allocating the number takes the deployed model's row lock.
        let row: Option<(i64,)> = sqlx::query_as(
            "UPDATE deployed_models SET revision_counter = revision_counter + 1 \
             WHERE project = $1 AND location = $2 AND endpoint_id = $3 AND deployed_model_id = $4 \
             RETURNING revision_counter",
        )
        .bind_endpoint(&endpoint)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let (number,) = found(row, "deployed model", || endpoint.deployed_model_name(id))?;
        let row: RevisionRow = sqlx::query_as(concat!(
            "INSERT INTO revisions (project, location, endpoint_id, deployed_model_id, revision, manifests, source, \
             create_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ",
            revision_columns!()
        ))
        .bind_endpoint(&endpoint)
        .bind(id)
        .bind(number)
        .bind(&revision.manifests)
        .bind(revision.source.as_str())
        .bind(Timestamp::now().unix_micros())
        .fetch_one(&mut *tx)
        .await?;
        let stored = row.decode()?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn list_revisions(&self, endpoint: &EndpointKey, deployed_model_id: &str) -> Result<Vec<Revision>> {
        let mut conn = self.pool.acquire().await?;
        deployed_model_exists(&mut conn, endpoint, deployed_model_id).await?;
        let rows: Vec<RevisionRow> = sqlx::query_as(concat!(
            "SELECT ",
            revision_columns!(),
            " FROM revisions \
              WHERE project = $1 AND location = $2 AND endpoint_id = $3 AND deployed_model_id = $4 \
              ORDER BY revision"
        ))
        .bind_endpoint(endpoint)
        .bind(deployed_model_id)
        .fetch_all(&mut *conn)
        .await?;
        decode_all(rows, RevisionRow::decode)
    }

    async fn get_revision(
        &self,
        endpoint: &EndpointKey,
        deployed_model_id: &str,
        revision: i64,
    ) -> Result<Revision> {
        let mut conn = self.pool.acquire().await?;
        deployed_model_exists(&mut conn, endpoint, deployed_model_id).await?;
        let row: Option<RevisionRow> = sqlx::query_as(concat!(
            "SELECT ",
            revision_columns!(),
            " FROM revisions \
              WHERE project = $1 AND location = $2 AND endpoint_id = $3 AND deployed_model_id = $4 \
              AND revision = $5"
        ))
        .bind_endpoint(endpoint)
        .bind(deployed_model_id)
        .bind(revision)
        .fetch_optional(&mut *conn)
        .await?;
        found(row, "revision", || revision_name(endpoint, deployed_model_id, revision))?.decode()
    }

    async fn latest_revision(
        &self,
        endpoint: &EndpointKey,
        deployed_model_id: &str,
    ) -> Result<Option<Revision>> {
        let mut conn = self.pool.acquire().await?;
        deployed_model_exists(&mut conn, endpoint, deployed_model_id).await?;
        let row: Option<RevisionRow> = sqlx::query_as(concat!(
            "SELECT ",
            revision_columns!(),
            " FROM revisions \
              WHERE project = $1 AND location = $2 AND endpoint_id = $3 AND deployed_model_id = $4 \
              ORDER BY revision DESC LIMIT 1"
        ))
        .bind_endpoint(endpoint)
        .bind(deployed_model_id)
        .fetch_optional(&mut *conn)
        .await?;
        row.map(RevisionRow::decode).transpose()
    }
}
