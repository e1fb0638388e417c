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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::auth::token::TokenKeys;
use crate::auth::{AuthError, Caller, Role};
use crate::backend::Backend;
use crate::controller::Wake;
use crate::gateway::Gateway;
use crate::machine::Catalog;
use crate::manifests::RenderConfig;
use crate::registry::ArtifactStore;
use crate::store::Store;
use crate::telemetry::Metrics;
pub use error::ApiError;
pub use tokens::issue as issue_token;

/// Settings of the API that come from flags.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Base URL that clients reach the platform at, for `predictUri`.
    pub public_url: String,
    /// Largest artifact upload.
    pub max_artifact_bytes: u64,
    /// Largest `:predict` / `:rawPredict` body (Vertex: 1.5 MB).
    pub max_request_bytes: usize,
}

/// What every handler can reach.
pub struct App {
    pub store: Arc<dyn Store>,
    pub keys: TokenKeys,
    pub token_ttl: Duration,
    pub settings: Settings,
    pub catalog: Catalog,
    pub render: RenderConfig,
    pub artifacts: ArtifactStore,
    pub gateway: Arc<Gateway>,
    pub controller: Wake,
    pub metrics: Metrics,
    pub backend: Arc<dyn Backend>,
    /// Authenticated callers by token id, so that `:predict` does not query the database.
    auth_cache: Mutex<HashMap<String, (Caller, Instant)>>,
}

/// How long a token's roles are remembered (a role change takes effect within this time; a
/// revocation through this process at once).
const AUTH_CACHE_TTL: Duration = Duration::from_secs(10);

pub type AppState = Arc<App>;

/// Whether a request came in on the private listener (which serves private endpoints).
#[derive(Debug, Clone, Copy)]
pub struct PrivateListener(pub bool);

/// The platform's routes. `private` marks the router of the private listener.
pub fn router(app: AppState, private: bool) -> Router {
    let location = "/v1/projects/{project}/locations/{location}";
    let max_body = app.settings.max_request_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.yaml", get(openapi::yaml))
        .route("/openapi.json", get(openapi::json))
        .route("/docs", get(openapi::page))
        .route("/v1/auth/token", post(tokens::create_token))
        .route("/v1/auth/tokens", get(tokens::list_tokens))
        .route("/v1/auth/tokens/{id}", axum::routing::delete(tokens::revoke_token))
        .route("/v1/users", post(users::create))
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
            Err(e) if e.to_string().contains("length limit") => request::too_large(limit).into_response(),
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

/// The caller of a request whose handler reads the headers itself.
pub async fn caller_from_headers(app: &App, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let header = headers.get(header::AUTHORIZATION).ok_or(AuthError::MissingToken)?;
    let token = header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .ok_or_else(|| AuthError::InvalidToken("use `Authorization: Bearer <token>`".into()))?;
    app.authenticate(token.trim()).await
}

impl App {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        keys: TokenKeys,
        token_ttl: Duration,
        settings: Settings,
        catalog: Catalog,
        render: RenderConfig,
        artifacts: ArtifactStore,
        gateway: Arc<Gateway>,
        controller: Wake,
        metrics: Metrics,
        backend: Arc<dyn Backend>,
    ) -> App {
        App {
            store,
            keys,
            token_ttl,
            settings,
            catalog,
            render,
            artifacts,
            gateway,
            controller,
            metrics,
            backend,
            auth_cache: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets a token's cached caller (after revocation).
    pub fn forget_token(&self, token_id: &str) {
        if let Ok(mut cache) = self.auth_cache.lock() {
            cache.remove(token_id);
        }
    }

    /// Forgets the cached callers of a user (after their roles changed).
    pub fn forget_user(&self, user_id: i64) {
        if let Ok(mut cache) = self.auth_cache.lock() {
            cache.retain(|_, (caller, _)| caller.user_id != user_id);
        }
    }

    /// The caller behind a bearer token: signature and expiry, not revoked, and their roles.
    /// Remembered for a few seconds per token id.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, ApiError> {
        let claims = self.keys.verify(token)?;
        if let Ok(cache) = self.auth_cache.lock()
            && let Some((caller, at)) = cache.get(&claims.jti)
            && at.elapsed() < AUTH_CACHE_TTL
        {
            return Ok(caller.clone());
        }
        let caller = self.authenticate_uncached(&claims.jti).await?;
        if let Ok(mut cache) = self.auth_cache.lock() {
            if cache.len() > 10_000 {
                cache.retain(|_, (_, at)| at.elapsed() < AUTH_CACHE_TTL);
            }
            cache.insert(claims.jti.clone(), (caller.clone(), Instant::now()));
        }
        Ok(caller)
    }

    async fn authenticate_uncached(&self, jti: &str) -> Result<Caller, ApiError> {
        let claims_jti = jti;
        let record = self.store.get_api_token(claims_jti).await.map_err(|e| {
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
        caller_from_headers(app, &parts.headers).await
    }
}
