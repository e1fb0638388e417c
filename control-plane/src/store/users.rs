//! Users, their roles per project, and the API tokens issued to them.

use api::Role;
use async_trait::async_trait;

use super::codec::{name_of, opt_timestamp, timestamp};
use super::{Result, Timestamp};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct User {
    /// Assigned by the store.
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub created_at: Timestamp,
    /// A disabled user can neither log in nor use a token.
    pub disabled: bool,
}

/// A user's role in one project (at most one role per user and project; `*` is every project).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    pub user_id: i64,
    pub project: String,
    pub role: Role,
}

/// An issued API token. The token itself (a JWT) is not stored, only its `jti` and claims.
/// `created_at` and `expires_at` are the caller's (they mirror the JWT's `iat` and `exp`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApiToken {
    /// The JWT's `jti`.
    pub id: String,
    pub user_id: i64,
    /// Restricts the token to one project, if set.
    pub project: Option<String>,
    pub description: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    /// Set by the store when revoked.
    pub revoked_at: Option<Timestamp>,
}

/// Users, memberships and API tokens.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Creates a user; the id is assigned. AlreadyExists when the username is taken.
    async fn create_user(&self, username: &str, password_hash: &str) -> Result<User>;
    async fn get_user(&self, id: i64) -> Result<User>;
    async fn get_user_by_name(&self, username: &str) -> Result<User>;
    async fn count_users(&self) -> Result<i64>;
    /// Every user, by username.
    async fn list_users(&self) -> Result<Vec<User>>;
    async fn set_password_hash(&self, user_id: i64, password_hash: &str) -> Result<()>;
    async fn set_disabled(&self, user_id: i64, disabled: bool) -> Result<()>;

    /// Gives the user `role` in `project`, replacing any role they had there.
    async fn set_role(&self, user_id: i64, project: &str, role: Role) -> Result<Membership>;
    /// The user's role in `project`, if any.
    async fn get_role(&self, user_id: i64, project: &str) -> Result<Option<Role>>;
    /// All of the user's memberships, by project.
    async fn list_memberships(&self, user_id: i64) -> Result<Vec<Membership>>;
    async fn remove_membership(&self, user_id: i64, project: &str) -> Result<()>;

    /// Records an issued token (`revoked_at` is ignored). NotFound when the user does not exist.
    async fn insert_api_token(&self, token: &ApiToken) -> Result<ApiToken>;
    async fn get_api_token(&self, id: &str) -> Result<ApiToken>;
    /// The user's tokens, oldest first.
    async fn list_api_tokens(&self, user_id: i64) -> Result<Vec<ApiToken>>;
    /// Marks the token revoked (now, or keeps the first revocation time).
    async fn revoke_api_token(&self, id: &str) -> Result<ApiToken>;
    /// Revokes every token of the user that is not revoked yet; how many.
    async fn revoke_user_tokens(&self, user_id: i64) -> Result<u64>;
}

/// A `users` row as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: i64,
    username: String,
    password_hash: String,
    created_at: i64,
    disabled: bool,
}

impl UserRow {
    pub(crate) fn decode(self) -> Result<User> {
        let row = format!("user {}", self.username);
        Ok(User {
            id: self.id,
            created_at: timestamp(self.created_at, &row, "created_at")?,
            username: self.username,
            password_hash: self.password_hash,
            disabled: self.disabled,
        })
    }
}

/// A `memberships` row as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct MembershipRow {
    user_id: i64,
    project: String,
    role: String,
}

impl MembershipRow {
    pub(crate) fn decode(self) -> Result<Membership> {
        let row = format!("membership of user {} in project {}", self.user_id, self.project);
        Ok(Membership {
            role: name_of(&self.role, &row, "role", Role::parse)?,
            user_id: self.user_id,
            project: self.project,
        })
    }
}

/// An `api_tokens` row as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct ApiTokenRow {
    id: String,
    user_id: i64,
    project: Option<String>,
    description: String,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl ApiTokenRow {
    pub(crate) fn decode(self) -> Result<ApiToken> {
        let row = format!("API token {}", self.id);
        Ok(ApiToken {
            created_at: timestamp(self.created_at, &row, "created_at")?,
            expires_at: opt_timestamp(self.expires_at, &row, "expires_at")?,
            revoked_at: opt_timestamp(self.revoked_at, &row, "revoked_at")?,
            id: self.id,
            user_id: self.user_id,
            project: self.project,
            description: self.description,
        })
    }
}
