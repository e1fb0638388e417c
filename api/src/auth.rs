//! API tokens: `POST /v1/auth/token`, `GET /v1/auth/tokens`, `DELETE /v1/auth/tokens/{id}`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A username and password for an API token.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenRequest {
    pub username: String,
    pub password: String,
    /// Limit the token to one project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// What the token is for, shown when tokens are listed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// `POST /v1/auth/tokens`: a new token for the caller (who is already signed in), for example
/// for a script or CI. It holds the caller's roles, within the limits of the caller's token.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// Limit the token to one project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// What the token is for, shown when tokens are listed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// A new token. The token itself is shown only here.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenResponse {
    pub token: String,
    pub token_id: String,
    pub expire_time: String,
}

/// A token as listed: never the token itself, only its id and claims.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    pub token_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default)]
    pub description: String,
    pub create_time: String,
    #[serde(default)]
    pub expire_time: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub revoke_time: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListTokensResponse {
    pub tokens: Vec<TokenInfo>,
}

/// `POST /v1/users` (admins): a new user with roles per project (`*`: every project).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUserRequest {
    pub username: String,
    /// At least 8 characters.
    pub password: String,
    /// Project -> `viewer`, `editor`, `admin` or `predictor`.
    #[serde(default)]
    pub roles: std::collections::BTreeMap<String, String>,
}

/// `PATCH /v1/users/{username}` (admins): a new password, roles, or disabling. In `roles`, an
/// empty role removes the user from that project.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateUserRequest {
    /// A new password; it ends the user's tokens and sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Disables (or enables again) the user: a disabled user cannot log in, and disabling ends
    /// their tokens and sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    #[serde(default)]
    pub roles: std::collections::BTreeMap<String, String>,
}

/// A user as the API shows it (never the password).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub username: String,
    pub roles: std::collections::BTreeMap<String, String>,
    pub create_time: String,
    #[serde(default, skip_serializing_if = "crate::is_false")]
    pub disabled: bool,
}

/// `GET /v1/users` (admins): every user with their roles.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListUsersResponse {
    pub users: Vec<User>,
}

/// What a member may do on a project. Each role includes the ones before it, except that
/// `Predictor` only calls endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Calls `:predict` and `:rawPredict` on the project's endpoints, nothing else.
    Predictor,
    /// Reads every resource of the project, and predicts.
    Viewer,
    /// Creates, changes and deletes the project's resources.
    Editor,
    /// Everything, including `file://` artifacts and member management.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Predictor, Role::Viewer, Role::Editor, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Predictor => "predictor",
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether this role grants `needed`.
    pub fn grants(self, needed: Role) -> bool {
        self >= needed
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
