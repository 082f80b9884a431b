//! SQL adapters of tramline: the outbox, the inbox (dedupe and parked messages), consumer
//! offsets, the DB-backed log and the idempotency records of command APIs, on SQLite, MariaDB
//! and PostgreSQL.
//!
//! Every store is written once against [`Db`] and [`Stmt`]; what differs between the dialects
//! (placeholders, upserts, locking, connecting, error codes) lives in [`dialect`] alone. The
//! backend is chosen by URL. Every store's schema is created by versioned migrations
//! (`migrations/<dialect>/<store>/`) applied when it opens.

pub mod consumer;
pub mod db;
pub mod dialect;
pub mod error;
pub mod history;
mod idempotency;
mod inbox;
mod log;
pub mod migrate;
mod outbox;
pub mod provision;
pub mod readmodel;

pub use consumer::{Apply, TransactionalConsumer};
pub use db::{insert_rows, Conn, Db, DbOptions, Stmt, Tx, Writer};
pub use dialect::{Assign, Dialect, LockMode};
pub use error::SqlError;
pub use idempotency::{IdempotencyRecord, IdempotencyStore};
pub use inbox::Inbox;
pub use log::{SqlLog, SqlSubscription};
pub use migrate::{migrate, Schema};
pub use outbox::{OutboxLayout, SqlOutbox};
pub use readmodel::{ReadModelError, ReadModelProjection, ReadModelTable};
