//! Idempotency records of a command API: for each `Idempotency-Key` a client sent, the request
//! it came with and the response it got, so that a repeat is answered without running the
//! command again.
//!
//! The decision to know: a record is inserted inside the command's own transaction, beside its
//! state change and outbox messages ([`IdempotencyStore::insert`]), never before or after it.
//! A crash therefore leaves either the effect and its record, or neither. Two transactions
//! inserting one key at once cannot both commit: on MariaDB and PostgreSQL the second waits on
//! the first's row and fails on the primary key once the first commits (on SQLite the second
//! cannot begin until then, and fails the same way); that failure is a transient conflict
//! ([`SqlError::is_duplicate`] and a [`tramline_core::RetryCause::Conflict`]), after which a
//! [`IdempotencyStore::find`] sees the winner's record.
//!
//! Records are kept for a retention period (24 h by default, like Stripe's keys) and removed
//! by [`IdempotencyStore::purge_older_than`], which the process serving the API calls
//! periodically.

use crate::{Db, SqlError, Tx};
use std::time::Duration;

const STORE: &str = "idempotency";

/// A request made with an idempotency key, and the response it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// The client's key (1 to 255 visible ASCII characters; the caller validates it).
    pub key: String,
    /// What identifies the request (the API's own encoding of its method, path and body): a
    /// repeat of the key with another request is refused rather than answered.
    pub request: String,
    /// The response's status code.
    pub status: u16,
    /// The response's `Location` header, if it had one.
    pub location: Option<String>,
    /// The response's body.
    pub body: String,
    /// When the record was written, in ms since the Unix epoch (for expiry).
    pub created_at_ms: i64,
}

/// A record as [`IdempotencyStore::find`] reads it: request, status, location, body, created.
type StoredRecord = (String, u16, Option<String>, String, i64);

/// The idempotency records of one database (`tramline_idempotency`, created by
/// [`crate::Schema::Idempotency`]).
#[derive(Debug, Clone)]
pub struct IdempotencyStore {
    db: Db,
}

impl IdempotencyStore {
    /// How long records are kept by default: a day, long enough for any client's retries.
    pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

    /// The records in `db` (its schema must be migrated).
    pub fn new(db: Db) -> Self {
        IdempotencyStore { db }
    }

    /// Inserts `record` inside the caller's transaction, so it commits with the command's
    /// effect. A key already recorded, or being recorded by a transaction that then commits,
    /// fails with a duplicate-key error marked as a conflict.
    pub async fn insert(&self, tx: &mut Tx, record: &IdempotencyRecord) -> Result<(), SqlError> {
        let mut stmt = tx.stmt(
            "INSERT INTO tramline_idempotency \
             (idempotency_key, request, status, location, body, created_at)",
        );
        stmt.values(std::slice::from_ref(record), |row, r| {
            row.bind(r.key.as_str())
                .bind(r.request.as_str())
                .bind(i64::from(r.status))
                .bind(r.location.as_deref())
                .bind(r.body.as_str())
                .bind(r.created_at_ms);
        });
        tx.execute(&stmt, STORE, "record response")
            .await
            .map_err(SqlError::duplicate_is_conflict)?;
        Ok(())
    }

    /// The committed record of `key`, if there is one.
    pub async fn find(&self, key: &str) -> Result<Option<IdempotencyRecord>, SqlError> {
        let mut stmt = self.db.stmt(&format!(
            "SELECT {} FROM tramline_idempotency WHERE idempotency_key = ",
            self.db
                .dialect()
                .json_tuples(&["request", "status", "location", "body", "created_at"])
        ));
        stmt.bind(key);
        let found: Vec<StoredRecord> = self.db.fetch_json(&stmt, STORE, "look up key").await?;
        Ok(found
            .into_iter()
            .next()
            .map(
                |(request, status, location, body, created_at_ms)| IdempotencyRecord {
                    key: key.to_owned(),
                    request,
                    status,
                    location,
                    body,
                    created_at_ms,
                },
            ))
    }

    /// Deletes the records written more than `age` ago; returns how many went. A key whose
    /// record is gone runs its request again if it is repeated.
    pub async fn purge_older_than(&self, age: Duration) -> Result<u64, SqlError> {
        let age_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
        let cutoff = tramline_core::envelope::now_ms().saturating_sub(age_ms);
        let mut stmt = self
            .db
            .stmt("DELETE FROM tramline_idempotency WHERE created_at < ");
        stmt.bind(cutoff);
        self.db.execute(&stmt, STORE, "purge").await
    }
}
