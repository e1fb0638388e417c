//! Revisions: immutable snapshots of the manifests of one deployed model.

use async_trait::async_trait;

use super::codec::{name_of, timestamp};
use super::{EndpointKey, Result, Timestamp};

/// Where a revision's manifests came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RevisionSource {
    /// What the platform rendered from the deployed model's spec.
    #[default]
    Rendered,
    /// A person's edit of the manifests.
    Edited,
    /// A copy of an older revision.
    Rollback,
}

impl RevisionSource {
    pub const ALL: [RevisionSource; 3] =
        [RevisionSource::Rendered, RevisionSource::Edited, RevisionSource::Rollback];

    pub fn as_str(self) -> &'static str {
        match self {
            RevisionSource::Rendered => "rendered",
            RevisionSource::Edited => "edited",
            RevisionSource::Rollback => "rollback",
        }
    }

    pub fn parse(text: &str) -> Option<RevisionSource> {
        RevisionSource::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Revision {
    pub project: String,
    pub location: String,
    pub endpoint_id: String,
    pub deployed_model_id: String,
    /// 1, 2, ... per deployed model; assigned by the store.
    pub revision: i64,
    /// Multi-document YAML.
    pub manifests: String,
    pub source: RevisionSource,
    pub create_time: Timestamp,
}

impl Revision {
    pub fn endpoint_key(&self) -> EndpointKey {
        EndpointKey::new(&self.project, &self.location, &self.endpoint_id)
    }

    /// The resource name.
    pub fn name(&self) -> String {
        revision_name(&self.endpoint_key(), &self.deployed_model_id, self.revision)
    }
}

pub(crate) fn revision_name(endpoint: &EndpointKey, deployed_model_id: &str, revision: i64) -> String {
    format!("{}/revisions/{revision}", endpoint.deployed_model_name(deployed_model_id))
}

/// Revisions of deployed models.
#[async_trait]
pub trait RevisionStore: Send + Sync {
    /// Stores a new revision with the next number for its deployed model.
    async fn insert_revision(&self, revision: &Revision) -> Result<Revision>;
    /// The revisions of a deployed model, oldest first.
    async fn list_revisions(&self, endpoint: &EndpointKey, deployed_model_id: &str) -> Result<Vec<Revision>>;
    async fn get_revision(
        &self,
        endpoint: &EndpointKey,
        deployed_model_id: &str,
        revision: i64,
    ) -> Result<Revision>;
    /// The newest revision, or None when there is none yet.
    async fn latest_revision(
        &self,
        endpoint: &EndpointKey,
        deployed_model_id: &str,
    ) -> Result<Option<Revision>>;
}

/// A `revisions` row as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct RevisionRow {
    project: String,
    location: String,
    endpoint_id: String,
    deployed_model_id: String,
    revision: i64,
    manifests: String,
    source: String,
    create_time: i64,
}

impl RevisionRow {
    pub(crate) fn decode(self) -> Result<Revision> {
        let key = EndpointKey::new(&self.project, &self.location, &self.endpoint_id);
        let row = revision_name(&key, &self.deployed_model_id, self.revision);
        Ok(Revision {
            source: name_of(&self.source, &row, "source", RevisionSource::parse)?,
            create_time: timestamp(self.create_time, &row, "create_time")?,
            project: self.project,
            location: self.location,
            endpoint_id: self.endpoint_id,
            deployed_model_id: self.deployed_model_id,
            revision: self.revision,
            manifests: self.manifests,
        })
    }
}
