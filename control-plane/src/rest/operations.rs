//! Long-running operations: get, list, `:wait`, `:cancel`, delete.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde_json::{Value, json};

use super::list::{self, ListQuery};
use super::request::{self, Path, Query};
use super::{ApiError, AppState};
use crate::auth::Caller;

/// `GET .../operations/{operation}`.
#[utoipa::path(get, path = "/v1/projects/{project}/locations/{location}/operations/{operation}", tag = "operations",
    params(("project" = String, Path), ("location" = String, Path), ("operation" = String, Path)),
    responses((status = 200, body = api::Operation), (status = 404, body = api::ErrorBody)))]
pub async fn get(
    caller: Caller,
    State(app): State<AppState>,
    Path((project, location, id)): Path<(String, String, String)>,
) -> Result<Json<api::Operation>, ApiError> {
    let loc = request::location(&project, &location)?;
    Ok(Json(app.operations.get(&caller, &loc, &id).await?))
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
    let loc = request::location(&project, &location)?;
    let all = app.operations.list(&caller, &loc, &query.filter).await?;
    let (operations, next_page_token) = list::page_in_order(all, &query)?;
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
    let loc = request::location(&project, &location)?;
    let (id, verb) = request::split_verb(&segment);
    match verb {
        Some("wait") => {
            let req: api::WaitOperationRequest = if body.iter().all(u8::is_ascii_whitespace) {
                api::WaitOperationRequest::default()
            } else {
                serde_json::from_slice(&body)
                    .map_err(|e| ApiError::invalid(format!("the request body is not valid: {e}")))?
            };
            Ok(Json(json!(app.operations.wait(&caller, &loc, id, req.timeout).await?)))
        }
        Some("cancel") => {
            app.operations.cancel(&caller, &loc, id).await?;
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
    let loc = request::location(&project, &location)?;
    app.operations.delete(&caller, &loc, &id).await?;
    Ok(Json(json!({})))
}
