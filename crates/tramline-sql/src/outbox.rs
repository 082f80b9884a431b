//! The outbox: appended to inside the service's own transaction, drained by the relay.
//!
//! The decision to know: the relay reads *every* unpublished row in seq order on each fetch
//! and marks exactly the rows it published, by seq. It never trusts "seq > the last seq
//! published": on MariaDB and PostgreSQL seq is assigned at insert, so a transaction holding
//! seq 5 may commit after the one holding seq 6, and a high-water mark would skip 5 forever.
//! (Two messages of one aggregate cannot be reordered this way: the service locks the
//! aggregate's row, so the second transaction inserts its message only after the first
//! committed.)
//!
//! The outbox has two table layouts ([`OutboxLayout`]): tramline's own, and Eventuate Tram's
//! `message` table, where rows are ordered by their id (a time-ordered UUIDv7 when tramline
//! writes them) and marked by id, since that table has no sequence column.

use crate::db::{Conn, Writer};
use crate::{insert_rows, Db, Schema, SqlError};
use std::collections::BTreeMap;
use tokio::sync::Notify;
use tramline_core::eventuate::{self, EventuateMessage};
use tramline_core::ports::{Outbox, OutboxBatch, Pending};
use tramline_core::topics::TopicNames;
use tramline_core::{Envelope, Error};

const STORE: &str = "outbox";

/// A message as the fetch returns it.
type StoredMessage = (i64, String, String, String, String, String, i64);

/// Seqs marked per statement (a power of two: see `Stmt::bind_list`).
const MARK_CHUNK: usize = 512;

/// A message of the Eventuate layout as the fetch returns it: id, destination, headers,
/// payload, creation time.
type EventuateRow = (String, String, String, String, Option<i64>);

/// Which table an outbox lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutboxLayout {
    /// `tramline_outbox`: a sequence column orders the rows.
    #[default]
    Tramline,
    /// Eventuate Tram's `message` table: Eventuate's CDC can publish it, and tramline's relay
    /// can publish the outbox of an Eventuate service.
    Eventuate,
}

impl OutboxLayout {
    /// The schema that creates the layout's table.
    pub fn schema(self) -> Schema {
        match self {
            OutboxLayout::Tramline => Schema::Outbox,
            OutboxLayout::Eventuate => Schema::EventuateOutbox,
        }
    }
}

/// The outbox of one service database.
#[derive(Debug)]
pub struct SqlOutbox {
    db: Db,
    layout: OutboxLayout,
    /// How the transport names topics: the Eventuate layout's `destination` is a cluster
    /// name.
    topics: TopicNames,
    wakeup: Notify,
}

impl SqlOutbox {
    /// The outbox in `db` in tramline's layout (its schema must be migrated).
    pub fn new(db: Db) -> Self {
        SqlOutbox::with_layout(db, OutboxLayout::Tramline)
    }

    /// The outbox in `db` in `layout` (its schema must be migrated).
    pub fn with_layout(db: Db, layout: OutboxLayout) -> Self {
        SqlOutbox {
            db,
            layout,
            topics: TopicNames::default(),
            wakeup: Notify::new(),
        }
    }

    /// The outbox for a transport that names topics by `topics` (a Kafka prefix and
    /// renames). Only the Eventuate layout depends on it: its `destination` column and
    /// `DESTINATION` header hold the topic as the cluster names it, which is where Eventuate's
    /// CDC publishes a row, and a row's destination is mapped back to tramline's topic
    /// through `topics` when the relay reads it.
    pub fn with_topics(mut self, topics: TopicNames) -> Self {
        self.topics = topics;
        self
    }

    /// The table layout.
    pub fn layout(&self) -> OutboxLayout {
        self.layout
    }

