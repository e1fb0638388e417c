//! The index of uploaded artifacts: where each is stored and its digest (the bytes themselves
//! live in the artifact store of the registry).

use async_trait::async_trait;

use super::codec::timestamp;
use super::{Result, Timestamp};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Artifact {
    pub id: String,
    pub sha256: String,
    pub size_bytes: i64,
    pub uri: String,
    pub create_time: Timestamp,
}

/// Uploaded artifacts by id and by content.
#[async_trait]
pub trait ArtifactIndex: Send + Sync {
    async fn insert_artifact(&self, artifact: &Artifact) -> Result<Artifact>;
    async fn get_artifact(&self, id: &str) -> Result<Artifact>;
    /// An artifact with this content, if one is stored.
    async fn find_artifact_by_sha256(&self, sha256: &str) -> Result<Option<Artifact>>;
}

/// An `artifacts` row as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct ArtifactRow {
    id: String,
    sha256: String,
    size_bytes: i64,
    uri: String,
    create_time: i64,
}

impl ArtifactRow {
    pub(crate) fn decode(self) -> Result<Artifact> {
        let row = format!("artifact {}", self.id);
        Ok(Artifact {
            create_time: timestamp(self.create_time, &row, "create_time")?,
            id: self.id,
            sha256: self.sha256,
            size_bytes: self.size_bytes,
            uri: self.uri,
        })
    }
}
