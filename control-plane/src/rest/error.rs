//! Errors of the REST API, mapped to HTTP in one place: `{"error": {"code", "message",
//! "status", "details"}}` as Google APIs write them. Every domain error knows its code and
//! status ([`api::Coded`]) and becomes an [`ApiError`] through one `From`; the few errors of
//! the door itself (a bad path, a body that is not JSON) are built here. Internal errors are
//! logged at error level.

use api::Code;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error answer: HTTP status, `google.rpc.Code` and a message that says what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: Code,
    pub message: String,
    /// Seconds for a `Retry-After` header (overload, no replica ready yet).
    pub retry_after: Option<u32>,
    /// `details` of the error body (e.g. a `google.rpc.BadRequest` with field violations).
    pub details: Vec<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: Code, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), retry_after: None, details: vec![] }
    }

    /// An error of `code` with the code's usual HTTP status.
    pub fn of(code: Code, message: impl Into<String>) -> ApiError {
        let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError::new(status, code, message)
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::of(Code::InvalidArgument, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::of(Code::NotFound, message)
    }
}

impl<E: api::Coded> From<E> for ApiError {
    fn from(e: E) -> ApiError {
        let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError {
            status,
            code: e.code(),
            message: e.to_string(),
            retry_after: e.retry_after(),
            details: e.details(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(code = self.code.name(), message = %self.message, "request failed");
        }
        let retry_after = self.retry_after;
        let body = api::ErrorBody {
            error: api::Status {
                code: i32::from(self.status.as_u16()),
                message: self.message,
                status: self.code.name().to_string(),
                details: self.details,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(s) = retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, s.into());
        }
        response
    }
}
