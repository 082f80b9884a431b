//! Dedupe records and parked messages of a consumer, kept in the consumer's own database so
//! that the dedupe record commits in the same transaction as the effect.
//!
//! The decision to know: a claim never counts rows affected (`INSERT IGNORE` and
//! `ON CONFLICT DO NOTHING` counts differ by dialect and client flags).
//!
//! - On PostgreSQL it is one `INSERT … ON CONFLICT DO NOTHING RETURNING message_id`: the ids
//!   returned are the new ones. A concurrent transaction claiming the same id makes the insert
//!   wait for it; if it commits, the id is not returned (it is the other's), and if it rolls
//!   back, the id is inserted here.
//! - On SQLite and MariaDB a claim looks the batch's ids up (one statement folding the rows
//!   into one JSON value: sqlx hands each result row of a SQLite statement to its worker
//!   thread separately, which made `RETURNING` slower there), then inserts the new ones with a
//!   plain `INSERT` (MariaDB's `INSERT IGNORE` would also turn other errors into warnings). If
//!   another transaction claims one of those ids at the same moment (possible on MariaDB,
//!   where writers do not queue on one lock), the insert fails on the key, the whole
//!   transaction rolls back, and the error is a transient conflict: the retry's look-up sees
//!   the other's record.

use crate::db::statement_chunks;
use crate::{insert_rows, Db, Dialect, LockMode, SqlError, Tx};
use std::collections::HashSet;
use tramline_core::{Error, Record};

