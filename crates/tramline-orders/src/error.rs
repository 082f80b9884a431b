//! The order system's errors: refused commands, unknown ids, bad messages, failed stores.

use tramline_core::Error;
use tramline_sql::SqlError;

/// What went wrong in a command, a handler or a query of the order system.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OrderSystemError {
    /// A command's values are invalid (empty customer, non-positive amount, …).
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// No entity of that kind has that id.
    #[error("{entity} {id} not found")]
    NotFound {
        /// `order`, `payment` or `delivery`.
        entity: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The entity's state machine does not allow the command in its current state.
    #[error("{entity} {id} is {status}: cannot {action}")]
    IllegalTransition {
        /// `order`, `payment` or `delivery`.
        entity: &'static str,
        /// The entity's id.
        id: String,
        /// Its current status.
        status: &'static str,
        /// The refused action.
        action: &'static str,
    },
    /// A message could not be decoded into a known event.
    #[error("malformed event: {0}")]
    Malformed(String),
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] SqlError),
    /// The service stopped before the command was committed (its group commit ended).
    #[error("the service is stopping")]
    Stopped,
}

impl OrderSystemError {
    /// Whether retrying may succeed (only store contention and connection loss).
    pub fn is_transient(&self) -> bool {
        matches!(self, OrderSystemError::Store(e) if e.is_transient())
    }

    /// Converts for the consumer runtime: store errors stay store errors (retried when
    /// transient), everything else makes the record poison (parked, never dropped).
    pub fn into_core(self, record: &tramline_core::Record) -> Error {
        match self {
            OrderSystemError::Store(e) => e.into(),
            other => Error::poison(&record.envelope, other),
        }
    }
}

/// Result of the order system.
pub type Result<T, E = OrderSystemError> = std::result::Result<T, E>;
