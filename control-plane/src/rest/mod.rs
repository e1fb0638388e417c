//! The REST API: routes, shared state and the caller extractor.

pub mod artifacts;
pub mod body;
pub mod endpoints;
pub mod error;
pub mod list;
pub mod logs;
pub mod manifests;
pub mod models;
pub mod openapi;
pub mod operations;
pub mod predict;
pub mod prediction_logs;
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
    /// Bounds of request bodies (artifact uploads stream and have their own size limit).
    pub body_limits: body::BodyLimits,
}

pub type AppState = Arc<App>;

/// Whether a request came in on the private listener (which serves private endpoints).
#[derive(Debug, Clone, Copy)]
pub struct PrivateListener(pub bool);

/// The platform's routes. `private` marks the router of the private listener.
///
/// Vertex AI's own tools reach the same handlers through more than one path: gcloud polls the
/// operations of `deploy-model` under `/v1beta1/`, and the Python SDK's REST transport polls
/// every operation under `/ui/` (and knows operations nested under models and endpoints). So
/// the project-scoped resources are served under `/v1/` and `/v1beta1/`, and the operations also
/// under `/ui/` and nested under each model and endpoint.
pub fn router(app: AppState, private: bool) -> Router {
    let max_body = app.body_limits.max_bytes;
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
        .merge(resources("/v1"))
        .merge(resources("/v1beta1"))
        .merge(operation_routes("/ui").layer(axum::Extension(operations::View::Proto)))
        .merge(openapi::swagger_ui())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state((app.body_limits, app.metrics.clone()), body::read_whole))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::Extension(PrivateListener(private)))
        .with_state(app)
}

/// Models, endpoints, artifacts, manifests and operations of `{version}/projects/{p}/locations/{l}`.
fn resources(version: &str) -> Router<AppState> {
    let location = format!("{version}/projects/{{project}}/locations/{{location}}");
    Router::new()
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
        .merge(v2_routes(&format!("{location}/endpoints/{{endpoint}}")))
        .route(&format!("{location}/endpoints/{{endpoint}}/logs"), get(logs::read))
        .route(&format!("{location}/endpoints/{{endpoint}}/predictionLogs"), get(prediction_logs::list))
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
        .merge(operation_routes(version))
}

/// The Open Inference Protocol V2 under an endpoint: a V2 client given `{host}/v1/{endpoint}`
/// as its URL reaches the endpoint's deployed models through the gateway.
fn v2_routes(endpoint: &str) -> Router<AppState> {
    use predict::V2Route;
    let routes = [
        ("v2", V2Route::Server),
        ("v2/health/live", V2Route::Live),
        ("v2/health/ready", V2Route::Ready),
        ("v2/models/{model}", V2Route::Model),
        ("v2/models/{model}/ready", V2Route::ModelReady),
        ("v2/models/{model}/infer", V2Route::Infer),
    ];
    routes.into_iter().fold(Router::new(), |router, (path, route)| {
        let method = if route == V2Route::Infer { post(predict::v2) } else { get(predict::v2) };
        router.route(&format!("{endpoint}/{path}"), method.layer(axum::Extension(route)))
    })
}

/// Operations under `{prefix}/projects/{p}/locations/{l}`, and nested under a model or an
/// endpoint (`.../endpoints/{e}/operations/{id}`), the forms Vertex's clients build.
fn operation_routes(prefix: &str) -> Router<AppState> {
    let location = format!("{prefix}/projects/{{project}}/locations/{{location}}");
    let mut router = Router::new();
    for parent in [
        location.clone(),
        format!("{location}/models/{{model}}"),
        format!("{location}/endpoints/{{endpoint}}"),
    ] {
        router = router.route(&format!("{parent}/operations"), get(operations::list)).route(
            &format!("{parent}/operations/{{operation}}"),
            get(operations::get).post(operations::post_verb).delete(operations::delete),
        );
    }
    router
}

async fn healthz() -> (StatusCode, Json<serde_json::Value>) {
    (StatusCode::OK, Json(serde_json::json!({"status": "ok"})))
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
