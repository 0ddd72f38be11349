//! Store failures, free of any HTTP meaning; the API maps them once.

/// What went wrong talking to the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken (a taken name or email).
    #[error("{entity} already exists: {detail}")]
    Conflict {
        entity: &'static str,
        detail: String,
    },
    /// The database could not be reached or the pool is exhausted: worth retrying.
    #[error("cannot reach the store: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A statement failed.
    #[error("store query failed: {0}")]
    Query(#[source] sqlx::Error),
    /// A stored value could not be read back (a bug or a manual edit).
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("schema migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The store was configured wrongly.
    #[error("{0}")]
    Config(String),
}

impl StoreError {
    /// Whether the same call may succeed later without any change.
    pub fn retryable(&self) -> bool {
        match self {
            StoreError::Unavailable(_) => true,
            StoreError::Conflict { .. }
            | StoreError::Query(_)
            | StoreError::Corrupt(_)
            | StoreError::Migrate(_)
            | StoreError::Config(_) => false,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err),
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
                StoreError::Corrupt(err.to_string())
            }
            other => StoreError::Query(other),
        }
    }
}

/// Turns a unique violation into a [`StoreError::Conflict`], anything else as usual.
pub(crate) fn conflict_or(err: sqlx::Error, entity: &'static str, detail: &str) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict {
            entity,
            detail: detail.to_owned(),
        },
        _ => err.into(),
    }
}
