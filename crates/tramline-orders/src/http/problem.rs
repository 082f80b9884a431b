//! The order system's errors as RFC 9457 problem details ([`Problem`], shared with every
//! tramline API), with the status a client can act on: 400 malformed request, 404 unknown id, 409 illegal state transition (or a
//! request with the same `Idempotency-Key` in progress), 413 a body over 64 KiB, 422 invalid
//! values (or an `Idempotency-Key` reused with another request), 503 a store that is busy or
//! away. Bad input never becomes a 500. Every type is `urn:tramline:problem:<kind>`; the kinds
//! are listed in docs/HTTP.md.

use crate::OrderSystemError;
use axum::http::StatusCode;
pub use tramline_views::problem::Problem;

impl From<OrderSystemError> for Problem {
    fn from(e: OrderSystemError) -> Self {
        match &e {
            OrderSystemError::Invalid { .. } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-value",
                e.to_string(),
            ),
            OrderSystemError::NotFound { .. } => {
                Problem::new(StatusCode::NOT_FOUND, "not-found", e.to_string())
            }
            OrderSystemError::IllegalTransition { .. } => {
                Problem::new(StatusCode::CONFLICT, "illegal-transition", e.to_string())
            }
            OrderSystemError::Malformed(_) => {
                Problem::new(StatusCode::BAD_REQUEST, "malformed", e.to_string())
            }
            OrderSystemError::Stopped => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the service is stopping; retry the request",
            ),
            OrderSystemError::Store(s) if s.is_transient() => {
                tracing::warn!(error = %tramline_core::error::sentence(&e), "store busy while serving a request");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the service's database is busy; retry the request",
                )
            }
            _ => {
                // The cause goes to the log, not to the client (it may name internals).
                tracing::error!(error = %tramline_core::error::sentence(&e), "request failed");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the request could not be completed",
                )
            }
        }
    }
}
