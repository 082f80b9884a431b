//! The error every port returns, classified so the runtime can decide: retry, park or stop.

/// Any error an adapter wraps as the cause of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong in a port or in the runtime, and whether trying again can help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A store (database or log) operation failed; `transient` says a retry may succeed
    /// (busy, locked, deadlock, lost connection).
    #[error("{store}: {operation} failed: {source}")]
    Store {
        /// Which store: `outbox`, `inbox`, `log`, `order-status-view`, …
        store: &'static str,
        /// Which operation, e.g. `append`, `apply batch`.
        operation: &'static str,
        /// Whether retrying the same operation may succeed.
        transient: bool,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// A message that can never be applied: malformed payload, unknown event type, a command
    /// the state machine refuses. It is parked with its reason, never silently dropped.
    #[error("message {message_id} on {topic} cannot be applied: {reason}")]
    Poison {
        /// The topic the message came from.
        topic: String,
        /// The message id (UUID) as text.
        message_id: String,
        /// Why it cannot be applied.
        reason: String,
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
        matches!(
            self,
            Error::Store {
                transient: true,
                ..
            }
        )
    }

    /// A poison error for the given message.
    pub fn poison(record: &crate::Envelope, reason: impl std::fmt::Display) -> Self {
        Error::Poison {
            topic: record.topic.clone(),
            message_id: record.id.to_string(),
            reason: reason.to_string(),
        }
    }
}
