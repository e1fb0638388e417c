//! Errors of the REST API, mapped to HTTP in one place: `{"error": {"code", "message",
//! "status", "details"}}` as Google APIs write them. Internal errors are logged at error level.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::auth::AuthError;
use crate::store::StoreError;

/// An error answer: HTTP status, `google.rpc.Code` name and a message that says what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (overload, no replica ready yet).
    pub retry_after: Option<u32>,
    /// `details` of the error body (e.g. a `google.rpc.BadRequest` with field violations).
    pub details: Vec<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), retry_after: None, details: vec![] }
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    pub fn retry_after(self, seconds: u32) -> ApiError {
        ApiError { retry_after: Some(seconds), ..self }
    }

    pub fn with_details(self, details: Vec<serde_json::Value>) -> ApiError {
        ApiError { details, ..self }
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        }
        let retry_after = self.retry_after;
        let body = api::ErrorBody {
            error: api::Status {
                code: i32::from(self.status.as_u16()),
                message: self.message,
                status: self.code.to_string(),
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

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        let message = e.to_string();
        match e {
            AuthError::MissingToken
            | AuthError::InvalidToken(_)
            | AuthError::Revoked
            | AuthError::BadCredentials => {
                ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message)
            }
            AuthError::Forbidden { .. } | AuthError::WrongProject { .. } => {
                ApiError::new(StatusCode::FORBIDDEN, "PERMISSION_DENIED", message)
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let message = e.to_string();
        match e {
            StoreError::NotFound { .. } => ApiError::not_found(message),
            StoreError::AlreadyExists { .. } => {
                ApiError::new(StatusCode::CONFLICT, "ALREADY_EXISTS", message)
            }
            StoreError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "ABORTED", message),
            StoreError::InvalidArgument(_) => ApiError::invalid(message),
            _ => ApiError::internal(message),
        }
    }
}
