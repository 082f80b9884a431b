//! The command services. Each owns its database and writes its state change and the event
//! messages describing it in one transaction; none of them knows who consumes the events.
//!
//! Every service reads and writes its aggregates in bulk — one statement loads all the
//! aggregates a batch touches, one multi-row upsert saves the changed ones — because round
//! trips, not rows, are what a batch costs.

pub mod delivery;
pub mod order;
pub mod payment;
mod subscriber;

pub use subscriber::{Reaction, Subscriber};

use crate::error::Result;
use crate::events::DomainEvent;
use serde::de::DeserializeOwned;
use sqlx::{SqliteConnection, SqlitePool};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tramline_sql::sqlite::{self, fetch_json_rows, Schema, SqliteOptions, SqliteOutbox, WriteTx};
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

/// Loads, in one statement, the aggregates whose key column is one of `ids`. `select` binds
/// the ids as one JSON array (`… IN (SELECT value FROM json_each(?))`) and returns the rows
/// folded into one JSON array of camelCase objects.
pub(crate) async fn load_many<T: DeserializeOwned>(
    conn: &mut SqliteConnection,
    store: &'static str,
    select: &'static str,
    ids: &[&str],
) -> Result<Vec<T>, SqlError> {
    let ids = serde_json::to_string(ids).expect("a list of strings always serialises");
    fetch_json_rows(sqlx::query(select).bind(ids), conn, store, "load").await
}

/// The aggregates a batch works on, keyed, and which of them changed (in first-change order).
pub(crate) struct Loaded<T> {
    pub by_key: HashMap<String, T>,
    changed: Vec<String>,
}

impl<T> Loaded<T> {
    pub fn new(items: Vec<T>, key: impl Fn(&T) -> &str) -> Self {
        let by_key = items.into_iter().map(|t| (key(&t).to_owned(), t)).collect();
        Loaded {
            by_key,
            changed: Vec::new(),
        }
    }

    /// Notes that the aggregate under `key` changed and must be saved.
    pub fn touch(&mut self, key: &str) {
        if !self.changed.iter().any(|k| k == key) {
            self.changed.push(key.to_owned());
        }
    }

    /// The changed aggregates, to save.
    pub fn changed(&self) -> Vec<&T> {
        self.changed
            .iter()
            .filter_map(|k| self.by_key.get(k))
            .collect()
    }
}
