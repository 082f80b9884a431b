//! The command services. Each owns its database and writes its state change and the event
//! messages describing it in one transaction; none of them knows who consumes the events.
//!
//! Every service reads and writes its aggregates in bulk — one statement loads all the
//! aggregates a batch touches, one multi-row upsert saves the changed ones — because round
//! trips, not rows, are what a batch costs.

pub mod delivery;
pub mod order;
pub mod payment;
pub mod request;
mod subscriber;

pub use subscriber::{Reaction, Subscriber};

use crate::error::{OrderSystemError, Result};
use crate::events::DomainEvent;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::Arc;
use tramline_core::topics::TopicNames;
use tramline_sql::db::Tuple;
use tramline_sql::{
    insert_rows, migrate, Assign, Db, DbOptions, Dialect, IdempotencyStore, LockMode, OutboxLayout,
    Schema, SqlError, SqlOutbox, Stmt, Tx,
};

/// A service's database: its own tables, its outbox, its inbox and its idempotency records.
#[derive(Debug, Clone)]
pub struct ServiceDb {
    /// The database.
    pub db: Db,
    /// The outbox the service's relay drains.
    pub outbox: Arc<SqlOutbox>,
    /// The responses of commands sent with an `Idempotency-Key`. They are kept until purged:
    /// the process serving the API calls `idempotency.purge_older_than(
    /// IdempotencyStore::DEFAULT_RETENTION)` (24 h) periodically.
    pub idempotency: IdempotencyStore,
}

/// A component's versioned migrations for a dialect.
pub type Migrations = fn(Dialect) -> sqlx::migrate::Migrator;

impl ServiceDb {
    /// Opens the database at `url` and applies the outbox, inbox, idempotency and service
    /// migrations.
    pub async fn open(url: &str, options: &DbOptions, service: Migrations) -> Result<Self> {
        let tramline = OutboxLayout::Tramline;
        ServiceDb::open_with_layout(url, options, service, tramline, TopicNames::default()).await
    }

    /// As [`ServiceDb::open`], with the outbox in `layout` (Eventuate's `message` table, for
    /// a service whose outbox Eventuate's CDC publishes), its destinations named as the
    /// transport names topics (`topics`: a Kafka prefix and renames).
    pub async fn open_with_layout(
        url: &str,
        options: &DbOptions,
        service: Migrations,
        layout: OutboxLayout,
        topics: TopicNames,
    ) -> Result<Self> {
        let db = Db::connect(url, options).await?;
        migrate(
            &db,
            &[
                layout.schema(),
                Schema::Inbox,
                Schema::Idempotency,
                Schema::Election,
            ],
        )
        .await?;
        db.run_migrator(&mut service(db.dialect())).await?;
        let outbox = SqlOutbox::with_layout(db.clone(), layout).with_topics(topics);
        Ok(ServiceDb {
            outbox: Arc::new(outbox),
            idempotency: IdempotencyStore::new(db.clone()),
            db,
        })
    }

    /// Starts a write transaction for `store`.
    pub async fn begin(&self, store: &'static str) -> Result<Tx, SqlError> {
        self.db.begin(store).await
    }

    /// Appends the events to the outbox in `tx`, commits, and wakes the relay.
    ///
    /// Every command commits here, so this is where the HTTP request it runs for (see
    /// [`request`]) is written down in the same transaction: its trace context goes into the
    /// messages' headers, and, for a request with an `Idempotency-Key`, the response (the
    /// first event's snapshot, with the route's status and `Location`) into the idempotency
    /// records. If another request recorded the key first, the insert fails on the key, the
    /// transaction rolls back, and the claim says so, for the HTTP layer to replay the other's
    /// response.
    pub async fn commit(
        &self,
        mut tx: Tx,
        store: &'static str,
        events: &[DomainEvent],
    ) -> Result<(), SqlError> {
        let prepared = self.prepare(events);
        self.write(&mut tx, &prepared).await?;
        tx.commit(store).await?;
        if !prepared.messages.is_empty() {
            self.outbox.notify();
        }
        Ok(())
    }

    /// What committing `events` writes besides the command's state — its messages, stamped
    /// with the request's trace context, and the request's idempotency record — read from the
    /// request being served in this task (see [`request`]), so that another task (a group
    /// commit's) can write it.
    pub(crate) fn prepare(&self, events: &[DomainEvent]) -> Prepared {
        let mut messages: Vec<_> = events.iter().map(DomainEvent::to_envelope).collect();
        request::stamp(&mut messages);
        let record = request::record(events, &messages);
        Prepared { messages, record }
    }

    /// Writes `prepared` in `tx`: the messages to the outbox, the idempotency record (a
    /// duplicate key tells the claim it lost).
    pub(crate) async fn write(&self, tx: &mut Tx, prepared: &Prepared) -> Result<(), SqlError> {
        self.outbox.append(tx, &prepared.messages).await?;
        if let Some((claim, record)) = &prepared.record {
            self.idempotency.insert(tx, record).await.inspect_err(|e| {
                if e.is_duplicate() {
                    claim.lose();
                }
            })?;
        }
        Ok(())
    }
}

/// A command's messages and idempotency record, taken from its request by
/// [`ServiceDb::prepare`].
#[derive(Debug)]
pub(crate) struct Prepared {
    messages: Vec<tramline_core::Envelope>,
    record: Option<(
        Arc<request::IdempotencyClaim>,
        tramline_sql::IdempotencyRecord,
    )>,
}

