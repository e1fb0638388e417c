//! Users, memberships and API tokens.

use api::Role;
use async_trait::async_trait;

use super::{ThisStore, changed, decode_all, found, on_foreign_key, on_unique};
use crate::store::rules::check_id;
use crate::store::users::{ApiTokenRow, MembershipRow, UserRow};
use crate::store::{ApiToken, Membership, Result, StoreError, Timestamp, User, UserStore};

#[async_trait]
impl UserStore for ThisStore {
    async fn create_user(&self, username: &str, password_hash: &str) -> Result<User> {
        check_id(username, "a username")?;
        let row: UserRow = sqlx::query_as(concat!(
            "INSERT INTO users (username, password_hash, created_at) VALUES ($1, $2, $3) RETURNING ",
            user_columns!()
        ))
        .bind(username)
        .bind(password_hash)
        .bind(Timestamp::now().unix_micros())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| on_unique(e, || StoreError::already_exists("user", username)))?;
        row.decode()
    }

    async fn get_user(&self, id: i64) -> Result<User> {
        let row: Option<UserRow> =
            sqlx::query_as(concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        found(row, "user", || id.to_string())?.decode()
    }

    async fn get_user_by_name(&self, username: &str) -> Result<User> {
        let row: Option<UserRow> =
            sqlx::query_as(concat!("SELECT ", user_columns!(), " FROM users WHERE username = $1"))
                .bind(username)
                .fetch_optional(&self.pool)
                .await?;
        found(row, "user", || username.to_owned())?.decode()
    }

    async fn count_users(&self) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users").fetch_one(&self.pool).await?;
        Ok(n)
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        let rows: Vec<UserRow> =
            sqlx::query_as(concat!("SELECT ", user_columns!(), " FROM users ORDER BY username"))
                .fetch_all(&self.pool)
                .await?;
        decode_all(rows, UserRow::decode)
    }

    async fn set_password_hash(&self, user_id: i64, password_hash: &str) -> Result<()> {
        let done = sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind(user_id)
            .bind(password_hash)
            .execute(&self.pool)
            .await?;
        changed(done.rows_affected(), "user", || user_id.to_string())
    }

    async fn set_disabled(&self, user_id: i64, disabled: bool) -> Result<()> {
        let done = sqlx::query("UPDATE users SET disabled = $2 WHERE id = $1")
            .bind(user_id)
            .bind(disabled)
            .execute(&self.pool)
            .await?;
        changed(done.rows_affected(), "user", || user_id.to_string())
    }

    async fn set_role(&self, user_id: i64, project: &str, role: Role) -> Result<Membership> {
        check_id(project, "a project")?;
        sqlx::query(
            "INSERT INTO memberships (user_id, project, role) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, project) DO UPDATE SET role = excluded.role",
        )
        .bind(user_id)
        .bind(project)
        .bind(role.as_str())
        .execute(&self.pool)
        .await
        .map_err(|e| on_foreign_key(e, || StoreError::not_found("user", user_id.to_string())))?;
        Ok(Membership { user_id, project: project.to_owned(), role })
    }

    async fn get_role(&self, user_id: i64, project: &str) -> Result<Option<Role>> {
        let row: Option<MembershipRow> = sqlx::query_as(
            "SELECT user_id, project, role FROM memberships WHERE user_id = $1 AND project = $2",
        )
        .bind(user_id)
        .bind(project)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(MembershipRow::decode).transpose()?.map(|m| m.role))
    }

    async fn list_memberships(&self, user_id: i64) -> Result<Vec<Membership>> {
        let rows: Vec<MembershipRow> = sqlx::query_as(
            "SELECT user_id, project, role FROM memberships WHERE user_id = $1 ORDER BY project",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        decode_all(rows, MembershipRow::decode)
    }

    async fn remove_membership(&self, user_id: i64, project: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM memberships WHERE user_id = $1 AND project = $2")
            .bind(user_id)
            .bind(project)
            .execute(&self.pool)
            .await?;
        changed(done.rows_affected(), "membership", || format!("user {user_id} in project {project}"))
    }

    async fn insert_api_token(&self, token: &ApiToken) -> Result<ApiToken> {
        check_id(&token.id, "a token id")?;
        let row: ApiTokenRow = sqlx::query_as(concat!(
            "INSERT INTO api_tokens (id, user_id, project, description, created_at, expires_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL) RETURNING ",
            token_columns!()
        ))
        .bind(&token.id)
        .bind(token.user_id)
        .bind(&token.project)
        .bind(&token.description)
        .bind(token.created_at.unix_micros())
        .bind(token.expires_at.map(|t| t.unix_micros()))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            if super::is_foreign_key_violation(&e) {
                StoreError::not_found("user", token.user_id.to_string())
            } else {
                on_unique(e, || StoreError::already_exists("API token", &token.id))
            }
        })?;
        row.decode()
    }

    async fn get_api_token(&self, id: &str) -> Result<ApiToken> {
        let row: Option<ApiTokenRow> =
            sqlx::query_as(concat!("SELECT ", token_columns!(), " FROM api_tokens WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        found(row, "API token", || id.to_owned())?.decode()
    }

    async fn list_api_tokens(&self, user_id: i64) -> Result<Vec<ApiToken>> {
        let rows: Vec<ApiTokenRow> = sqlx::query_as(concat!(
            "SELECT ",
            token_columns!(),
            " FROM api_tokens WHERE user_id = $1 ORDER BY created_at, id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        decode_all(rows, ApiTokenRow::decode)
    }

    async fn revoke_api_token(&self, id: &str) -> Result<ApiToken> {
        let row: Option<ApiTokenRow> = sqlx::query_as(concat!(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 RETURNING ",
            token_columns!()
        ))
        .bind(id)
        .bind(Timestamp::now().unix_micros())
        .fetch_optional(&self.pool)
        .await?;
        found(row, "API token", || id.to_owned())?.decode()
    }

    async fn revoke_user_tokens(&self, user_id: i64) -> Result<u64> {
        let done =
            sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL")
                .bind(user_id)
                .bind(Timestamp::now().unix_micros())
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }
}
