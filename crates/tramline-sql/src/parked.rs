//! Parked messages: what a consumer could not apply, kept in its own database
//! (`tramline_parked`) with the error, for an operator to look at, retry or skip.
//!
//! A message is parked when it cannot be decoded, or when its handler fails on it with an
//! error that condemns the message rather than the system (the database refused the data: a
//! check, not-null or foreign-key constraint, a trigger's error, a value out of range). Under
//! [`ParkPolicy::HoldKey`], the default, the parked message holds its key: later messages of
//! that key are parked behind it (`held`) so the key's order is kept, while every other key
//! flows on. An operator then:
//! - **retries** it ([`crate::TransactionalConsumer::retry_parked`]): the key's parked
//!   messages are applied again, in order, each in one transaction with its dedupe record
//!   (so nothing is applied twice), until one fails again (it stays parked, with the new
//!   error) or none is left;
//! - **skips** it ([`crate::TransactionalConsumer::skip_parked`]): the message is recorded as
//!   handled without being applied (a redelivered copy is a duplicate), then the messages
//!   held behind it are retried.

use crate::{Db, SqlError};
use serde::Serialize;
use tramline_core::{Envelope, Record};

const STORE: &str = "parked";

/// What a consumer does with the later messages of a parked message's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParkPolicy {
    /// Park them behind it, keeping the key's order (the default).
    #[default]
    #[serde(rename = "key")]
    HoldKey,
    /// Apply them: only the message itself is parked.
    Message,
}

/// A parked message, as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParkedMessage {
    /// Its number in this database's parked messages.
    pub id: i64,
    /// The consumer (group) that parked it.
    pub consumer: String,
    /// The message id.
    pub message_id: String,
    /// Where it was read.
    pub topic: String,
    /// Its partition.
    pub partition: i64,
    /// Its offset.
    pub offset: i64,
    /// Its key.
    pub key: String,
    /// Its headers (a JSON object).
    pub headers: String,
    /// Its payload, as received (untrusted).
    pub payload: String,
    /// Why it was parked.
    pub reason: String,
    /// When (ms since the Unix epoch).
    pub parked_at: i64,
    /// Whether it is held behind an earlier parked message of its key, rather than failed
    /// itself.
    pub held: bool,
    /// When its outbox row was written (ms since the Unix epoch; 0 if unknown).
    pub created_at: i64,
}

/// The columns read, in [`ParkedMessage`]'s order.
const COLUMNS: [&str; 13] = [
    "id",
    "consumer",
    "message_id",
    "topic",
    "part",
    "log_offset",
    "msg_key",
    "headers",
    "payload",
    "reason",
    "parked_at",
    "held",
    "created_at",
];

type Row = (
    i64,
    String,
    String,
    String,
    i64,
    i64,
    String,
    String,
    String,
    String,
    i64,
    i64,
    i64,
);

impl ParkedMessage {
    fn from_row(r: Row) -> Self {
        ParkedMessage {
            id: r.0,
            consumer: r.1,
            message_id: r.2,
            topic: r.3,
            partition: r.4,
            offset: r.5,
            key: r.6,
            headers: r.7,
            payload: r.8,
            reason: r.9,
            parked_at: r.10,
            held: r.11 != 0,
            created_at: r.12,
        }
    }

    /// The record as it was received, to apply again.
    pub fn record(&self) -> Result<Record, ParkedError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| ParkedError::Corrupt {
            id: self.id,
            what: format!("{what}: {e}"),
        };
        let id = self.message_id.parse().map_err(|e| bad("message id", &e))?;
        let headers = Envelope::parse_headers(&self.headers).map_err(|e| bad("headers", &e))?;
        Ok(Record {
            envelope: Envelope {
                id,
                topic: self.topic.clone(),
                key: self.key.clone(),
                headers,
                payload: self.payload.clone(),
                created_at_ms: self.created_at,
            },
            partition: i32::try_from(self.partition).map_err(|e| bad("partition", &e))?,
            offset: self.offset,
        })
    }
}

/// Which parked messages to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParkedFilter {
    /// Only this consumer's.
    pub consumer: Option<String>,
    /// Only this key's.
    pub key: Option<String>,
    /// Only those numbered after this (keyset paging).
    pub after: Option<i64>,
    /// At most this many (all when `None`).
    pub limit: Option<i64>,
}

