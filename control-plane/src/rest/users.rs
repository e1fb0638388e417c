//! Users and their roles per project: `POST /v1/users`, `GET` and `PATCH /v1/users/{username}`.
//! Only admins of every project (`*`) manage users; anyone may read themselves.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;

use super::request::{self, Path};
use super::{ApiError, AppState};
use crate::auth::{Caller, Role, password};
use crate::store;

const MIN_PASSWORD: usize = 8;

fn check_username(name: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "username `{name}` is invalid: use 1 to 64 letters, digits, `.`, `-`, `_` and `@`"
        )))
    }
}

fn check_roles(roles: &BTreeMap<String, String>, allow_empty: bool) -> Result<(), ApiError> {
    for (project, role) in roles {
        if project != "*" {
            api::check_project(project).map_err(|e| ApiError::invalid(e.to_string()))?;
        }
        if !(allow_empty && role.is_empty()) && Role::parse(role).is_none() {
            return Err(ApiError::invalid(format!(
                "role `{role}` (project `{project}`) is not a role: use viewer, editor, admin or predictor"
            )));
        }
    }
    Ok(())
}

async fn hash(pw: &str) -> Result<String, ApiError> {
    if pw.chars().count() < MIN_PASSWORD {
        return Err(ApiError::invalid(format!("the password needs at least {MIN_PASSWORD} characters")));
    }
    let plain = pw.to_string();
    tokio::task::spawn_blocking(move || password::hash(&plain))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(ApiError::internal)
}

async fn view(app: &super::App, user: &store::User) -> Result<api::User, ApiError> {
    let roles = app.store.list_memberships(user.id).await?.into_iter().map(|m| (m.project, m.role)).collect();
    Ok(api::User { username: user.username.clone(), roles, create_time: user.created_at.to_string() })
}

fn require_user_admin(caller: &Caller) -> Result<(), ApiError> {
    caller.require(Role::Admin, "*").map_err(|_| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "only admins of every project (`*`) manage users",
        )
    })
}

#[utoipa::path(post, path = "/v1/users", tag = "auth", request_body = api::CreateUserRequest,
    responses((status = 200, body = api::User)))]
pub async fn create(
    caller: Caller,
    State(app): State<AppState>,
    body: Result<Json<api::CreateUserRequest>, JsonRejection>,
) -> Result<Json<api::User>, ApiError> {
    require_user_admin(&caller)?;
    let req = request::json(body)?;
    check_username(&req.username)?;
    check_roles(&req.roles, false)?;
    let user = app.store.create_user(&req.username, &hash(&req.password).await?).await?;
    for (project, role) in &req.roles {
        app.store.set_role(user.id, project, role).await?;
    }
    tracing::info!(user = %user.username, by = %caller.username, "user created");
    Ok(Json(view(&app, &user).await?))
}

#[utoipa::path(get, path = "/v1/users/{username}", tag = "auth", params(("username" = String, Path)),
    responses((status = 200, body = api::User)))]
pub async fn get(
    caller: Caller,
    State(app): State<AppState>,
    Path(username): Path<String>,
) -> Result<Json<api::User>, ApiError> {
    if username != caller.username {
        require_user_admin(&caller)?;
    }
    let user = app.store.get_user_by_name(&username).await?;
    Ok(Json(view(&app, &user).await?))
}

#[utoipa::path(patch, path = "/v1/users/{username}", tag = "auth", params(("username" = String, Path)),
    request_body = api::UpdateUserRequest, responses((status = 200, body = api::User)))]
pub async fn update(
    caller: Caller,
    State(app): State<AppState>,
    Path(username): Path<String>,
    body: Result<Json<api::UpdateUserRequest>, JsonRejection>,
) -> Result<Json<api::User>, ApiError> {
    require_user_admin(&caller)?;
    let req = request::json(body)?;
    check_roles(&req.roles, true)?;
    let user = app.store.get_user_by_name(&username).await?;
    if let Some(pw) = &req.password {
        app.store.set_password_hash(user.id, &hash(pw).await?).await?;
    }
    for (project, role) in &req.roles {
        if role.is_empty() {
            app.store.remove_membership(user.id, project).await?;
        } else {
            app.store.set_role(user.id, project, role).await?;
        }
    }
    app.forget_user(user.id);
    Ok(Json(view(&app, &user).await?))
}
