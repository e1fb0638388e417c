//! The one error type of the store.

use api::Code;

/// What went wrong in a store operation. Data never makes the store panic: a row it cannot
/// decode is [`StoreError::Corrupt`], naming the row and the column.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named resource does not exist. `kind` is e.g. `model`, `name` its resource name.
    #[error("{kind} not found: {name}")]
    NotFound { kind: &'static str, name: String },

    /// A resource with that identity exists already.
    #[error("{kind} already exists: {name}")]
    AlreadyExists { kind: &'static str, name: String },

    /// The change contradicts the current state: a stale etag, an alias rule, a resource
    /// still in use. The message says what to do.
    #[error("{0}")]
    Conflict(String),

    /// The request itself is malformed (bad alias, bad traffic split, ...).
    #[error("{0}")]
    InvalidArgument(String),

    /// A stored row that does not decode into its record: never replaced by a default.
    #[error("the stored {column} of {row} cannot be read: {reason}")]
    Corrupt { row: String, column: &'static str, reason: String },

    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),

    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    pub fn is_already_exists(&self) -> bool {
        matches!(self, Self::AlreadyExists { .. })
    }

    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict(_))
    }

    pub fn is_invalid_argument(&self) -> bool {
        matches!(self, Self::InvalidArgument(_))
    }

    pub(crate) fn not_found(kind: &'static str, name: impl Into<String>) -> Self {
        Self::NotFound { kind, name: name.into() }
    }

    pub(crate) fn already_exists(kind: &'static str, name: impl Into<String>) -> Self {
        Self::AlreadyExists { kind, name: name.into() }
    }
}

impl api::Coded for StoreError {
    fn code(&self) -> Code {
        match self {
            StoreError::NotFound { .. } => Code::NotFound,
            StoreError::AlreadyExists { .. } => Code::AlreadyExists,
            StoreError::Conflict(_) => Code::Aborted,
            StoreError::InvalidArgument(_) => Code::InvalidArgument,
            StoreError::Corrupt { .. } => Code::DataLoss,
            StoreError::Database(_) | StoreError::Migration(_) => Code::Internal,
        }
    }
}