const STORE: &str = "inbox";

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

    /// Claims every record of a batch: for each record, in order, whether it is new (apply
    /// it) or was applied before (skip it). A second copy of an id in the same batch is not
    /// new.
    pub async fn claim(&self, tx: &mut Tx, records: &[Record]) -> Result<Vec<bool>, SqlError> {
        let ids: Vec<String> = records.iter().map(|r| r.envelope.id.to_string()).collect();
        // A later copy of an id in the same batch is never new: each id is claimed once.
        let mut seen: HashSet<&str> = HashSet::with_capacity(ids.len());
        let first: Vec<bool> = ids.iter().map(|id| seen.insert(id)).collect();
        let unique: Vec<&str> = ids
            .iter()
            .zip(&first)
            .filter(|(_, first)| **first)
            .map(|(id, _)| id.as_str())
            .collect();
        let new = match tx.dialect() {
            Dialect::Postgres => self.claim_returning(tx, &unique).await?,
            Dialect::Sqlite | Dialect::MySql => self.claim_after_lookup(tx, &unique).await?,
        };
        Ok(ids
            .iter()
            .zip(first)
            .map(|(id, first)| first && new.contains(id.as_str()))
            .collect())
    }

    /// Inserts the distinct `ids`, skipping those claimed before; returns the ones inserted.
    async fn claim_returning<'a>(
        &self,
        tx: &mut Tx,
        ids: &[&'a str],
    ) -> Result<HashSet<&'a str>, SqlError> {
        let now = tramline_core::envelope::now_ms();
        let mut inserted: HashSet<String> = HashSet::with_capacity(ids.len());
        for chunk in statement_chunks(ids) {
            let mut stmt =
                tx.stmt("INSERT INTO tramline_inbox (consumer, message_id, received_at)");
            stmt.values(chunk, |row, id| {
                row.bind(&self.consumer).bind(*id).bind(now);
            })
            .push(" ON CONFLICT (consumer, message_id) DO NOTHING RETURNING message_id");
            inserted.extend(tx.fetch_texts(&stmt, STORE, "record message ids").await?);
        }
        Ok(ids
            .iter()
            .copied()
            .filter(|id| inserted.contains(*id))
            .collect())
    }

    /// Looks the distinct `ids` up, inserts the ones not there and returns those; a
    /// concurrent claim of one of them is a transient conflict (see the module).
    async fn claim_after_lookup<'a>(
        &self,
        tx: &mut Tx,
        ids: &[&'a str],
    ) -> Result<HashSet<&'a str>, SqlError> {
        let mut stmt = tx.stmt(&format!(
            "SELECT {} FROM tramline_inbox WHERE consumer = ",
            tx.dialect().json_tuples(&["message_id"])
        ));
        stmt.bind(&self.consumer)
            .push(" AND message_id IN ")
            .bind_list(ids.iter().copied());
        let claimed: HashSet<String> = tx
            .fetch_json::<(String,)>(&stmt, STORE, "look up message ids")
            .await?
            .into_iter()
            .map(|(id,)| id)
            .collect();
        let new: Vec<&str> = ids
            .iter()
            .copied()
            .filter(|id| !claimed.contains(*id))
            .collect();
        let now = tramline_core::envelope::now_ms();
        insert_rows(
            tx,
            STORE,
            "record message ids",
            "INSERT INTO tramline_inbox (consumer, message_id, received_at)",
            "",
            &new,
            |row, id| {
                row.bind(&self.consumer).bind(*id).bind(now);
            },
        )
        .await
        .map_err(SqlError::duplicate_is_conflict)?;
        Ok(new.into_iter().collect())
    }

    /// Forgets every message id this consumer claimed (for a consumer that is done for good,
    /// such as a view rebuild's); returns how many.
    pub async fn forget(&self, db: &Db) -> Result<u64, SqlError> {
        let mut stmt = db.stmt("DELETE FROM tramline_inbox WHERE consumer = ");
        stmt.bind(&self.consumer);
        db.execute(&stmt, STORE, "forget message ids").await
    }

    /// Keeps a message that cannot be applied, with the reason, for an operator to retry or
    /// skip (see [`crate::parked`]). Its id is not claimed: a retry applies it then. Parking
    /// a message parked already changes nothing.
    pub async fn park(&self, db: &Db, record: &Record, reason: &Error) -> Result<(), SqlError> {
        let mut tx = db.begin(STORE).await?;
        let reason = tramline_core::error::sentence(reason);
        self.insert_parked(&mut tx, record, &reason, false).await?;
        tx.commit(STORE).await
    }

    /// Parks `record` in `tx` as held behind an earlier parked message of its key.
    pub async fn hold(&self, tx: &mut Tx, record: &Record) -> Result<(), SqlError> {
        let reason = format!(
            "held behind an earlier parked message of key {}",
            record.envelope.key
        );
        self.insert_parked(tx, record, &reason, true).await
    }

    async fn insert_parked(
        &self,
        tx: &mut Tx,
        record: &Record,
        reason: &str,
        held: bool,
    ) -> Result<(), SqlError> {
        let e = &record.envelope;
        let mut stmt = tx.stmt(
            "INSERT INTO tramline_parked (consumer, message_id, topic, part, log_offset, \
             msg_key, headers, payload, reason, parked_at, held, created_at)",
        );
        stmt.values(&[()], |row, ()| {
            row.bind(&self.consumer)
                .bind(e.id.to_string())
                .bind(&e.topic)
                .bind(record.partition)
                .bind(record.offset)
                .bind(&e.key)
                .bind(e.headers_json())
                .bind(&e.payload)
                .bind(reason)
                .bind(tramline_core::envelope::now_ms())
                .bind(i64::from(held))
                .bind(e.created_at_ms);
        });
        stmt.push(&tx.dialect().insert_missing(&["consumer", "message_id"]));
        tx.execute(&stmt, STORE, "park message").await?;
        Ok(())
    }

    /// The keys among `records`' that have a parked message, read under a shared lock: an
    /// operator's retry of the key, deleting its parked rows, finishes before this read
    /// sees them.
    pub async fn held_keys(
        &self,
        tx: &mut Tx,
        records: &[Record],
    ) -> Result<HashSet<String>, SqlError> {
        let mut keys: Vec<&str> = records.iter().map(|r| r.envelope.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        let d = tx.dialect();
        let (prefix, suffix) = d.json_select(&d.json_tuples(&["msg_key"]), Some(LockMode::Share));
        let mut stmt = tx.stmt(&prefix);
        stmt.push("tramline_parked WHERE consumer = ")
            .bind(&self.consumer)
            .push(" AND msg_key IN ")
            .bind_list(keys.iter().map(|k| k.to_string()))
            .push(&suffix);
        let held: Vec<(String,)> = tx.fetch_json(&stmt, STORE, "look up held keys").await?;
        Ok(held.into_iter().map(|(k,)| k).collect())
    }

    /// The consumer's name.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// How many messages this consumer has parked.
    pub async fn parked(&self, db: &Db) -> Result<i64, SqlError> {
        let mut stmt = db.stmt("SELECT COUNT(*) FROM tramline_parked WHERE consumer = ");
        stmt.bind(&self.consumer);
        db.fetch_i64(&stmt, STORE, "count parked").await
    }
}
