//! Long-running operations: get, list, `:wait`, `:cancel`, delete; at
//! `projects/{p}/locations/{l}/operations/{id}` and nested under the model or endpoint they
//! act on (`.../endpoints/{e}/operations/{id}`), as Vertex's clients address them.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::list::{self, ListQuery};
use super::request::{self, Path, Query};
use super::{ApiError, AppState};
use crate::auth::Caller;
use crate::operations::proto_view;

/// Which JSON an operation is answered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// With this platform's extensions (`progressPercent`, `progressMessage`, ...).
    Full,
    /// Only the fields of `google.longrunning.Operation` and of the `@type`s inside it: the
    /// Python SDK's operations client (the `/ui/` paths) refuses any other field.
    Proto,
}

impl View {
    fn of(view: Option<axum::Extension<View>>) -> View {
        view.map_or(View::Full, |v| v.0)
    }

    fn show(self, op: api::Operation) -> api::Operation {
        match self {
            View::Full => op,
            View::Proto => proto_view(op),
        }
    }
}

/// An operation's path: its project and location, the model or endpoint it is nested under
/// (if any), and its id (absent when listing).
#[derive(Debug, Deserialize)]
pub struct OperationPath {
    project: String,
    location: String,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    operation: String,
}

impl OperationPath {
    fn location(&self) -> Result<api::LocationName, ApiError> {
        request::location(&self.project, &self.location)
    }

    /// The resource name of the model or endpoint the path is nested under.
    fn parent(&self, loc: &api::LocationName) -> Option<String> {
        match (&self.model, &self.endpoint) {
            (Some(m), _) => Some(format!("{loc}/models/{m}")),
            (_, Some(e)) => Some(format!("{loc}/endpoints/{e}")),
            _ => None,
        }
    }
}

/// `GET .../operations/{operation}`.
#[utoipa::path(get, path = "/v1/projects/{project}/locations/{location}/operations/{operation}", tag = "operations",
    params(("project" = String, Path), ("location" = String, Path), ("operation" = String, Path)),
    responses((status = 200, body = api::Operation), (status = 404, body = api::ErrorBody)))]
pub async fn get(
    caller: Caller,
    State(app): State<AppState>,
    Path(path): Path<OperationPath>,
    view: Option<axum::Extension<View>>,
) -> Result<Json<api::Operation>, ApiError> {
    let loc = path.location()?;
    let parent = path.parent(&loc);
    let op = app.operations.get(&caller, &loc, parent.as_deref(), &path.operation).await?;
    Ok(Json(View::of(view).show(op)))
}

/// `GET .../operations`: newest first.
#[utoipa::path(get, path = "/v1/projects/{project}/locations/{location}/operations", tag = "operations",
    params(("project" = String, Path), ("location" = String, Path), ListQuery),
    responses((status = 200, body = api::ListOperationsResponse), (status = 400, body = api::ErrorBody)))]
pub async fn list(
    caller: Caller,
    State(app): State<AppState>,
    Path(path): Path<OperationPath>,
    Query(query): Query<ListQuery>,
    view: Option<axum::Extension<View>>,
) -> Result<Json<api::ListOperationsResponse>, ApiError> {
    let loc = path.location()?;
    let parent = path.parent(&loc);
    let all = app.operations.list(&caller, &loc, parent.as_deref(), &query.filter).await?;
    let (operations, next_page_token) = list::page_in_order(all, &query)?;
    let view = View::of(view);
    let operations = operations.into_iter().map(|op| view.show(op)).collect();
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
    Path(path): Path<OperationPath>,
    view: Option<axum::Extension<View>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let loc = path.location()?;
    let parent = path.parent(&loc);
    let (id, verb) = request::split_verb(&path.operation);
    match verb {
        Some("wait") => {
            let req: api::WaitOperationRequest = if body.iter().all(u8::is_ascii_whitespace) {
                api::WaitOperationRequest::default()
            } else {
                serde_json::from_slice(&body)
                    .map_err(|e| ApiError::invalid(format!("the request body is not valid: {e}")))?
            };
            let op = app.operations.wait(&caller, &loc, parent.as_deref(), id, req.timeout).await?;
            Ok(Json(json!(View::of(view).show(op))))
        }
        Some("cancel") => {
            app.operations.cancel(&caller, &loc, parent.as_deref(), id).await?;
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
    Path(path): Path<OperationPath>,
) -> Result<Json<Value>, ApiError> {
    let loc = path.location()?;
    let parent = path.parent(&loc);
    app.operations.delete(&caller, &loc, parent.as_deref(), &path.operation).await?;
    Ok(Json(json!({})))
}
