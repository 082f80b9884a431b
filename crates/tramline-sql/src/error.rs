//! Errors of the SQL stores, classified by the driver's error kind and code, never by message.

use tramline_core::Error;

/// A failed statement, with which store and which operation it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[error("{store}: {operation} failed: {source}")]
pub struct SqlError {
    /// The store: `outbox`, `inbox`, `log`, `order-status-view`, …
    pub store: &'static str,
    /// The operation, e.g. `append`, `fetch unpublished`.
    pub operation: &'static str,
    /// The driver's error.
    #[source]
    pub source: sqlx::Error,
}

/// SQLite primary result codes that mean "someone else holds the lock, try again".
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;

impl SqlError {
    /// Wraps a driver error with its store and operation.
    pub fn new(store: &'static str, operation: &'static str, source: sqlx::Error) -> Self {
        SqlError {
            store,
            operation,
            source,
        }
    }

    /// A closure for `map_err` that wraps with store and operation.
    pub fn at(store: &'static str, operation: &'static str) -> impl Fn(sqlx::Error) -> Self {
        move |source| SqlError::new(store, operation, source)
    }

    /// Whether retrying may succeed: lock contention (busy, locked, busy snapshot), a lost
    /// or exhausted connection.
    pub fn is_transient(&self) -> bool {
        match &self.source {
            sqlx::Error::Database(db) => db
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .is_some_and(|code| matches!(code & 0xff, SQLITE_BUSY | SQLITE_LOCKED)),
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
            _ => false,
        }
    }

    /// Whether a unique or primary key constraint was violated.
    pub fn is_duplicate(&self) -> bool {
        matches!(&self.source, sqlx::Error::Database(db) if db.is_unique_violation())
    }
}

impl From<SqlError> for Error {
    fn from(e: SqlError) -> Self {
        let transient = e.is_transient();
        Error::Store {
            store: e.store,
            operation: e.operation,
            transient,
            source: Box::new(e.source),
        }
    }
}
