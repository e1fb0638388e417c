//! `:predict` and `:rawPredict`: the data plane's entry. Authentication uses the token cache
//! and routing the gateway's in-memory snapshot: no database query on this path.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{ApiError, App};
use crate::auth::Role;
use crate::gateway::GatewayError;
use crate::store::EndpointKey;

/// Serves one prediction request on `endpoint`.
pub async fn serve(
    app: &App,
    endpoint: &EndpointKey,
    raw: bool,
    private_listener: bool,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let result = forward(app, endpoint, raw, private_listener, headers, body).await;
    let (code, deployed_model) = match &result {
        Ok((response, dm)) => (response.status().as_u16(), dm.as_str()),
        Err(e) => (e.status.as_u16(), ""),
    };
    app.metrics.prediction(&endpoint.endpoint_id, deployed_model, code, started.elapsed());
    result.map(|(response, _)| response)
}

async fn forward(
    app: &App,
    endpoint: &EndpointKey,
    raw: bool,
    private_listener: bool,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<(Response, String), ApiError> {
    let name = endpoint.name();
    let route = app.gateway.endpoint(&name).map_err(gateway_error)?;
    match route.access {
        api::Access::Public => {}
        api::Access::Private if !private_listener => {
            return Err(ApiError::not_found(format!(
                "endpoint {name} is private: it is served only on the private listener (--private-listen)"
            )));
        }
        api::Access::Private | api::Access::Authenticated => {
            let caller = super::caller_from_headers(app, headers).await?;
            caller.require(Role::Predictor, &endpoint.project)?;
        }
    }
    let forwarded = if raw {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream");
        app.gateway.raw_predict(&name, route, content_type, body).await
    } else {
        app.gateway.predict(&name, route, body).await
    }
    .map_err(gateway_error)?;
    let status = StatusCode::from_u16(forwarded.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = (status, forwarded.body).into_response();
    let h = response.headers_mut();
    if let Some(ct) = forwarded.content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::CONTENT_TYPE, ct);
    }
    if let Ok(v) = HeaderValue::from_str(&endpoint.endpoint_id) {
        h.insert("x-vertex-ai-endpoint-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&forwarded.deployed_model_id) {
        h.insert("x-vertex-ai-deployed-model-id", v);
    }
    Ok((response, forwarded.deployed_model_id))
}

/// The HTTP answer to each way a prediction can fail.
pub fn gateway_error(e: GatewayError) -> ApiError {
    let message = e.to_string();
    match e {
        GatewayError::UnknownEndpoint(_) => ApiError::not_found(message),
        GatewayError::BadRequest(_) => ApiError::invalid(message),
        GatewayError::NoTraffic(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "FAILED_PRECONDITION", message)
        }
        GatewayError::NoReadyReplica(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", message).retry_after(1)
        }
        GatewayError::Timeout(..) => ApiError::new(StatusCode::GATEWAY_TIMEOUT, "DEADLINE_EXCEEDED", message),
        GatewayError::Upstream(..) => ApiError::new(StatusCode::BAD_GATEWAY, "UNAVAILABLE", message),
    }
}
