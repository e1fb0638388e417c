//! The index of uploaded artifacts.

use async_trait::async_trait;

use super::{ThisStore, found, on_unique};
use crate::store::artifacts::ArtifactRow;
use crate::store::rules::check_id;
use crate::store::{Artifact, ArtifactIndex, Result, StoreError, Timestamp};

#[async_trait]
impl ArtifactIndex for ThisStore {
    async fn insert_artifact(&self, artifact: &Artifact) -> Result<Artifact> {
        check_id(&artifact.id, "an artifact id")?;
        let row: ArtifactRow = sqlx::query_as(concat!(
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
        row.decode()
    }

    async fn get_artifact(&self, id: &str) -> Result<Artifact> {
        let row: Option<ArtifactRow> =
            sqlx::query_as(concat!("SELECT ", artifact_columns!(), " FROM artifacts WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        found(row, "artifact", || id.to_owned())?.decode()
    }

    async fn find_artifact_by_sha256(&self, sha256: &str) -> Result<Option<Artifact>> {
        let row: Option<ArtifactRow> = sqlx::query_as(concat!(
            "SELECT ",
            artifact_columns!(),
            " FROM artifacts WHERE sha256 = $1 ORDER BY create_time, id LIMIT 1"
        ))
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await?;
        row.map(ArtifactRow::decode).transpose()
    }
}
