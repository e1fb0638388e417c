//! Browser sessions of the console.

use async_trait::async_trait;

use super::{ThisStore, on_unique};
use crate::store::sessions::SessionRow;
use crate::store::{Result, SessionRecord, SessionStore, StoreError, Timestamp};

#[async_trait]
impl SessionStore for ThisStore {
    async fn create_session(&self, session: &SessionRecord) -> Result<()> {
        sqlx::query("INSERT INTO sessions (id, user_id, data, expires_at) VALUES ($1, $4, $2, $3)")
            .bind(&session.id)
            .bind(&session.data)
            .bind(session.expires_at.unix_micros())
            .bind(session.user_id)
            .execute(&self.pool)
            .await
            .map_err(|e| on_unique(e, || StoreError::already_exists("session", "(id withheld)")))?;
        Ok(())
    }

    async fn save_session(&self, session: &SessionRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions (id, user_id, data, expires_at) VALUES ($1, $4, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, data = excluded.data, \
             expires_at = excluded.expires_at",
        )
        .bind(&session.id)
        .bind(&session.data)
        .bind(session.expires_at.unix_micros())
        .bind(session.user_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn load_session(&self, id: &str, now: Timestamp) -> Result<Option<SessionRecord>> {
        let row: Option<SessionRow> = sqlx::query_as(
            "SELECT id, user_id, data, expires_at FROM sessions WHERE id = $1 AND expires_at > $2",
        )
        .bind(id)
        .bind(now.unix_micros())
        .fetch_optional(&self.pool)
        .await?;
        row.map(SessionRow::decode).transpose()
    }

    async fn delete_session(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    async fn delete_user_sessions(&self, user_id: i64) -> Result<u64> {
        let done =
            sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user_id).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    async fn delete_expired_sessions(&self, now: Timestamp) -> Result<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now.unix_micros())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