/// Why an operation on a parked message failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParkedError {
    /// No parked message has this number.
    #[error("no parked message {0}")]
    NotFound(i64),
    /// The message was parked by another consumer than the one asked to handle it.
    #[error("parked message {id} belongs to consumer {consumer}")]
    OtherConsumer {
        /// The message's number.
        id: i64,
        /// Its consumer.
        consumer: String,
    },
    /// The message is held behind an earlier one of its key, which must be handled first.
    #[error(
        "parked message {id} is held behind message {first} of its key; skip or retry {first}"
    )]
    NotFirst {
        /// The message asked for.
        id: i64,
        /// The first parked message of its key.
        first: i64,
    },
    /// A stored field cannot be read back.
    #[error("parked message {id} is unreadable ({what})")]
    Corrupt {
        /// The message's number.
        id: i64,
        /// What is wrong.
        what: String,
    },
    /// The database failed.
    #[error("cannot read or change the parked messages")]
    Store(#[from] SqlError),
    /// Applying failed with an error a later try may not meet (the database unreachable):
    /// nothing was changed for the message being applied.
    #[error("applying a parked message failed; it stays parked")]
    Apply(#[source] tramline_core::Error),
}

/// The parked messages of `db` that `filter` selects, in the order they were parked.
pub async fn list(db: &Db, filter: &ParkedFilter) -> Result<Vec<ParkedMessage>, SqlError> {
    let d = db.dialect();
    let mut stmt = db.stmt(&format!(
        "SELECT {} FROM (SELECT {} FROM tramline_parked WHERE id > ",
        d.json_tuples(&COLUMNS),
        COLUMNS.join(", ")
    ));
    stmt.bind(filter.after.unwrap_or(i64::MIN));
    if let Some(consumer) = &filter.consumer {
        stmt.push(" AND consumer = ").bind(consumer);
    }
    if let Some(key) = &filter.key {
        stmt.push(" AND msg_key = ").bind(key);
    }
    stmt.push(" ORDER BY id");
    if let Some(limit) = filter.limit {
        stmt.push(" LIMIT ").bind(limit.max(0));
    }
    stmt.push(") AS parked");
    let rows: Vec<Row> = db.fetch_json(&stmt, STORE, "list parked messages").await?;
    let mut parked: Vec<ParkedMessage> = rows.into_iter().map(ParkedMessage::from_row).collect();
    parked.sort_unstable_by_key(|m| m.id);
    Ok(parked)
}

/// Parked message `id` of `db`, if there is one.
pub async fn get(db: &Db, id: i64) -> Result<Option<ParkedMessage>, SqlError> {
    let d = db.dialect();
    let mut stmt = db.stmt(&format!(
        "SELECT {} FROM tramline_parked WHERE id = ",
        d.json_tuples(&COLUMNS)
    ));
    stmt.bind(id);
    let rows: Vec<Row> = db.fetch_json(&stmt, STORE, "read a parked message").await?;
    Ok(rows.into_iter().next().map(ParkedMessage::from_row))
}

/// The first parked message of `consumer`'s key `key`, if any.
pub(crate) async fn first_of_key(
    db: &Db,
    consumer: &str,
    key: &str,
) -> Result<Option<ParkedMessage>, SqlError> {
    let filter = ParkedFilter {
        consumer: Some(consumer.to_owned()),
        key: Some(key.to_owned()),
        after: None,
        limit: Some(1),
    };
    Ok(list(db, &filter).await?.into_iter().next())
}

/// What a retry or a skip did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Released {
    /// Parked messages applied now, by number.
    pub applied: Vec<i64>,
    /// Parked messages found applied already (a duplicate), removed.
    pub duplicates: Vec<i64>,
    /// The message skipped, if any.
    pub skipped: Option<i64>,
    /// The message that failed again and stays parked (holding its key), with the error.
    pub still_parked: Option<(i64, String)>,
}

/// A boxed future, for [`ParkedOps`] to be used as a trait object.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The operator's operations on one consumer's parked messages, as a trait object: a
/// process holds one per consumer whatever its handler (`tramline parked`, the admin API).
pub trait ParkedOps: Send + Sync {
    /// The consumer (group) whose parked messages these are.
    fn consumer(&self) -> &str;
    /// The database they are in.
    fn db(&self) -> &Db;
    /// See [`crate::TransactionalConsumer::retry_parked`].
    fn retry(&self, id: i64) -> BoxFuture<'_, Result<Released, ParkedError>>;
    /// See [`crate::TransactionalConsumer::skip_parked`].
    fn skip(&self, id: i64) -> BoxFuture<'_, Result<Released, ParkedError>>;
}

impl<A: crate::Apply> ParkedOps for crate::TransactionalConsumer<A> {
    fn consumer(&self) -> &str {
        self.inbox().consumer()
    }

    fn db(&self) -> &Db {
        crate::TransactionalConsumer::db(self)
    }

    fn retry(&self, id: i64) -> BoxFuture<'_, Result<Released, ParkedError>> {
        Box::pin(self.retry_parked(id))
    }

    fn skip(&self, id: i64) -> BoxFuture<'_, Result<Released, ParkedError>> {
        Box::pin(self.skip_parked(id))
    }
}
