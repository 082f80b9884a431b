//! The command services. Each owns its database and writes its state change and the event
//! messages describing it in one transaction; none of them knows who consumes the events.

pub mod delivery;
pub mod order;
pub mod payment;
mod subscriber;

pub use subscriber::{Reaction, Subscriber};

use crate::error::Result;
use crate::events::DomainEvent;
use sqlx::SqlitePool;
use std::path::Path;
use std::sync::Arc;
use tramline_sql::sqlite::{self, Schema, SqliteOptions, SqliteOutbox, WriteTx};
use tramline_sql::SqlError;

/// A service's database: its own tables, its outbox and its inbox.
#[derive(Debug, Clone)]
pub struct ServiceDb {
    /// The connection pool.
    pub pool: SqlitePool,
    /// The outbox the service's relay drains.
    pub outbox: Arc<SqliteOutbox>,
}

impl ServiceDb {
    /// Opens the database at `path` and applies the outbox, inbox and service migrations.
    pub async fn open(
        path: &Path,
        options: &SqliteOptions,
        mut service_migrations: sqlx::migrate::Migrator,
    ) -> Result<Self> {
        let pool = sqlite::open(path, options).await?;
        sqlite::migrate(&pool, &[Schema::Outbox, Schema::Inbox]).await?;
        sqlite::run_migrator(&pool, &mut service_migrations).await?;
        Ok(ServiceDb {
            outbox: Arc::new(SqliteOutbox::new(pool.clone())),
            pool,
        })
    }

    /// Starts a write transaction for `store`.
    pub async fn begin(&self, store: &'static str) -> Result<WriteTx, SqlError> {
        sqlite::begin_write(&self.pool, store).await
    }

    /// Appends the events to the outbox in `tx`, commits, and wakes the relay.
    pub async fn commit(
        &self,
        mut tx: WriteTx,
        store: &'static str,
        events: &[DomainEvent],
    ) -> Result<(), SqlError> {
        let messages: Vec<_> = events.iter().map(DomainEvent::to_envelope).collect();
        SqliteOutbox::append(&mut tx, &messages).await?;
        tx.commit().await.map_err(SqlError::at(store, "commit"))?;
        if !messages.is_empty() {
            self.outbox.notify();
        }
        Ok(())
    }
}

/// A fresh id for a new aggregate: a UUIDv7, so ids sort by creation time.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
