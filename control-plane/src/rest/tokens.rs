//! `POST /v1/auth/token`: a username and password for an API token.

use std::time::Duration;

use api::{ListTokensResponse, TokenInfo, TokenRequest, TokenResponse};
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;

use super::request::Path;
use super::{ApiError, AppState};
use crate::auth::{AuthError, Caller, password};
use crate::store::records::{ApiToken, Timestamp};

/// Exchanges a username and password for an API token.
#[utoipa::path(post, path = "/v1/auth/token", tag = "auth", security(()),
    request_body = api::TokenRequest,
    responses((status = 200, body = api::TokenResponse), (status = 401, body = api::ErrorBody)))]
pub async fn create_token(
    State(app): State<AppState>,
    body: Result<Json<TokenRequest>, JsonRejection>,
) -> Result<Json<TokenResponse>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    if let Some(project) = &req.project {
        api::check_project(project).map_err(|e| ApiError::invalid(e.to_string()))?;
    }
    let user = match app.store.get_user_by_name(&req.username).await {
        Ok(user) => user,
        Err(e) if e.is_not_found() => return Err(AuthError::BadCredentials.into()),
        Err(e) => return Err(e.into()),
    };
    // argon2 is deliberately slow: keep it off the async workers.
    let (given, stored) = (req.password.clone(), user.password_hash.clone());
    let ok = tokio::task::spawn_blocking(move || password::verify(&given, &stored))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if !ok {
        return Err(AuthError::BadCredentials.into());
    }
    let issued =
        issue(&app, user.id, &user.username, req.project.as_deref(), &req.description, app.token_ttl).await?;
    Ok(Json(issued))
}

/// Issues and records a token for a user.
pub async fn issue(
    app: &super::App,
    user_id: i64,
    username: &str,
    project: Option<&str>,
    description: &str,
    ttl: Duration,
) -> Result<TokenResponse, ApiError> {
    let id = crate::auth::token::new_token_id();
    let (token, claims) = app.keys.issue(user_id, username, &id, ttl, project)?;
    let created = Timestamp::now();
    let expires =
        Timestamp::from_unix_micros(i64::try_from(claims.exp).unwrap_or(i64::MAX / 1_000_000) * 1_000_000);
    let record = ApiToken {
        id: id.clone(),
        user_id,
        project: project.map(str::to_string),
        description: description.to_string(),
        created_at: created,
        expires_at: expires,
        revoked_at: None,
    };
    app.store.insert_api_token(&record).await?;
    Ok(TokenResponse { token, token_id: id, expire_time: expires.map(|t| t.to_string()).unwrap_or_default() })
}

/// `GET /v1/auth/tokens`: the caller's tokens.
#[utoipa::path(get, path = "/v1/auth/tokens", tag = "auth",
    responses((status = 200, body = api::ListTokensResponse), (status = 401, body = api::ErrorBody)))]
pub async fn list_tokens(
    caller: Caller,
    State(app): State<AppState>,
) -> Result<Json<ListTokensResponse>, ApiError> {
    let tokens = app
        .store
        .list_api_tokens(caller.user_id)
        .await?
        .into_iter()
        .map(|t| TokenInfo {
            token_id: t.id,
            project: t.project,
            description: t.description,
            create_time: t.created_at.to_string(),
            expire_time: t.expires_at.map(|e| e.to_string()).unwrap_or_default(),
            revoke_time: t.revoked_at.map(|r| r.to_string()).unwrap_or_default(),
        })
        .collect();
    Ok(Json(ListTokensResponse { tokens }))
}

/// `DELETE /v1/auth/tokens/{id}`: revokes one of the caller's tokens (admins: anyone's).
#[utoipa::path(delete, path = "/v1/auth/tokens/{id}", tag = "auth", params(("id" = String, Path)),
    responses((status = 200, description = "Revoked"), (status = 404, body = api::ErrorBody)))]
pub async fn revoke_token(
    caller: Caller,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let token = app.store.get_api_token(&id).await?;
    if token.user_id != caller.user_id && !caller.is_admin_of("*") {
        return Err(ApiError::not_found(format!("token {id} not found")));
    }
    app.store.revoke_api_token(&id).await?;
    app.forget_token(&id);
    Ok(Json(serde_json::json!({})))
}
