//! SQL adapters of tramline: the outbox, the inbox (dedupe and parked messages), consumer
//! offsets, the DB-backed log and the idempotency records of command APIs, on SQLite, MariaDB
//! and PostgreSQL.
//!
//! Every store is written once against [`Db`] and [`Stmt`]; what differs between the dialects
//! (placeholders, upserts, locking, connecting, error codes) lives in [`dialect`] alone. The
//! backend is chosen by URL. Every store's schema is created by versioned migrations
//! (`migrations/<dialect>/<store>/`) applied when it opens.
//!
//! The outbox inside a service's own sqlx transaction, published by a relay to the embedded
//! log (a whole service: `examples/shop/`):
//!
//! ```
//! use std::sync::Arc;
//! use tramline_core::ports::{Subscription, Transport};
//! use tramline_core::relay::{OutboxRelay, RelayConfig};
//! use tramline_core::Envelope;
//! use tramline_sql::{migrate, Db, DbOptions, Schema, SqlLog, SqlOutbox};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let (app_url, log_url) = (
//! #     format!("sqlite://{}?mode=rwc", dir.path().join("app.db").display()),
//! #     format!("sqlite://{}", dir.path().join("log.db").display()),
//! # );
//! let pool = sqlx::SqlitePool::connect(&app_url).await?; // the service's own pool
//! sqlx::query("CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER)")
//!     .execute(&pool)
//!     .await?;
//! let db = Db::from_pool(pool.clone());
//! migrate(&db, &[Schema::Outbox]).await?;
//! let outbox = Arc::new(SqlOutbox::new(db));
//!
//! let mut tx = pool.begin().await?;
//! sqlx::query("INSERT INTO accounts (id, balance) VALUES (1, 100)")
//!     .execute(&mut *tx)
//!     .await?;
//! let opened = Envelope::new("accounts", "1", r#"{"balance":100}"#.into());
//! outbox.append_in(&mut *tx, &[opened]).await?;
//! tx.commit().await?;
//!
//! let log = Arc::new(SqlLog::open(&log_url, &DbOptions::default()).await?);
//! log.create_topic("accounts", 4).await?;
//! let relay = OutboxRelay::new(outbox, Arc::clone(&log), RelayConfig::default());
//! assert_eq!(relay.publish_once().await?, 1);
//! let mut reader = log.subscribe("audit", &["accounts".to_owned()]).await?;
//! let records = reader.poll(10, std::time::Duration::from_secs(1)).await?;
//! assert_eq!(records[0].envelope.payload, r#"{"balance":100}"#);
//! # Ok(())
//! # }
//! ```

pub mod consumer;
pub mod db;
pub mod dialect;
pub mod election;
pub mod error;
pub mod history;
mod idempotency;
mod inbox;
mod log;
pub mod migrate;
mod outbox;
pub mod parked;
#[cfg(feature = "scratch")]
pub mod provision;
pub mod readmodel;
pub mod retention;
pub mod vacuum;

pub use consumer::{Apply, TransactionalConsumer};
pub use db::{insert_rows, Conn, Db, DbOptions, Stmt, Tx, Writer};
pub use dialect::{Assign, Dialect, LockMode};
pub use error::SqlError;
pub use idempotency::{IdempotencyRecord, IdempotencyStore};
pub use inbox::Inbox;
pub use log::{SqlLog, SqlSubscription};
pub use migrate::{migrate, Schema};
pub use outbox::{OutboxLayout, SqlOutbox};
pub use parked::{ParkPolicy, ParkedMessage};
pub use readmodel::{ReadModelError, ReadModelProjection, ReadModelTable};
pub use retention::{Retention, RetentionPolicy};
pub use vacuum::Vacuum;
