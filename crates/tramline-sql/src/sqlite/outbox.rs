//! The SQLite outbox: appended to inside the service's own transaction, drained by the relay.

use super::{begin_write, fetch_json_rows, insert_rows, WriteTx};
use crate::SqlError;
use sqlx::SqlitePool;
use std::collections::BTreeMap;
use tokio::sync::Notify;
use tramline_core::ports::{Outbox, OutboxBatch};
use tramline_core::{Envelope, Error};

const STORE: &str = "outbox";

// Folds the batch into one JSON array: see `fetch_json_rows`.
const FETCH: &str = "SELECT json_group_array(json_array(seq, id, topic, msg_key, json(headers), \
     payload, created_at)) FROM (SELECT seq, id, topic, msg_key, headers, payload, created_at \
     FROM tramline_outbox WHERE published_at IS NULL ORDER BY seq LIMIT ?)";

/// A message as `FETCH` returns it.
type StoredMessage = (
    i64,
    String,
    String,
    String,
    BTreeMap<String, String>,
    String,
    i64,
);
// Marks a contiguous range: a batch is a prefix of the unpublished rows in seq order, and
// nothing can commit into the middle of it later (seq is assigned under the write lock).
const MARK: &str = "UPDATE tramline_outbox SET published_at = ? \
     WHERE seq BETWEEN ? AND ? AND published_at IS NULL";

/// The outbox of one service database.
#[derive(Debug)]
pub struct SqliteOutbox {
    pool: SqlitePool,
    wakeup: Notify,
}

impl SqliteOutbox {
    /// The outbox in `pool`'s database (its schema must be migrated).
    pub fn new(pool: SqlitePool) -> Self {
        SqliteOutbox {
            pool,
            wakeup: Notify::new(),
        }
    }

    /// Adds messages inside the caller's transaction, so they commit with its state change.
    pub async fn append(tx: &mut WriteTx, messages: &[Envelope]) -> Result<(), SqlError> {
        insert_rows(
            tx,
            STORE,
            "append",
            "INSERT INTO tramline_outbox (id, topic, msg_key, headers, payload, created_at) ",
            "",
            messages,
            |row, m| {
                row.push_bind(m.id.to_string())
                    .push_bind(m.topic.clone())
                    .push_bind(m.key.clone())
                    .push_bind(m.headers_json())
                    .push_bind(m.payload.clone())
                    .push_bind(m.created_at_ms);
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
        sqlx::query_scalar("SELECT COUNT(*) FROM tramline_outbox WHERE published_at IS NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(SqlError::at(STORE, "count backlog"))
    }
}

impl Outbox for SqliteOutbox {
    async fn fetch_unpublished(&self, max: usize) -> Result<OutboxBatch, Error> {
        let mut rows: Vec<StoredMessage> = fetch_json_rows(
            sqlx::query(FETCH).bind(i64::try_from(max).unwrap_or(i64::MAX)),
            &self.pool,
            STORE,
            "fetch unpublished",
        )
        .await?;
        rows.sort_unstable_by_key(|r| r.0);
        let mut batch = OutboxBatch {
            positions: Vec::with_capacity(rows.len()),
            messages: Vec::with_capacity(rows.len()),
        };
        for (seq, id, topic, key, headers, payload, created_at_ms) in rows {
            batch.positions.push(seq);
            batch.messages.push(Envelope {
                id: id.parse().map_err(|e| Error::Store {
                    store: STORE,
                    operation: "decode stored message",
                    transient: false,
                    source: format!("outbox seq {seq}: message id {id:?}: {e}").into(),
                })?,
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
        let (Some(first), Some(last)) = (batch.positions.first(), batch.positions.last()) else {
            return Ok(());
        };
        let mut tx = begin_write(&self.pool, STORE).await?;
        sqlx::query(MARK)
            .bind(tramline_core::envelope::now_ms())
            .bind(first)
            .bind(last)
            .execute(&mut *tx)
            .await
            .map_err(SqlError::at(STORE, "mark published"))?;
        tx.commit()
            .await
            .map_err(SqlError::at(STORE, "commit mark published"))?;
        Ok(())
    }

    fn wakeup(&self) -> &Notify {
        &self.wakeup
    }
}
