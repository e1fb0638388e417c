//! The REST API: routes, shared state and the caller extractor.

pub mod artifacts;
pub mod endpoints;
pub mod error;
pub mod list;
pub mod manifests;
pub mod models;
pub mod openapi;
pub mod operations;
pub mod predict;
pub mod request;
mod tokens;
pub mod users;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::auth::{Accounts, Caller};
use crate::endpoints::Endpoints;
use crate::gateway::Gateway;
use crate::operations::Operations;
use crate::registry::Registry;
use crate::telemetry::Metrics;
pub use error::ApiError;

/// The services the REST API calls: the same ones every door calls.
pub struct App {
    pub accounts: Arc<Accounts>,
    pub registry: Arc<Registry>,
    pub endpoints: Arc<Endpoints>,
    pub operations: Arc<Operations>,
    pub gateway: Arc<Gateway>,
    pub metrics: Metrics,
    /// Largest request body (Vertex: 1.5 MB); artifact uploads stream and have their own limit.
    pub max_request_bytes: usize,
}

pub type AppState = Arc<App>;

/// Whether a request came in on the private listener (which serves private endpoints).
#[derive(Debug, Clone, Copy)]
pub struct PrivateListener(pub bool);

/// The platform's routes. `private` marks the router of the private listener.
pub fn router(app: AppState, private: bool) -> Router {
    let location = "/v1/projects/{project}/locations/{location}";
    let max_body = app.max_request_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.yaml", get(openapi::yaml))
        .route("/openapi.json", get(openapi::json))
        .route("/v1/auth/token", post(tokens::create_token))
        .route("/v1/auth/tokens", get(tokens::list_tokens).post(tokens::create_caller_token))
        .route("/v1/auth/tokens/{id}", axum::routing::delete(tokens::revoke_token))
        .route("/v1/users", post(users::create).get(users::list))
        .route("/v1/users/{username}", get(users::get).patch(users::update))
        .route(&format!("{location}/models"), get(models::list))
        .route(&format!("{location}/models:upload"), post(models::upload))
        .route(
            &format!("{location}/models/{{model}}"),
            get(models::get).patch(models::patch).delete(models::delete).post(models::post_verb),
        )
        .route(&format!("{location}/artifacts"), post(artifacts::upload))
        .route(&format!("{location}/endpoints"), get(endpoints::list).post(endpoints::create))
        .route(
            &format!("{location}/endpoints/{{endpoint}}"),
            get(endpoints::get).patch(endpoints::patch).delete(endpoints::delete).post(endpoints::post_verb),
        )
        .route(&format!("{location}/endpoints/{{endpoint}}/manifests"), get(manifests::get_endpoint))
        .route(
            &format!("{location}/endpoints/{{endpoint}}/deployedModels/{{deployed_model}}/manifests"),
            get(manifests::get).put(manifests::put),
        )
        .route(
            &format!("{location}/endpoints/{{endpoint}}/deployedModels/{{deployed_model}}/revisions"),
            get(manifests::list_revisions),
        )
        .route(
            &format!(
                "{location}/endpoints/{{endpoint}}/deployedModels/{{deployed_model}}/revisions/{{revision}}"
            ),
            get(manifests::get_revision).post(manifests::rollback),
        )
        .route(&format!("{location}/operations"), get(operations::list))
        .route(
            &format!("{location}/operations/{{operation}}"),
            get(operations::get).post(operations::post_verb).delete(operations::delete),
        )
        .merge(openapi::swagger_ui())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state((max_body, app.metrics.clone()), read_whole_body))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::Extension(PrivateListener(private)))
        .with_state(app)
}

async fn healthz() -> (StatusCode, Json<serde_json::Value>) {
    (StatusCode::OK, Json(serde_json::json!({"status": "ok"})))
}

/// Reads every request body (up to the limit) before routing, except artifact uploads, which
/// stream. A handler that answers without reading the body (a bad path, a missing token) would
/// otherwise leave it unread, and the connection could not be reused: keep-alive clients would
/// see it closed under their next request.
/// Also counts every answer in `platform_api_requests_total`.
async fn read_whole_body(
    axum::extract::State((limit, metrics)): axum::extract::State<(usize, Metrics)>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let method = request.method().clone();
    let response = if request.uri().path().ends_with("/artifacts") {
        next.run(request).await
    } else {
        let (parts, body) = request.into_parts();
        match axum::body::to_bytes(body, limit).await {
            Ok(bytes) => {
                next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await
            }
            Err(e) if is_length_limit(&e) => request::too_large(limit).into_response(),
            Err(e) => ApiError::invalid(format!("cannot read the request body: {e}")).into_response(),
        }
    };
    metrics.api_request(method.as_str(), response.status().as_u16());
    response
}

async fn metrics(
    axum::extract::State(app): axum::extract::State<AppState>,
) -> impl axum::response::IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics.render())
}

async fn not_found(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "{method} {} is not a route of this API; see /docs for the routes",
        uri.path()
    ))
}

/// Whether reading a body failed because it was over the limit.
fn is_length_limit(e: &axum::Error) -> bool {
    std::error::Error::source(e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
}

/// The caller of a request whose handler reads the headers itself.
pub async fn caller_from_headers(app: &App, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let header = headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or_default());
    Ok(app.accounts.authenticate_header(header).await?)
}

/// Rejects with 401 before the handler runs when the request has no valid token.
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Caller, ApiError> {
        caller_from_headers(app, &parts.headers).await
    }
}