/// A fresh id for a new aggregate: a UUIDv7, so ids sort by creation time.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// An aggregate a service stores: its table, how it is announced, how a row is bound. The
/// operations below (load, save, commands, ranges) are written once against it.
pub(crate) trait Stored: Clone + DeserializeOwned + Send + Sync + 'static {
    /// `order`, `payment` or `delivery`, for errors.
    const ENTITY: &'static str;
    /// The owning service, for errors.
    const STORE: &'static str;
    /// The aggregate's table.
    const TABLE: &'static str;
    /// `(camelCase JSON key, column)` of every stored field, the id first: the JSON object
    /// the aggregate deserialises from.
    const FIELDS: &'static [(&'static str, &'static str)];
    /// Columns a save may change on an existing row (besides `updated_at`).
    const MUTABLE: &'static [&'static str];
    /// The kind of event a change of this aggregate emits.
    type EventType: Copy + Send;

    /// The aggregate's id.
    fn id(&self) -> &str;
    /// The event announcing `self` after a change of kind `event`.
    fn announce(&self, event: Self::EventType) -> DomainEvent;
    /// Binds the values of [`Stored::FIELDS`], in order.
    fn bind(&self, row: &mut Tuple<'_>);
}

/// The error for an id no aggregate of kind `A` has.
pub(crate) fn not_found<A: Stored>(id: &str) -> OrderSystemError {
    OrderSystemError::NotFound {
        entity: A::ENTITY,
        id: id.to_owned(),
    }
}

/// A read of `A`'s rows folded into one JSON array; the caller writes the table (or a
/// subquery) and `WHERE …`, then the returned suffix.
pub(crate) fn select<A: Stored>(dialect: Dialect, lock: Option<LockMode>) -> (Stmt, String) {
    let (prefix, suffix) = dialect.json_select(&dialect.json_objects(A::FIELDS), lock);
    (Stmt::new(dialect, &prefix), suffix)
}

/// Loads and locks, in one statement, the aggregates whose `column` is one of `ids`, keyed by
/// `key`. The rows stay locked until `tx` ends, so concurrent commands on one aggregate run
/// one after the other and neither loses the other's change.
pub(crate) async fn load<A: Stored>(
    tx: &mut Tx,
    column: &str,
    ids: &[&str],
    key: fn(&A) -> &str,
) -> Result<Loaded<A>> {
    let (mut stmt, suffix) = select::<A>(tx.dialect(), Some(LockMode::Update));
    stmt.push(&format!("{} WHERE {column} IN ", A::TABLE))
        .bind_list(ids.iter().copied())
        .push(&suffix);
    let items = tx.fetch_json(&stmt, A::STORE, "load").await?;
    Ok(Loaded::new(items, key))
}

/// Saves (inserts or updates) the aggregates in as few statements as possible, in id order
/// so that concurrent saves lock rows in one order.
pub(crate) async fn save<A: Stored>(tx: &mut Tx, items: &[&A]) -> Result<()> {
    let mut items = items.to_vec();
    items.sort_unstable_by(|a, b| a.id().cmp(b.id()));
    let columns: Vec<&str> = A::FIELDS.iter().map(|(_, c)| *c).collect();
    let insert = format!(
        "INSERT INTO {} ({}, updated_at)",
        A::TABLE,
        columns.join(", ")
    );
    let assigns: Vec<Assign<'_>> = A::MUTABLE
        .iter()
        .chain(&["updated_at"])
        .map(|c| Assign::New(c))
        .collect();
    let upsert = tx
        .dialect()
        .upsert(A::TABLE, &[A::FIELDS[0].1], &assigns, None);
    let now = tramline_core::envelope::now_ms();
    insert_rows(tx, A::STORE, "save", &insert, &upsert, &items, |row, a| {
        a.bind(row);
        row.bind(now);
    })
    .await?;
    Ok(())
}

/// The aggregate with this id.
pub(crate) async fn get<A: Stored>(db: &ServiceDb, id: &str) -> Result<A> {
    let (mut stmt, suffix) = select::<A>(db.db.dialect(), None);
    stmt.push(&format!("{} WHERE {} = ", A::TABLE, A::FIELDS[0].1))
        .bind(id)
        .push(&suffix);
    db.db
        .fetch_json::<A>(&stmt, A::STORE, "get")
        .await?
        .pop()
        .ok_or_else(|| not_found::<A>(id))
}

/// The aggregates whose order id is in (`after`, `upto`], in order id order: the slice of a
/// keyset page of orders that verification compares.
pub(crate) async fn for_orders_in<A: Stored>(
    db: &ServiceDb,
    after: &str,
    upto: Option<&str>,
    order_id: fn(&A) -> &str,
) -> Result<Vec<A>> {
    let (mut stmt, _) = select::<A>(db.db.dialect(), None);
    stmt.push(A::TABLE).push(" WHERE order_id > ").bind(after);
    if let Some(upto) = upto {
        stmt.push(" AND order_id <= ").bind(upto);
    }
    let mut items: Vec<A> = db.db.fetch_json(&stmt, A::STORE, "read range").await?;
    items.sort_unstable_by(|a, b| order_id(a).cmp(order_id(b)));
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
    let mut loaded = load::<A>(&mut tx, A::FIELDS[0].1, &ids, A::id).await?;
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
    save(&mut tx, &loaded.changed()).await?;
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
