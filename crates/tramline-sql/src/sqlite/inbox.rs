//! Dedupe records and parked messages of a consumer, kept in the consumer's own database so
//! that the dedupe record commits in the same transaction as the effect.

use super::{begin_write, fetch_json_rows, insert_rows, WriteTx};
use crate::SqlError;
use sqlx::SqlitePool;
use std::collections::HashSet;
use tramline_core::{Error, Record};

const STORE: &str = "inbox";

// Folds the ids already recorded into one JSON array: see `fetch_json_rows`.
const SEEN: &str = "SELECT json_group_array(message_id) FROM tramline_inbox \
     WHERE consumer = ? AND message_id IN (SELECT value FROM json_each(?))";
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

    /// Claims every record of a batch in two statements: for each record, in order, whether
    /// it is new (apply it) or was applied before (skip it). A second copy of an id in the
    /// same batch is not new. The look-up and the insert are safe together because `tx` holds
    /// SQLite's write lock: no other transaction can claim an id in between. (Rows-affected is
    /// not used as the signal, so the mechanism carries over to dialects where it is not
    /// reliable.)
    pub async fn claim(&self, tx: &mut WriteTx, records: &[Record]) -> Result<Vec<bool>, SqlError> {
        let ids: Vec<String> = records.iter().map(|r| r.envelope.id.to_string()).collect();
        let ids_json = serde_json::to_string(&ids).expect("a list of strings always serialises");
        let seen: HashSet<String> = fetch_json_rows::<String, _>(
            sqlx::query(SEEN).bind(&self.consumer).bind(ids_json),
            &mut **tx,
            STORE,
            "look up message ids",
        )
        .await?
        .into_iter()
        .collect();
        let mut claimed: HashSet<&str> = HashSet::with_capacity(ids.len());
        let fresh: Vec<bool> = ids
            .iter()
            .map(|id| !seen.contains(id) && claimed.insert(id))
            .collect();
        let new_ids: Vec<&String> = ids
            .iter()
            .zip(&fresh)
            .filter(|(_, f)| **f)
            .map(|(id, _)| id)
            .collect();
        let now = tramline_core::envelope::now_ms();
        insert_rows(
            tx,
            STORE,
            "record message ids",
            "INSERT INTO tramline_inbox (consumer, message_id, received_at) ",
            " ON CONFLICT DO NOTHING",
            &new_ids,
            |row, id| {
                row.push_bind(self.consumer.clone())
                    .push_bind((*id).clone())
                    .push_bind(now);
            },
        )
        .await?;
        Ok(fresh)
    }

    /// Keeps a message that can never be applied, with the reason, and marks its id handled.
    pub async fn park(
        &self,
        pool: &SqlitePool,
        record: &Record,
        reason: &Error,
    ) -> Result<(), SqlError> {
        let mut tx = begin_write(pool, STORE).await?;
        self.claim(&mut tx, std::slice::from_ref(record)).await?;
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
