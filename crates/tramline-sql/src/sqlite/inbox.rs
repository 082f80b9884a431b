//! Dedupe records and parked messages of a consumer, kept in the consumer's own database so
//! that the dedupe record commits in the same transaction as the effect.

use super::{begin_write, WriteTx};
use crate::SqlError;
use sqlx::{QueryBuilder, Sqlite, SqlitePool};
use std::collections::HashSet;
use tramline_core::{Error, Record};

const STORE: &str = "inbox";

// On SQLite the changes() count after INSERT … DO NOTHING is exact, so it is the dedupe
// signal. (Not so on MariaDB; that dialect must not copy this.)
const CLAIM: &str = "INSERT INTO tramline_inbox (consumer, message_id, received_at) \
     VALUES (?, ?, ?) ON CONFLICT DO NOTHING";
/// Rows per multi-row claim (3 parameters each, well under SQLite's parameter limit).
const CLAIM_CHUNK: usize = 300;
const PARK: &str = "INSERT INTO tramline_parked \
     (consumer, message_id, topic, part, log_offset, msg_key, headers, payload, reason, parked_at) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// The inbox of one consumer (one consumer name in one database).
#[derive(Debug, Clone)]
pub struct Inbox {
    consumer: String,
}

impl Inbox {
    /// The inbox of consumer `consumer`.
    pub fn new(consumer: impl Into<String>) -> Self {
        Inbox {
            consumer: consumer.into(),
        }
    }

    /// Records that the message is being applied in `tx`; false if it was applied before, in
    /// which case the caller must skip its effect.
    pub async fn claim(&self, tx: &mut WriteTx, record: &Record) -> Result<bool, SqlError> {
        let done = sqlx::query(CLAIM)
            .bind(&self.consumer)
            .bind(record.envelope.id.to_string())
            .bind(tramline_core::envelope::now_ms())
            .execute(&mut **tx)
            .await
            .map_err(SqlError::at(STORE, "record message id"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Claims every record of a batch in as few statements as possible; returns the message
    /// ids that were new. An id twice in the batch is claimed once.
    pub async fn claim_batch(
        &self,
        tx: &mut WriteTx,
        records: &[Record],
    ) -> Result<HashSet<String>, SqlError> {
        let now = tramline_core::envelope::now_ms();
        let mut claimed = HashSet::with_capacity(records.len());
        for chunk in records.chunks(CLAIM_CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO tramline_inbox (consumer, message_id, received_at) ",
            );
            q.push_values(chunk, |mut row, r| {
                row.push_bind(self.consumer.clone())
                    .push_bind(r.envelope.id.to_string())
                    .push_bind(now);
            });
            // RETURNING lists only the rows actually inserted: exactly the new ids.
            q.push(" ON CONFLICT DO NOTHING RETURNING message_id");
            let ids: Vec<String> = q
                .build_query_scalar()
                .fetch_all(&mut **tx)
                .await
                .map_err(SqlError::at(STORE, "record message ids"))?;
            claimed.extend(ids);
        }
        Ok(claimed)
    }

    /// Keeps a message that can never be applied, with the reason, and marks its id handled.
    pub async fn park(
        &self,
        pool: &SqlitePool,
        record: &Record,
        reason: &Error,
    ) -> Result<(), SqlError> {
        let mut tx = begin_write(pool, STORE).await?;
        self.claim(&mut tx, record).await?;
        let e = &record.envelope;
        sqlx::query(PARK)
            .bind(&self.consumer)
            .bind(e.id.to_string())
            .bind(&e.topic)
            .bind(record.partition)
            .bind(record.offset)
            .bind(&e.key)
            .bind(e.headers_json())
            .bind(&e.payload)
            .bind(reason.to_string())
            .bind(tramline_core::envelope::now_ms())
            .execute(&mut *tx)
            .await
            .map_err(SqlError::at(STORE, "park message"))?;
        tx.commit()
            .await
            .map_err(SqlError::at(STORE, "commit park"))
    }

    /// How many messages this consumer has parked.
    pub async fn parked(&self, pool: &SqlitePool) -> Result<i64, SqlError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM tramline_parked WHERE consumer = ?")
            .bind(&self.consumer)
            .fetch_one(pool)
            .await
            .map_err(SqlError::at(STORE, "count parked"))
    }
}
