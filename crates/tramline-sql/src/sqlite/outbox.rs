//! The SQLite outbox: appended to inside the service's own transaction, drained by the relay.

use super::{begin_write, WriteTx};
use crate::SqlError;
use sqlx::{Row, SqlitePool};
use tokio::sync::Notify;
use tramline_core::ports::{Outbox, OutboxBatch};
use tramline_core::{Envelope, Error};

const STORE: &str = "outbox";

const INSERT: &str = "INSERT INTO tramline_outbox (id, topic, msg_key, headers, payload, created_at) \
     VALUES (?, ?, ?, ?, ?, ?)";
const FETCH: &str = "SELECT seq, id, topic, msg_key, headers, payload, created_at \
     FROM tramline_outbox WHERE published_at IS NULL ORDER BY seq LIMIT ?";
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
        for m in messages {
            sqlx::query(INSERT)
                .bind(m.id.to_string())
                .bind(&m.topic)
                .bind(&m.key)
                .bind(m.headers_json())
                .bind(&m.payload)
                .bind(m.created_at_ms)
                .execute(&mut **tx)
                .await
                .map_err(SqlError::at(STORE, "append"))?;
        }
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
        let rows = sqlx::query(FETCH)
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(SqlError::at(STORE, "fetch unpublished"))?;
        let mut batch = OutboxBatch {
            positions: Vec::with_capacity(rows.len()),
            messages: Vec::with_capacity(rows.len()),
        };
        for row in rows {
            let id: String = row.get(1);
            let headers: String = row.get(4);
            let corrupt = |reason: String| Error::Store {
                store: STORE,
                operation: "decode stored message",
                transient: false,
                source: reason.into(),
            };
            batch.positions.push(row.get(0));
            batch.messages.push(Envelope {
                id: id
                    .parse()
                    .map_err(|e| corrupt(format!("message id {id:?}: {e}")))?,
                topic: row.get(2),
                key: row.get(3),
                headers: Envelope::parse_headers(&headers)
                    .map_err(|e| corrupt(format!("headers of {id}: {e}")))?,
                payload: row.get(5),
                created_at_ms: row.get(6),
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
