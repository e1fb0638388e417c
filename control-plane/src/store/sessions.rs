//! Browser sessions of the console: opaque records (the session layer's own JSON) with an
//! expiry, kept in the platform's database so that they survive a restart and are shared by
//! every API process.

use async_trait::async_trait;

use super::codec::timestamp;
use super::{Result, Timestamp};

/// A stored session.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SessionRecord {
    /// The session id (the cookie's value).
    pub id: String,
    /// The signed-in user, if any.
    pub user_id: Option<i64>,
    /// The session's data, as the session layer serialised it (JSON).
    pub data: String,
    /// After this the session is gone: never loaded again, deleted by the next sweep.
    pub expires_at: Timestamp,
}

/// Browser sessions by id.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session. AlreadyExists when the id is taken (the caller picks another).
    async fn create_session(&self, session: &SessionRecord) -> Result<()>;
    /// Stores a session, replacing the one with its id.
    async fn save_session(&self, session: &SessionRecord) -> Result<()>;
    /// The session, unless it is missing or expired at `now`.
    async fn load_session(&self, id: &str, now: Timestamp) -> Result<Option<SessionRecord>>;
    /// Forgets a session; a missing one is not an error.
    async fn delete_session(&self, id: &str) -> Result<()>;
    /// Ends every session of a user (a new password, a disabled user); how many.
    async fn delete_user_sessions(&self, user_id: i64) -> Result<u64>;
    /// Deletes the sessions expired at `now`; how many.
    async fn delete_expired_sessions(&self, now: Timestamp) -> Result<u64>;
}

/// A `sessions` row as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct SessionRow {
    id: String,
    user_id: Option<i64>,
    data: String,
    expires_at: i64,
}

impl SessionRow {
    pub(crate) fn decode(self) -> Result<SessionRecord> {
        let row = format!("session {}", self.id);
        Ok(SessionRecord {
            expires_at: timestamp(self.expires_at, &row, "expires_at")?,
            id: self.id,
            user_id: self.user_id,
            data: self.data,
        })
    }
}