    /// Adds messages inside one of the caller's own sqlx transactions (`&mut *tx`), so they
    /// commit with its writes; call [`SqlOutbox::notify`] after the commit. See [`Conn`].
    pub async fn append_in<'c>(
        &self,
        conn: impl Into<Conn<'c>>,
        messages: &[Envelope],
    ) -> Result<(), SqlError> {
        self.append(&mut conn.into(), messages).await
    }

    /// Adds messages inside the caller's transaction, so they commit with its state change.
    pub async fn append<W: Writer>(
        &self,
        tx: &mut W,
        messages: &[Envelope],
    ) -> Result<(), SqlError> {
        if self.layout == OutboxLayout::Eventuate {
            return append_eventuate(tx, messages, &self.topics).await;
        }
        insert_rows(
            tx,
            STORE,
            "append",
            "INSERT INTO tramline_outbox (id, topic, msg_key, headers, payload, created_at)",
            "",
            messages,
            |row, m| {
                row.bind(m.id.to_string())
                    .bind(&m.topic)
                    .bind(&m.key)
                    .bind(m.headers_json())
                    .bind(&m.payload)
                    .bind(m.created_at_ms);
            },
        )
        .await?;
        Ok(())
    }

    /// Tells the relay that a transaction wrote to the outbox; call after commit.
    pub fn notify(&self) {
        self.wakeup.notify_one();
    }

    /// Messages not yet published.
    pub async fn backlog(&self) -> Result<i64, SqlError> {
        let stmt = self.db.stmt(match self.layout {
            OutboxLayout::Tramline => {
                "SELECT COUNT(*) FROM tramline_outbox WHERE published_at IS NULL"
            }
            OutboxLayout::Eventuate => "SELECT COUNT(*) FROM message WHERE published = 0",
        });
        self.db.fetch_i64(&stmt, STORE, "count backlog").await
    }

    /// How many rows are unpublished and when the oldest was created, in one statement (a
    /// count over the unpublished rows' index, so the relay samples it only now and then).
    async fn pending_rows(&self) -> Result<Pending, SqlError> {
        let (table, unpublished, created) = match self.layout {
            OutboxLayout::Tramline => ("tramline_outbox", "published_at IS NULL", "created_at"),
            // creation_time is nullable in Eventuate's schema; MIN skips NULLs.
            OutboxLayout::Eventuate => ("message", "published = 0", "creation_time"),
        };
        let stmt = self.db.stmt(&format!(
            "SELECT {} FROM (SELECT COUNT(*) AS n, MIN({created}) AS oldest FROM {table} \
             WHERE {unpublished}) AS pending",
            self.db.dialect().json_tuples(&["n", "oldest"])
        ));
        let rows: Vec<(i64, Option<i64>)> =
            self.db.fetch_json(&stmt, STORE, "count pending").await?;
        let (count, oldest) = rows.first().copied().unwrap_or((0, None));
        Ok(Pending {
            count: u64::try_from(count).unwrap_or(0),
            oldest_created_at_ms: oldest,
        })
    }

    /// Up to `max` unpublished rows of the `message` table, in id order.
    async fn fetch_eventuate(&self, max: usize) -> Result<OutboxBatch, Error> {
        let d = self.db.dialect();
        let mut stmt = self.db.stmt(&format!(
            "SELECT {} FROM (SELECT id, destination, headers, payload, creation_time \
             FROM message WHERE published = 0 ORDER BY id LIMIT ",
            d.json_tuples(&["id", "destination", "headers", "payload", "creation_time"])
        ));
        stmt.bind(i64::try_from(max).unwrap_or(i64::MAX))
            .push(") AS batch");
        let mut rows: Vec<EventuateRow> = self
            .db
            .fetch_json(&stmt, STORE, "fetch unpublished")
            .await?;
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut batch = OutboxBatch::default();
        for (id, destination, headers, payload, creation_time) in rows {
            let undecodable = |e: &dyn std::fmt::Display| Error::Store {
                store: STORE.into(),
                operation: "decode stored message",
                retry: None,
                source: format!("message {id:?}: {e}").into(),
            };
            let mut headers: BTreeMap<String, String> =
                serde_json::from_str(&headers).map_err(|e| undecodable(&e))?;
            // Some Eventuate versions leave ID out of the headers and keep it in the column.
            headers
                .entry(eventuate::ID.to_owned())
                .or_insert_with(|| id.clone());
            let topic = self.topics.topic_of(&destination).to_owned();
            let mut envelope = EventuateMessage { payload, headers }
                .into_envelope(Some(&topic), creation_time)
                .map_err(|e| undecodable(&e))?;
            // The row goes where its destination says, as it says it: when the topic's own
            // cluster name is something else (a prefix would be added to a destination no
            // rename names), the message keeps its DESTINATION, which the transport obeys.
            if self.topics.cluster_name(&topic) != destination {
                envelope
                    .headers
                    .insert(eventuate::DESTINATION.to_owned(), destination);
            }
            batch.messages.push(envelope);
        }
        Ok(batch)
    }

    /// Marks rows of the `message` table published, by their ids.
    async fn mark_eventuate(&self, batch: &OutboxBatch) -> Result<(), Error> {
        if batch.messages.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = batch.messages.iter().map(EventuateMessage::id_of).collect();
        let mut tx = self.db.begin(STORE).await?;
        for chunk in ids.chunks(MARK_CHUNK) {
            let mut stmt = tx.stmt("UPDATE message SET published = 1 WHERE id IN ");
            stmt.bind_list(chunk.iter().cloned());
            tx.execute(&stmt, STORE, "mark published").await?;
        }
        tx.commit(STORE).await?;
        Ok(())
    }
}

