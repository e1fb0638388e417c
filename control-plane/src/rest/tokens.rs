//! API tokens: `POST /v1/auth/token` (a username and password for a token), the caller's
//! tokens, and revocation.

use api::{ListTokensResponse, TokenRequest, TokenResponse};
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;

use super::request::{ClientAddress, Path};
use super::{ApiError, AppState};
use crate::auth::Caller;

/// Exchanges a username and password for an API token.
#[utoipa::path(post, path = "/v1/auth/token", tag = "auth", security(()),
    request_body = api::TokenRequest,
    responses((status = 200, body = api::TokenResponse), (status = 401, body = api::ErrorBody),
        (status = 429, description = "Too many failed logins; see Retry-After", body = api::ErrorBody)))]
pub async fn create_token(
    State(app): State<AppState>,
    ClientAddress(client): ClientAddress,
    body: Result<Json<TokenRequest>, JsonRejection>,
) -> Result<Json<TokenResponse>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    Ok(Json(app.accounts.login(&req, client).await?))
}

/// `POST /v1/auth/tokens`: a new token for the caller (shown once), within the limits of the
/// caller's own token.
#[utoipa::path(post, path = "/v1/auth/tokens", tag = "auth", request_body = api::CreateTokenRequest,
    responses((status = 200, body = api::TokenResponse), (status = 401, body = api::ErrorBody)))]
pub async fn create_caller_token(
    caller: Caller,
    State(app): State<AppState>,
    body: Result<Json<api::CreateTokenRequest>, JsonRejection>,
) -> Result<Json<TokenResponse>, ApiError> {
    let req = super::request::json(body)?;
    Ok(Json(app.accounts.create_token(&caller, &req).await?))
}

/// `GET /v1/auth/tokens`: the caller's tokens.
#[utoipa::path(get, path = "/v1/auth/tokens", tag = "auth",
    responses((status = 200, body = api::ListTokensResponse), (status = 401, body = api::ErrorBody)))]
pub async fn list_tokens(
    caller: Caller,
    State(app): State<AppState>,
) -> Result<Json<ListTokensResponse>, ApiError> {
    Ok(Json(app.accounts.list_tokens(&caller).await?))
}

/// `DELETE /v1/auth/tokens/{id}`: revokes one of the caller's tokens (admins: anyone's).
#[utoipa::path(delete, path = "/v1/auth/tokens/{id}", tag = "auth", params(("id" = String, Path)),
    responses((status = 200, description = "Revoked"), (status = 404, body = api::ErrorBody)))]
pub async fn revoke_token(
    caller: Caller,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    app.accounts.revoke_token(&caller, &id).await?;
    Ok(Json(serde_json::json!({})))
}
