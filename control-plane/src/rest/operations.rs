//! Long-running operations: get, list, `:wait`, `:cancel`, delete.

use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde_json::{Value, json};

use super::list::ListQuery;
use super::request::{self, Path, Query};
use super::{ApiError, AppState};
use crate::auth::{Caller, Role};
use crate::operations::to_api;

/// The longest `:wait` (Vertex caps it too).
const MAX_WAIT: Duration = Duration::from_secs(600);
const DEFAULT_WAIT: Duration = Duration::from_secs(60);

/// `GET .../operations/{operation}`.
#[utoipa::path(get, path = "/v1/projects/{project}/locations/{location}/operations/{operation}", tag = "operations",
    params(("project" = String, Path), ("location" = String, Path), ("operation" = String, Path)),
    responses((status = 200, body = api::Operation), (status = 404, body = api::ErrorBody)))]
pub async fn get(
    caller: Caller,
    State(app): State<AppState>,
    Path((project, location, id)): Path<(String, String, String)>,
) -> Result<Json<api::Operation>, ApiError> {
    request::location(&project, &location)?;
    caller.require(Role::Viewer, &project)?;
    check_id(&id)?;
    Ok(Json(to_api(&app.store.get_operation(&project, &location, &id).await?)))
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 32 || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(ApiError::invalid(format!("operation id `{id}` is invalid: operation ids are digits")));
    }
    Ok(())
}

/// `GET .../operations`: newest first.
#[utoipa::path(get, path = "/v1/projects/{project}/locations/{location}/operations", tag = "operations",
    params(("project" = String, Path), ("location" = String, Path), ListQuery),
    responses((status = 200, body = api::ListOperationsResponse), (status = 400, body = api::ErrorBody)))]
pub async fn list(
    caller: Caller,
    State(app): State<AppState>,
    Path((project, location)): Path<(String, String)>,
    Query(query): Query<ListQuery>,
) -> Result<Json<api::ListOperationsResponse>, ApiError> {
    request::location(&project, &location)?;
    caller.require(Role::Viewer, &project)?;
    let done = match query.filter.trim() {
        "" => None,
        "done=true" | "done = true" => Some(true),
        "done=false" | "done = false" => Some(false),
        other => {
            return Err(ApiError::invalid(format!(
                "operations filter `{other}` is not supported: use done=true or done=false"
            )));
        }
    };
    let mut ops: Vec<_> = app.store.list_operations(&project, &location).await?;
    ops.retain(|o| done.is_none_or(|d| o.done == d));
    ops.reverse();
    let size = match query.page_size {
        Some(n) if n < 0 => return Err(ApiError::invalid(format!("pageSize {n} is negative"))),
        Some(n) if n > 0 => (n as usize).min(super::list::MAX_PAGE_SIZE),
        _ => super::list::DEFAULT_PAGE_SIZE,
    };
    let offset = if query.page_token.is_empty() {
        0
    } else {
        query.page_token.parse::<usize>().map_err(|_| ApiError::invalid("pageToken is not valid"))?
    };
    let total = ops.len();
    let operations: Vec<api::Operation> = ops.iter().skip(offset).take(size).map(to_api).collect();
    let next = offset + operations.len();
    let next_page_token = if next < total { next.to_string() } else { String::new() };
    Ok(Json(api::ListOperationsResponse { operations, next_page_token }))
}

/// `POST .../operations/{operation}:wait` and `:cancel`.
#[utoipa::path(post, path = "/v1/projects/{project}/locations/{location}/operations/{operation}", tag = "operations",
    params(("project" = String, Path), ("location" = String, Path),
        ("operation" = String, Path, description = "`{id}:wait` or `{id}:cancel`")),
    request_body = api::WaitOperationRequest,
    responses((status = 200, body = api::Operation), (status = 404, body = api::ErrorBody)))]
pub async fn post_verb(
    caller: Caller,
    State(app): State<AppState>,
    Path((project, location, segment)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    request::location(&project, &location)?;
    let (id, verb) = request::split_verb(&segment);
    check_id(id)?;
    match verb {
        Some("wait") => {
            caller.require(Role::Viewer, &project)?;
            let req: api::WaitOperationRequest = if body.iter().all(u8::is_ascii_whitespace) {
                api::WaitOperationRequest::default()
            } else {
                serde_json::from_slice(&body)
                    .map_err(|e| ApiError::invalid(format!("the request body is not valid: {e}")))?
            };
            let timeout = match req.timeout {
                None => DEFAULT_WAIT,
                Some(t) => crate::controller::parse_timeout(&t).map_err(ApiError::invalid)?.min(MAX_WAIT),
            };
            let deadline = Instant::now() + timeout;
            loop {
                let op = app.store.get_operation(&project, &location, id).await?;
                if op.done || Instant::now() >= deadline {
                    return Ok(Json(json!(to_api(&op))));
                }
                tokio::time::sleep(Duration::from_millis(200).min(deadline - Instant::now())).await;
            }
        }
        Some("cancel") => {
            caller.require(Role::Editor, &project)?;
            app.store.request_cancel_operation(&project, &location, id).await?;
            app.controller.wake();
            Ok(Json(json!({})))
        }
        Some(other) => Err(request::unknown_verb(id, other, "POST", &["wait", "cancel"])),
        None => Err(ApiError::not_found("POST on an operation needs :wait or :cancel")),
    }
}

/// `DELETE .../operations/{operation}`: forgets a finished operation.
#[utoipa::path(delete, path = "/v1/projects/{project}/locations/{location}/operations/{operation}", tag = "operations",
    params(("project" = String, Path), ("location" = String, Path), ("operation" = String, Path)),
    responses((status = 200, description = "Deleted"), (status = 404, body = api::ErrorBody)))]
pub async fn delete(
    caller: Caller,
    State(app): State<AppState>,
    Path((project, location, id)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    request::location(&project, &location)?;
    caller.require(Role::Editor, &project)?;
    check_id(&id)?;
    app.store.delete_operation(&project, &location, &id).await?;
    Ok(Json(json!({})))
}
