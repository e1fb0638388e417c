//! Errors of the HTTP layer, each with its status, rendered in each protocol's format:
//! `{"error": {"code", "message", "status"}}` on Vertex routes, `{"error": "..."}` on V2 routes.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::batching::InferError;
use crate::protocol::InvalidRequest;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the model is still loading; retry when the health route answers 200")]
    NotReady,
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    #[error("the request body is larger than the limit of {0} bytes")]
    TooLarge(usize),
    #[error("cannot read the request body: {0}")]
    Body(String),
    #[error("model `{0}` is not served here; this server serves `{1}`")]
    UnknownModel(String, String),
    #[error(transparent)]
    Infer(#[from] InferError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Which wire format an error is rendered in.
#[derive(Debug, Clone, Copy)]
pub enum Protocol {
    Vertex,
    V2,
}

impl ServeError {
    pub fn status(&self) -> StatusCode {
        match self {
            ServeError::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            ServeError::Invalid(_) | ServeError::Body(_) => StatusCode::BAD_REQUEST,
            ServeError::Infer(InferError::Failed(_)) => StatusCode::BAD_REQUEST,
            ServeError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ServeError::UnknownModel(..) => StatusCode::NOT_FOUND,
            ServeError::Infer(InferError::QueueFull(_)) => StatusCode::TOO_MANY_REQUESTS,
            ServeError::Infer(InferError::Closed) => StatusCode::SERVICE_UNAVAILABLE,
            ServeError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `google.rpc.Code` name of the status, as Vertex writes it.
    fn rpc_status(&self) -> &'static str {
        match self.status() {
            StatusCode::BAD_REQUEST => "INVALID_ARGUMENT",
            StatusCode::NOT_FOUND => "NOT_FOUND",
            StatusCode::PAYLOAD_TOO_LARGE => "OUT_OF_RANGE",
            StatusCode::TOO_MANY_REQUESTS => "RESOURCE_EXHAUSTED",
            StatusCode::SERVICE_UNAVAILABLE => "UNAVAILABLE",
            _ => "INTERNAL",
        }
    }

    pub fn into_response(self, protocol: Protocol) -> Response {
        let status = self.status();
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, %status, "request refused");
        }
        let body = match protocol {
            Protocol::Vertex => json!({"error": {
                "code": status.as_u16(),
                "message": self.to_string(),
                "status": self.rpc_status(),
            }}),
            Protocol::V2 => json!({"error": self.to_string()}),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
