//! Errors of the SQL stores, classified by the driver's error type and code, never by message.

use crate::dialect::{mysql, postgres, sqlite};
use tramline_core::{Error, RetryCause};

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
    /// Set by a store that knows a unique-key error means "another transaction got there at
    /// the same time" and a retry will see its row.
    conflict: bool,
}

impl SqlError {
    /// Wraps a driver error with its store and operation.
    pub fn new(store: &'static str, operation: &'static str, source: sqlx::Error) -> Self {
        SqlError {
            store,
            operation,
            source,
            conflict: false,
        }
    }

    /// A closure for `map_err` that wraps with store and operation.
    pub fn at(store: &'static str, operation: &'static str) -> impl Fn(sqlx::Error) -> Self {
        move |source| SqlError::new(store, operation, source)
    }

    /// Marks a duplicate-key error as a concurrent claim that a retry resolves.
    pub(crate) fn duplicate_is_conflict(mut self) -> Self {
        self.conflict = self.is_duplicate();
        self
    }

    /// Why retrying may succeed: lock contention (SQLite busy), a deadlock or serialization
    /// failure, a lock or statement timeout, a lost or exhausted connection, a concurrent
    /// claim. `None` for errors a retry cannot fix.
    pub fn retry_cause(&self) -> Option<RetryCause> {
        if self.conflict {
            return Some(RetryCause::Conflict);
        }
        match &self.source {
            sqlx::Error::Database(db) => {
                if let Some(e) = db.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
                    sqlite::retry_cause(e)
                } else if let Some(e) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                    mysql::retry_cause(e)
                } else if let Some(e) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                    postgres::retry_cause(e)
                } else {
                    None
                }
            }
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => {
                Some(RetryCause::Connection)
            }
            _ => None,
        }
    }

    /// Whether retrying may succeed (see [`SqlError::retry_cause`]).
    pub fn is_transient(&self) -> bool {
        self.retry_cause().is_some()
    }

    /// Whether a unique or primary key constraint was violated.
    pub fn is_duplicate(&self) -> bool {
        matches!(&self.source, sqlx::Error::Database(db) if db.is_unique_violation())
    }
}

impl From<SqlError> for Error {
    fn from(e: SqlError) -> Self {
        let retry = e.retry_cause();
        Error::Store {
            store: e.store,
            operation: e.operation,
            retry,
            source: Box::new(e.source),
        }
    }
}
