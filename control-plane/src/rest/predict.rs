//! The data plane's entry: `:predict`, `:rawPredict` and the Open Inference Protocol V2 under
//! an endpoint (`{endpoint}/v2/...`). The gateway decides who may call, routes from its
//! in-memory snapshot and counts the prediction: no database query on this path.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::request::{self, Path};
use super::{ApiError, App, AppState, PrivateListener};
use crate::gateway::{Call, Credentials, PredictRequest, V2Call, v2};

/// Serves one request to `endpoint`'s data plane.
pub async fn serve(
    app: &App,
    endpoint: &api::EndpointName,
    call: Call<'_>,
    private_listener: bool,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let header_text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let name = endpoint.to_string();
    let request = PredictRequest {
        endpoint: &name,
        call,
        private_listener,
        credentials: Credentials::Header(
            headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or_default()),
        ),
        content_type: header_text(header::CONTENT_TYPE),
        inference_header_length: header_text(header::HeaderName::from_static(v2::HEADER_LENGTH)),
        body,
    };
    let forwarded = app.gateway.serve(&app.accounts, request).await?;
    let status = StatusCode::from_u16(forwarded.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = (status, forwarded.body).into_response();
    let h = response.headers_mut();
    let passed = [
        (header::CONTENT_TYPE, forwarded.content_type),
        (header::RETRY_AFTER, forwarded.retry_after),
        (header::HeaderName::from_static(v2::HEADER_LENGTH), forwarded.inference_header_length),
    ];
    for (name, value) in passed {
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            h.insert(name, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&endpoint.endpoint_id) {
        h.insert("x-vertex-ai-endpoint-id", v);
    }
    if !forwarded.deployed_model_id.is_empty()
        && let Ok(v) = HeaderValue::from_str(&forwarded.deployed_model_id)
    {
        h.insert("x-vertex-ai-deployed-model-id", v);
    }
    Ok(response)
}

/// Which V2 route a request came by (each route carries its own, as an extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V2Route {
    Server,
    Live,
    Ready,
    Model,
    ModelReady,
    Infer,
}

/// The parameters of a V2 path: the endpoint's, and the model's on `v2/models/{model}/...`.
#[derive(Debug, serde::Deserialize)]
pub struct V2Path {
    project: String,
    location: String,
    endpoint: String,
    model: Option<String>,
}

/// `{endpoint}/v2/...`: `{model}` is a deployed model's id, or the endpoint's id for the
/// traffic split.
pub async fn v2(
    State(app): State<AppState>,
    Path(path): Path<V2Path>,
    axum::Extension(private): axum::Extension<PrivateListener>,
    axum::Extension(route): axum::Extension<V2Route>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let model = path.model.as_deref().unwrap_or_default();
    let call = match route {
        V2Route::Server => V2Call::Server,
        V2Route::Live => V2Call::Live,
        V2Route::Ready => V2Call::Ready,
        V2Route::Model => V2Call::Model(model),
        V2Route::ModelReady => V2Call::ModelReady(model),
        V2Route::Infer => V2Call::Infer(model),
    };
    let name = request::endpoint(&path.project, &path.location, &path.endpoint)?;
    serve(&app, &name, Call::V2(call), private.0, &headers, body).await
}
