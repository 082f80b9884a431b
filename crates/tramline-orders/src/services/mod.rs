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

use crate::error::{OrderSystemError, Result};
use crate::events::DomainEvent;
use serde::de::DeserializeOwned;
use sqlx::{SqliteConnection, SqlitePool};
use std::collections::HashMap;
use std::future::Future;
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

/// An aggregate a service stores: how it is found, saved and announced. The generic
/// operations below are written once against it.
pub(crate) trait Stored: Clone + DeserializeOwned + Send + Sync + 'static {
    /// `order`, `payment` or `delivery`, for errors.
    const ENTITY: &'static str;
    /// The owning service, for errors.
    const STORE: &'static str;
    /// Loads by id: binds a JSON array of ids, returns one folded JSON array.
    const LOAD_BY_ID: &'static str;
    /// The kind of event a change of this aggregate emits.
    type EventType: Copy + Send;

    /// The aggregate's id.
    fn id(&self) -> &str;
    /// The event announcing `self` after a change of kind `event`.
    fn announce(&self, event: Self::EventType) -> DomainEvent;
    /// Writes the aggregates (insert or update) in as few statements as possible.
    fn save(
        conn: &mut SqliteConnection,
        items: &[&Self],
    ) -> impl Future<Output = Result<()>> + Send;
}

/// The error for an id no aggregate of kind `A` has.
pub(crate) fn not_found<A: Stored>(id: &str) -> OrderSystemError {
    OrderSystemError::NotFound {
        entity: A::ENTITY,
        id: id.to_owned(),
    }
}

/// Loads, in one statement, the aggregates whose key column is one of `ids`, keyed by `key`.
/// `select` binds the ids as one JSON array (`… IN (SELECT value FROM json_each(?))`) and
/// returns the rows folded into one JSON array of camelCase objects.
pub(crate) async fn load<A: Stored>(
    conn: &mut SqliteConnection,
    select: &'static str,
    ids: &[&str],
    key: fn(&A) -> &str,
) -> Result<Loaded<A>> {
    let ids = serde_json::to_string(ids).expect("a list of strings always serialises");
    let items = fetch_json_rows(sqlx::query(select).bind(ids), conn, A::STORE, "load").await?;
    Ok(Loaded::new(items, key))
}

/// The aggregate with this id.
pub(crate) async fn get<A: Stored>(db: &ServiceDb, id: &str) -> Result<A> {
    let mut conn = db
        .pool
        .acquire()
        .await
        .map_err(SqlError::at(A::STORE, "acquire"))?;
    load::<A>(&mut conn, A::LOAD_BY_ID, &[id], A::id)
        .await?
        .by_key
        .remove(id)
        .ok_or_else(|| not_found::<A>(id))
}

/// Runs a read returning one folded JSON array and sorts it by `key`: for pages and ranges.
pub(crate) async fn read_sorted<'q, A: Stored>(
    db: &ServiceDb,
    query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    key: fn(&A) -> &str,
) -> Result<Vec<A>> {
    let mut items: Vec<A> = fetch_json_rows(query, &db.pool, A::STORE, "read").await?;
    items.sort_unstable_by(|a, b| key(a).cmp(key(b)));
    Ok(items)
}

/// Runs commands on many aggregates in one transaction, in order (an aggregate may appear
/// more than once). A command the state machine refuses, or an unknown id, gets its own error
/// and changes nothing; a store error fails them all.
pub(crate) async fn command_many<A: Stored, C: Copy>(
    db: &ServiceDb,
    commands: &[(String, C)],
    run: impl Fn(&mut A, C) -> Result<A::EventType>,
) -> Result<Vec<Result<A>>> {
    let mut tx = db.begin(A::STORE).await?;
    let ids: Vec<&str> = commands.iter().map(|(id, _)| id.as_str()).collect();
    let mut loaded = load::<A>(&mut tx, A::LOAD_BY_ID, &ids, A::id).await?;
    let mut outcomes = Vec::with_capacity(commands.len());
    let mut events = Vec::new();
    for (id, command) in commands {
        let Some(aggregate) = loaded.by_key.get_mut(id) else {
            outcomes.push(Err(not_found::<A>(id)));
            continue;
        };
        match run(aggregate, *command) {
            Ok(event) => {
                events.push(aggregate.announce(event));
                outcomes.push(Ok(aggregate.clone()));
                loaded.touch(id);
            }
            Err(refused) => outcomes.push(Err(refused)),
        }
    }
    A::save(&mut tx, &loaded.changed()).await?;
    db.commit(tx, A::STORE, &events).await?;
    Ok(outcomes)
}

/// Runs one command through [`command_many`].
pub(crate) async fn command_one<A: Stored, C: Copy>(
    db: &ServiceDb,
    id: &str,
    command: C,
    run: impl Fn(&mut A, C) -> Result<A::EventType>,
) -> Result<A> {
    let mut outcomes = command_many(db, &[(id.to_owned(), command)], run).await?;
    outcomes.pop().expect("one outcome per command")
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
