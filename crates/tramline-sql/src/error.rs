//! Errors of the SQL stores, classified by the driver's error type and code, never by message.

use crate::dialect::{mysql, postgres, sqlite};
use std::borrow::Cow;
use tramline_core::{Error, RetryCause};

/// A failed statement, with which store and which operation it was. Its `source()` is the
/// driver's error — for an error the database returned, the database's own error, without
/// sqlx's "error returned from database" wrapper that repeats its message.
#[derive(Debug)]
#[non_exhaustive]
pub struct SqlError {
    /// The store: `outbox`, `inbox`, `log`, `order-status-view`, or a name chosen at run
    /// time (a declared view's table).
    pub store: Cow<'static, str>,
    /// The operation, e.g. `append`, `fetch unpublished`.
    pub operation: &'static str,
    /// The driver's error.
    pub source: sqlx::Error,
    /// Set by a store that knows a unique-key error means "another transaction got there at
    /// the same time" and a retry will see its row.
    conflict: bool,
}

impl SqlError {
    /// Wraps a driver error with its store and operation.
    pub fn new(
        store: impl Into<Cow<'static, str>>,
        operation: &'static str,
        source: sqlx::Error,
    ) -> Self {
        SqlError {
            store: store.into(),
            operation,
            source,
            conflict: false,
        }
    }

    /// A closure for `map_err` that wraps with store and operation.
    pub fn at<'a>(store: &'a str, operation: &'static str) -> impl Fn(sqlx::Error) -> Self + 'a {
        move |source| SqlError::new(store.to_owned(), operation, source)
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

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} failed", self.store, self.operation)
    }
}

impl std::error::Error for SqlError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(match &self.source {
            sqlx::Error::Database(db) => db.as_error(),
            other => other,
        })
    }
}

/// Whether `e` is the database refusing the data itself — a check, not-null or foreign-key
/// constraint, an error a trigger raised, a value out of range or of the wrong form — rather
/// than failing as a system (unreachable, a missing table, a refused login). Such an error
/// condemns the message that carried the data: the consumer parks it instead of stopping.
pub fn refuses_data(e: &Error) -> bool {
    use sqlx::error::{DatabaseError, ErrorKind};
    let Error::Store { source, .. } = e else {
        return false;
    };
    let refused_kind = |kind: ErrorKind| {
        matches!(
            kind,
            ErrorKind::CheckViolation
                | ErrorKind::NotNullViolation
                | ErrorKind::ForeignKeyViolation
        )
    };
    if let Some(e) = source.downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        // Class 22: data exception; P0001: raise_exception (a trigger's).
        return refused_kind(e.kind()) || e.code().starts_with("22") || e.code() == "P0001";
    }
    if let Some(e) = source.downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        // 45000: a SIGNAL (a trigger's); 22xxx: data exceptions (out of range, too long).
        // 4025 (MariaDB) and 3819 (MySQL): a CHECK constraint; 1048: NULL into NOT NULL;
        // 1452: no referenced row; 1264, 1406, 1366: out of range, too long, wrong value.
        let state = e.code().unwrap_or_default();
        let refused_number = matches!(e.number(), 4025 | 3819 | 1048 | 1452 | 1264 | 1406 | 1366);
        return refused_kind(e.kind())
            || refused_number
            || state == "45000"
            || state.starts_with("22");
    }
    if let Some(e) = source.downcast_ref::<sqlx::sqlite::SqliteError>() {
        // SQLITE_CONSTRAINT_CHECK, _NOTNULL, _FOREIGNKEY, _TRIGGER.
        let code = e.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0);
        return refused_kind(e.kind()) || matches!(code, 275 | 787 | 1299 | 1811);
    }
    false
}

impl From<SqlError> for Error {
    fn from(e: SqlError) -> Self {
        let retry = e.retry_cause();
        let source: tramline_core::BoxError = match e.source {
            sqlx::Error::Database(db) => db.into_error(),
            other => Box::new(other),
        };
        Error::Store {
            store: e.store,
            operation: e.operation,
            retry,
            source,
        }
    }
}
