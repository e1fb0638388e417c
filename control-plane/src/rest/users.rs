//! Users and their roles per project: `POST` and `GET /v1/users`, `GET` and `PATCH
//! /v1/users/{username}`.
//! Only admins of every project (`*`) manage users; anyone may read themselves.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;

use super::request::{self, Path};
use super::{ApiError, AppState};
use crate::auth::Caller;

#[utoipa::path(post, path = "/v1/users", tag = "auth", request_body = api::CreateUserRequest,
    responses((status = 200, body = api::User)))]
pub async fn create(
    caller: Caller,
    State(app): State<AppState>,
    body: Result<Json<api::CreateUserRequest>, JsonRejection>,
) -> Result<Json<api::User>, ApiError> {
    let req = request::json(body)?;
    Ok(Json(app.accounts.create_user(&caller, &req).await?))
}

/// `GET /v1/users`: every user with their roles (admins of every project).
#[utoipa::path(get, path = "/v1/users", tag = "auth", responses((status = 200, body = api::ListUsersResponse)))]
pub async fn list(
    caller: Caller,
    State(app): State<AppState>,
) -> Result<Json<api::ListUsersResponse>, ApiError> {
    Ok(Json(api::ListUsersResponse { users: app.accounts.list_users(&caller).await? }))
}

#[utoipa::path(get, path = "/v1/users/{username}", tag = "auth", params(("username" = String, Path)),
    responses((status = 200, body = api::User)))]
pub async fn get(
    caller: Caller,
    State(app): State<AppState>,
    Path(username): Path<String>,
) -> Result<Json<api::User>, ApiError> {
    Ok(Json(app.accounts.get_user(&caller, &username).await?))
}

#[utoipa::path(patch, path = "/v1/users/{username}", tag = "auth", params(("username" = String, Path)),
    request_body = api::UpdateUserRequest, responses((status = 200, body = api::User)))]
pub async fn update(
    caller: Caller,
    State(app): State<AppState>,
    Path(username): Path<String>,
    body: Result<Json<api::UpdateUserRequest>, JsonRejection>,
) -> Result<Json<api::User>, ApiError> {
    let req = request::json(body)?;
    Ok(Json(app.accounts.update_user(&caller, &username, &req).await?))
}