/// Writes messages as Eventuate Tram's producer does: the destination as the cluster names
/// the topic, the four envelope headers in the headers JSON, `published = 0`.
async fn append_eventuate<W: Writer>(
    tx: &mut W,
    messages: &[Envelope],
    topics: &TopicNames,
) -> Result<(), SqlError> {
    insert_rows(
        tx,
        STORE,
        "append",
        "INSERT INTO message (id, destination, headers, payload, published, creation_time)",
        "",
        messages,
        |row, m| {
            let destination = EventuateMessage::destination_of(m, topics);
            let headers = EventuateMessage::headers_of(m, &destination);
            row.bind(EventuateMessage::id_of(m))
                .bind(destination)
                .bind(serde_json::to_string(&headers).expect("a string map serialises"))
                .bind(&m.payload)
                .bind(0i64)
                .bind(m.created_at_ms);
        },
    )
    .await?;
    Ok(())
}

fn decode(seq: i64, id: &str, what: &str) -> Result<uuid::Uuid, Error> {
    id.parse().map_err(|e| Error::Store {
        store: STORE.into(),
        operation: "decode stored message",
        retry: None,
        source: format!("outbox seq {seq}: {what} {id:?}: {e}").into(),
    })
}

impl Outbox for SqlOutbox {
    async fn fetch_unpublished(&self, max: usize) -> Result<OutboxBatch, Error> {
        if self.layout == OutboxLayout::Eventuate {
            return self.fetch_eventuate(max).await;
        }
        let d = self.db.dialect();
        let mut stmt = self.db.stmt(&format!(
            "SELECT {} FROM (SELECT seq, id, topic, msg_key, headers, payload, created_at \
             FROM tramline_outbox WHERE published_at IS NULL ORDER BY seq LIMIT ",
            d.json_tuples(&[
                "seq",
                "id",
                "topic",
                "msg_key",
                "headers",
                "payload",
                "created_at"
            ])
        ));
        stmt.bind(i64::try_from(max).unwrap_or(i64::MAX))
            .push(") AS batch");
        let mut rows: Vec<StoredMessage> = self
            .db
            .fetch_json(&stmt, STORE, "fetch unpublished")
            .await?;
        rows.sort_unstable_by_key(|r| r.0);
        let mut batch = OutboxBatch {
            positions: Vec::with_capacity(rows.len()),
            messages: Vec::with_capacity(rows.len()),
        };
        for (seq, id, topic, key, headers, payload, created_at_ms) in rows {
            let headers: BTreeMap<String, String> =
                serde_json::from_str(&headers).map_err(|e| Error::Store {
                    store: STORE.into(),
                    operation: "decode stored message",
                    retry: None,
                    source: format!("outbox seq {seq}: headers: {e}").into(),
                })?;
            batch.positions.push(seq);
            batch.messages.push(Envelope {
                id: decode(seq, &id, "message id")?,
                topic,
                key,
                headers,
                payload,
                created_at_ms,
            });
        }
        Ok(batch)
    }

    async fn mark_published(&self, batch: &OutboxBatch) -> Result<(), Error> {
        if self.layout == OutboxLayout::Eventuate {
            return self.mark_eventuate(batch).await;
        }
        if batch.positions.is_empty() {
            return Ok(());
        }
        let now = tramline_core::envelope::now_ms();
        let mut tx = self.db.begin(STORE).await?;
        for chunk in batch.positions.chunks(MARK_CHUNK) {
            let mut stmt = tx.stmt("UPDATE tramline_outbox SET published_at = ");
            stmt.bind(now)
                .push(" WHERE published_at IS NULL AND seq IN ")
                .bind_list(chunk.iter().copied());
            tx.execute(&stmt, STORE, "mark published").await?;
        }
        tx.commit(STORE).await?;
        Ok(())
    }

    fn wakeup(&self) -> &Notify {
        &self.wakeup
    }

    async fn pending(&self) -> Result<Option<Pending>, Error> {
        Ok(Some(self.pending_rows().await?))
    }
}
