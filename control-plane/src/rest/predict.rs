//! `:predict` and `:rawPredict`: the data plane's entry. The gateway decides who may call,
//! routes from its in-memory snapshot and counts the prediction: no database query on this path.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{ApiError, App};
use crate::gateway::{Credentials, PredictRequest};

/// Serves one prediction request on `endpoint`.
pub async fn serve(
    app: &App,
    endpoint: &api::EndpointName,
    raw: bool,
    private_listener: bool,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let header_text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let name = endpoint.to_string();
    let request = PredictRequest {
        endpoint: &name,
        raw,
        private_listener,
        credentials: Credentials::Header(
            headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or_default()),
        ),
        content_type: header_text(header::CONTENT_TYPE),
        body,
    };
    let forwarded = app.gateway.serve(&app.accounts, request).await?;
    let status = StatusCode::from_u16(forwarded.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = (status, forwarded.body).into_response();
    let h = response.headers_mut();
    if let Some(ct) = forwarded.content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::CONTENT_TYPE, ct);
    }
    if let Some(after) = forwarded.retry_after.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::RETRY_AFTER, after);
    }
    if let Ok(v) = HeaderValue::from_str(&endpoint.endpoint_id) {
        h.insert("x-vertex-ai-endpoint-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&forwarded.deployed_model_id) {
        h.insert("x-vertex-ai-deployed-model-id", v);
    }
    Ok(response)
}
