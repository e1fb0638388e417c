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
