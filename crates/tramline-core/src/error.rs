//! The error every port returns, classified so the runtime can decide: retry, park or stop.

use std::borrow::Cow;

/// Any error an adapter wraps as the cause of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong in a port or in the runtime, and whether trying again can help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A store (database or log) operation failed; `retry` says why a retry may succeed
    /// (busy, deadlock, lost connection), or `None` if it cannot.
    #[error("{store}: {operation} failed")]
    Store {
        /// Which store: `outbox`, `inbox`, `log`, `order-status-view`, or a name chosen at
        /// run time (a declared view's table).
        store: Cow<'static, str>,
        /// Which operation, e.g. `append`, `apply batch`.
        operation: &'static str,
        /// Why retrying the same operation may succeed; `None` when it cannot.
        retry: Option<RetryCause>,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// A message that can never be applied: malformed payload, unknown event type, a command
    /// the state machine refuses. It is parked with its reason, never silently dropped.
    #[error("message {message_id} on {topic} cannot be applied")]
    Poison {
        /// The topic the message came from.
        topic: String,
        /// The message id (UUID) as text.
        message_id: String,
        /// Why it cannot be applied: the decoder's or handler's own error.
        #[source]
        cause: BoxError,
    },
    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The component was asked to stop before the operation finished.
    #[error("stopped before the operation finished")]
    Stopped,
}

impl Error {
    /// Whether the same operation may succeed if tried again (busy, locked, deadlock, …).
    pub fn is_transient(&self) -> bool {
        self.retry_cause().is_some()
    }

    /// Why a retry may succeed, for errors that are transient.
    pub fn retry_cause(&self) -> Option<RetryCause> {
        match self {
            Error::Store { retry, .. } => *retry,
            _ => None,
        }
    }

    /// A poison error for the given message; `cause` (an error, or a text) stays its
    /// [`source`](std::error::Error::source).
    ///
    /// ```
    /// use tramline_core::{Envelope, Error};
    ///
    /// let record = Envelope::new("order-events", "order-1", "{}".to_owned());
    /// let bad: serde_json::Error = serde_json::from_str::<u32>("x").unwrap_err();
    /// let e = Error::poison(&record, bad);
    /// assert!(e.to_string().ends_with("on order-events cannot be applied"));
    /// assert!(std::error::Error::source(&e).is_some());
    /// ```
    pub fn poison(record: &crate::Envelope, cause: impl Into<BoxError>) -> Self {
        Error::Poison {
            topic: record.topic.clone(),
            message_id: record.id.to_string(),
            cause: cause.into(),
        }
    }

    /// A store error with its store, operation and cause, classified by `retry`.
    pub fn store(
        store: impl Into<Cow<'static, str>>,
        operation: &'static str,
        retry: Option<RetryCause>,
        source: impl Into<BoxError>,
    ) -> Self {
        Error::Store {
            store: store.into(),
            operation,
            retry,
            source: source.into(),
        }
    }
}

/// Why a failed store operation may succeed when tried again; retries are counted by cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RetryCause {
    /// Another writer holds the lock (SQLite busy/locked).
    Busy,
    /// The database chose this transaction as a deadlock victim (MariaDB 1213, PostgreSQL
    /// 40P01).
    Deadlock,
    /// A serializable transaction conflicted with another (PostgreSQL 40001).
    Serialization,
    /// A lock wait or a statement ran past its timeout.
    Timeout,
    /// Another consumer recorded the same message id concurrently; the retry sees its record.
    Conflict,
    /// The connection was lost or the pool had none to give.
    Connection,
}

impl RetryCause {
    /// Every cause, in a stable order (for counters and reports).
    pub const ALL: [RetryCause; 6] = [
        RetryCause::Busy,
        RetryCause::Deadlock,
        RetryCause::Serialization,
        RetryCause::Timeout,
        RetryCause::Conflict,
        RetryCause::Connection,
    ];

    /// The cause's name in reports and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RetryCause::Busy => "busy",
            RetryCause::Deadlock => "deadlock",
            RetryCause::Serialization => "serialization",
            RetryCause::Timeout => "timeout",
            RetryCause::Conflict => "conflict",
            RetryCause::Connection => "connection",
        }
    }
}

/// An error and its causes in one sentence (`what failed: why: root cause`), for a message
/// that must stand on its own: a parked message's reason, a header.
pub fn sentence(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
