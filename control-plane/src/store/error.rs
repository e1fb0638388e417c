//! The one error type of the store.

/// What went wrong in a store operation. Data never makes the store panic: rows it cannot
/// decode come back as [`StoreError::Database`] with a decode error.
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

    /// The request itself is malformed (unknown role, bad alias, bad traffic split, ...).
    #[error("{0}")]
    InvalidArgument(String),

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

    /// A row that the store wrote but cannot read back (bad JSON, timestamp out of range).
    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        Self::Database(sqlx::Error::Decode(what.into().into()))
    }
}
