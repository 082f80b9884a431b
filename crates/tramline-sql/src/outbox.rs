//! The outbox: appended to inside the service's own transaction, drained by the relay.
//!
//! The decision to know: the relay reads *every* unpublished row in seq order on each fetch
//! and marks exactly the rows it published, by seq. It never trusts "seq > the last seq
//! published": on MariaDB and PostgreSQL seq is assigned at insert, so a transaction holding
//! seq 5 may commit after the one holding seq 6, and a high-water mark would skip 5 forever.
//! (Two messages of one aggregate cannot be reordered this way: the service locks the
//! aggregate's row, so the second transaction inserts its message only after the first
//! committed.)

use crate::{insert_rows, Db, SqlError, Tx};
use std::collections::BTreeMap;
use tokio::sync::Notify;
use tramline_core::ports::{Outbox, OutboxBatch};
use tramline_core::{Envelope, Error};

const STORE: &str = "outbox";

/// A message as the fetch returns it.
type StoredMessage = (i64, String, String, String, String, String, i64);

/// Seqs marked per statement (a power of two: see `Stmt::bind_list`).
const MARK_CHUNK: usize = 512;

/// The outbox of one service database.
#[derive(Debug)]
pub struct SqlOutbox {
    db: Db,
    wakeup: Notify,
}

impl SqlOutbox {
    /// The outbox in `db` (its schema must be migrated).
    pub fn new(db: Db) -> Self {
        SqlOutbox {
            db,
            wakeup: Notify::new(),
        }
    }

    /// Adds messages inside the caller's transaction, so they commit with its state change.
    pub async fn append(tx: &mut Tx, messages: &[Envelope]) -> Result<(), SqlError> {
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
        let stmt = self
            .db
            .stmt("SELECT COUNT(*) FROM tramline_outbox WHERE published_at IS NULL");
        self.db.fetch_i64(&stmt, STORE, "count backlog").await
    }
}

fn decode(seq: i64, id: &str, what: &str) -> Result<uuid::Uuid, Error> {
    id.parse().map_err(|e| Error::Store {
        store: STORE,
        operation: "decode stored message",
        retry: None,
        source: format!("outbox seq {seq}: {what} {id:?}: {e}").into(),
    })
}

impl Outbox for SqlOutbox {
    async fn fetch_unpublished(&self, max: usize) -> Result<OutboxBatch, Error> {
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
                    store: STORE,
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
}
