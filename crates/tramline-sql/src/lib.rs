//! SQL adapters of tramline: the outbox, the inbox (dedupe and parked messages), consumer
//! offsets and the DB-backed log, with hand-written SQL per dialect.
//!
//! One module per dialect; today [`sqlite`], the zero-set-up default. Every store's schema is
//! created by versioned migrations (`migrations/<dialect>/<store>/`) applied when it opens.

pub mod error;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use error::SqlError;
