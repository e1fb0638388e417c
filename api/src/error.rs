//! `google.rpc.Status` and the HTTP error body `{"error": {...}}`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// A status: in an HTTP error body `code` is the HTTP status; inside an operation it is the
/// `google.rpc.Code` number.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub code: i32,
    pub message: String,
    /// The `google.rpc.Code` name (`INVALID_ARGUMENT`, `NOT_FOUND`, ...), in HTTP bodies.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub details: Vec<Value>,
}

/// The body of every error answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: Status,
}

/// One field of a request that is wrong, and why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

/// `google.rpc.Code`: what kind of failure an error is. Every error of the platform names one,
/// and the HTTP status follows from it (as Google APIs map them) unless the error says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    Cancelled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

impl Code {
    const ALL: [Code; 16] = [
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    /// The name, e.g. `INVALID_ARGUMENT` (the `status` of an error body).
    pub fn name(self) -> &'static str {
        match self {
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    /// The number (the `code` of a failed operation's error).
    pub fn number(self) -> i32 {
        match self {
            Code::Cancelled => 1,
            Code::Unknown => 2,
            Code::InvalidArgument => 3,
            Code::DeadlineExceeded => 4,
            Code::NotFound => 5,
            Code::AlreadyExists => 6,
            Code::PermissionDenied => 7,
            Code::ResourceExhausted => 8,
            Code::FailedPrecondition => 9,
            Code::Aborted => 10,
            Code::OutOfRange => 11,
            Code::Unimplemented => 12,
            Code::Internal => 13,
            Code::Unavailable => 14,
            Code::DataLoss => 15,
            Code::Unauthenticated => 16,
        }
    }

    /// The code of a name; `None` for names that are not codes.
    pub fn from_name(name: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The HTTP status Google APIs answer with for this code.
    pub fn http_status(self) -> u16 {
        match self {
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
            Code::Unauthenticated => 401,
            Code::PermissionDenied => 403,
            Code::NotFound => 404,
            Code::AlreadyExists | Code::Aborted => 409,
            Code::ResourceExhausted => 429,
            Code::Cancelled => 499,
            Code::Unknown | Code::Internal | Code::DataLoss => 500,
            Code::Unimplemented => 501,
            Code::Unavailable => 503,
            Code::DeadlineExceeded => 504,
        }
    }
}

/// An error that knows how it reaches a client: its code, and its HTTP status when that is not
/// the code's usual one. The server turns any such error into an answer in one place.
pub trait Coded: std::error::Error {
    fn code(&self) -> Code;

    fn http_status(&self) -> u16 {
        self.code().http_status()
    }

    /// Seconds for a `Retry-After` header (overload, no replica ready yet).
    fn retry_after(&self) -> Option<u32> {
        None
    }

    /// `details` of the error body, e.g. a `google.rpc.BadRequest` with field violations.
    fn details(&self) -> Vec<Value> {
        Vec::new()
    }
}

impl Status {
    /// The `google.rpc.Status` of a failed operation: the code's number, name and a message.
    pub fn of(code: Code, message: impl Into<String>) -> Status {
        Status {
            code: code.number(),
            message: message.into(),
            status: code.name().to_string(),
            details: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_googles_names_numbers_and_statuses() {
        for code in Code::ALL {
            assert_eq!(Code::from_name(code.name()), Some(code));
        }
        assert_eq!(Code::InvalidArgument.number(), 3);
        assert_eq!(Code::Unauthenticated.number(), 16);
        assert_eq!(Code::Aborted.http_status(), 409);
        assert_eq!(Code::from_name("NOPE"), None);
        assert_eq!(Status::of(Code::NotFound, "x").status, "NOT_FOUND");
    }
}
