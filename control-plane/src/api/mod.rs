//! The REST API: routes, shared state and the caller extractor.

pub mod error;
mod tokens;

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::auth::token::TokenKeys;
use crate::auth::{AuthError, Caller, Role};
use crate::store::Store;
pub use error::ApiError;
pub use tokens::issue as issue_token;

/// What every handler can reach.
pub struct App {
    pub store: Arc<dyn Store>,
    pub keys: TokenKeys,
    pub token_ttl: std::time::Duration,
}

pub type AppState = Arc<App>;

/// The platform's routes.
pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/auth/token", post(tokens::create_token))
        .route("/v1/auth/tokens", get(tokens::list_tokens))
        .route("/v1/auth/tokens/{id}", axum::routing::delete(tokens::revoke_token))
        .with_state(app)
}

async fn healthz() -> (StatusCode, Json<serde_json::Value>) {
    (StatusCode::OK, Json(serde_json::json!({"status": "ok"})))
}

impl App {
    /// The caller behind a bearer token: signature and expiry, not revoked, and their roles.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, ApiError> {
        let claims = self.keys.verify(token)?;
        let record = self.store.get_api_token(&claims.jti).await.map_err(|e| {
            if e.is_not_found() {
                ApiError::from(AuthError::InvalidToken("unknown token id".into()))
            } else {
                e.into()
            }
        })?;
        if record.revoked_at.is_some() {
            return Err(AuthError::Revoked.into());
        }
        let user = self.store.get_user(record.user_id).await?;
        let roles = self
            .store
            .list_memberships(user.id)
            .await?
            .into_iter()
            .filter_map(|m| Role::parse(&m.role).map(|r| (m.project, r)))
            .collect();
        Ok(Caller {
            user_id: user.id,
            username: user.username,
            token_id: record.id,
            token_project: record.project,
            roles,
        })
    }
}

/// Rejects with 401 before the handler runs when the request has no valid token.
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Caller, ApiError> {
        let header = parts.headers.get(header::AUTHORIZATION).ok_or(AuthError::MissingToken)?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .ok_or_else(|| AuthError::InvalidToken("use `Authorization: Bearer <token>`".into()))?;
        app.authenticate(token.trim()).await
    }
}
