//! Route handlers. Parsing and formatting live in `protocol`; handlers move bytes, wait for
//! the batcher and record metrics.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{AppState, Protocol, ServeError};
use crate::protocol::{v2, vertex};

fn body_bytes(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ServeError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ServeError::TooLarge(limit)
        } else {
            ServeError::Body(rejection.body_text())
        }
    })
}

fn json_response(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

fn finish(
    state: &AppState,
    protocol: Protocol,
    start: Instant,
    result: Result<Response, ServeError>,
) -> Response {
    let response = result.unwrap_or_else(|e| e.into_response(protocol));
    let label = match protocol {
        Protocol::Vertex => "vertex",
        Protocol::V2 => "v2",
    };
    state.metrics.observe_request(label, response.status().as_u16(), start.elapsed());
    response
}

pub async fn vertex_predict(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let start = Instant::now();
    let result = vertex_predict_inner(&state, body).await;
    finish(&state, Protocol::Vertex, start, result)
}

async fn vertex_predict_inner(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ServeError> {
    let serving = state.serving()?;
    let body = body_bytes(body, state.config.max_body_bytes)?;
    let request = vertex::parse_request(&body, state.config.max_instances)?;
    let model = &serving.model;
    let mut runs = Vec::new();
    for run in vertex::inputs(model, &request.instances)? {
        let outputs = serving.batcher.infer(run.inputs).await?;
        runs.push(vertex::RunOutputs { outputs, rows: run.rows });
    }
    let body = serde_json::to_vec(&vertex::Predictions { model, runs: &runs })
        .map_err(|e| ServeError::Internal(e.to_string()))?;
    Ok(json_response(body))
}

pub async fn health(State(state): State<Arc<AppState>>) -> Response {
    match state.serving.get() {
        Some(_) => (StatusCode::OK, Json(json!({"status": "ready"}))).into_response(),
        None => ServeError::NotReady.into_response(Protocol::Vertex),
    }
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"))], state.metrics.render())
        .into_response()
}

pub async fn v2_server_metadata() -> Response {
    Json(json!({
        "name": "platform-runtime",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    }))
    .into_response()
}

pub async fn v2_live() -> Response {
    Json(json!({"live": true})).into_response()
}

pub async fn v2_ready(State(state): State<Arc<AppState>>) -> Response {
    let ready = state.serving.get().is_some();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({"ready": ready}))).into_response()
}

/// Checks that a V2 path names the served model (and version `1`, the only one).
fn check_model(state: &AppState, name: &str, version: Option<&str>) -> Result<(), ServeError> {
    let served = &state.config.model_name;
    if name != served || version.is_some_and(|v| v != "1") {
        let asked = match version {
            Some(v) => format!("{name}` version `{v}"),
            None => name.to_string(),
        };
        return Err(ServeError::UnknownModel(asked, format!("{served}` version `1")));
    }
    Ok(())
}

async fn model_metadata(state: &AppState, name: &str, version: Option<&str>) -> Response {
    let result = check_model(state, name, version)
        .and_then(|_| state.serving())
        .map(|s| Json(v2::model_metadata(&s.model, &state.config.model_name)).into_response());
    result.unwrap_or_else(|e| e.into_response(Protocol::V2))
}

pub async fn v2_model_metadata(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    model_metadata(&state, &name, None).await
}

pub async fn v2_model_metadata_version(
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    model_metadata(&state, &name, Some(&version)).await
}

async fn model_ready(state: &AppState, name: &str, version: Option<&str>) -> Response {
    let result = check_model(state, name, version)
        .and_then(|_| state.serving())
        .map(|_| Json(json!({"name": state.config.model_name, "ready": true})).into_response());
    result.unwrap_or_else(|e| e.into_response(Protocol::V2))
}

pub async fn v2_model_ready(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    model_ready(&state, &name, None).await
}

pub async fn v2_model_ready_version(
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    model_ready(&state, &name, Some(&version)).await
}

async fn infer(
    state: &AppState,
    name: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let start = Instant::now();
    let result = infer_inner(state, name, version, headers, body).await;
    finish(state, Protocol::V2, start, result)
}

async fn infer_inner(
    state: &AppState,
    name: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ServeError> {
    check_model(state, name, version)?;
    let serving = state.serving()?;
    let body = body_bytes(body, state.config.max_body_bytes)?;
    let json_length = match headers.get(v2::HEADER_LENGTH) {
        None => None,
        Some(v) => Some(v.to_str().ok().and_then(|s| s.trim().parse::<usize>().ok()).ok_or_else(|| {
            ServeError::Body("Inference-Header-Content-Length must be a byte count".into())
        })?),
    };
    let parsed = v2::parse_request(&serving.model, &body, json_length)?;
    let outputs = serving.batcher.infer(parsed.inputs).await?;
    let response = v2::response(
        &serving.model,
        &state.config.model_name,
        parsed.id.as_deref(),
        &parsed.outputs,
        &outputs,
    )
    .map_err(ServeError::Internal)?;
    match response.json_length {
        None => Ok(json_response(response.body)),
        Some(n) => Ok((
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream")),
                (header::HeaderName::from_static(v2::HEADER_LENGTH), HeaderValue::from(n)),
            ],
            response.body,
        )
            .into_response()),
    }
}

pub async fn v2_infer(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    infer(&state, &name, None, &headers, body).await
}

pub async fn v2_infer_version(
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    infer(&state, &name, Some(&version), &headers, body).await
}
