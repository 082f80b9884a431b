//! Retention: published outbox rows, dedupe records and the embedded log's records removed
//! after an age, in small batches, so no table grows for ever.
//!
//! Each table is swept by short statements of at most [`RetentionPolicy::batch_size`] rows,
//! each its own transaction: a sweep never holds a lock a writer, the relay or a consumer
//! waits on for longer than one small delete.
//!
//! What is removed, and what never is:
//! - **Outbox** (`tramline_outbox`, or Eventuate's `message`): only *published* rows older
//!   than [`RetentionPolicy::outbox`]. An unpublished row stays, however old.
//! - **Inbox** (`tramline_inbox`): dedupe records older than [`RetentionPolicy::inbox`].
//!   After that a redelivered message is applied again, so the window must exceed the
//!   longest redelivery: the longest a consumer may stay stopped (it redelivers from its
//!   last committed offset) plus its offset-commit interval, and the longest a relay may be
//!   down between publishing a batch and marking it. Parked messages are never removed.
//! - **Log** (`tramline_log`): records older than [`RetentionPolicy::log`] that every
//!   consumer group with offsets on their partition has committed past (a record no group
//!   has read yet is never removed), and — with [`RetentionPolicy::compact_log`], the
//!   default — only if a newer record of the same key exists in the partition: the newest
//!   record of each key per topic stays, as in a compacted Kafka topic, so a read model whose
//!   events carry snapshots can still be rebuilt from the log.
//!
//! Metrics (labels `store`, `table`): rows deleted, rows held, the oldest row's age.

use crate::{Db, OutboxLayout, SqlError, Stmt};
use std::collections::HashMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tramline_core::telemetry::{
    age_seconds, RETENTION_DELETED, RETENTION_OLDEST_AGE, RETENTION_ROWS,
};

/// Rows deleted per statement (a power of two: see [`Stmt::bind_list`]).
const DELETE_CHUNK: usize = 512;

/// How long each kind of row is kept; `None` keeps it for ever.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionPolicy {
    /// Published outbox rows, by the time they were published.
    pub outbox: Option<Duration>,
    /// Dedupe records, by the time their message was applied (see the module on the rule).
    pub inbox: Option<Duration>,
    /// The embedded log's records, by the time they were appended.
    pub log: Option<Duration>,
    /// Keep the newest record of each key per topic, whatever its age.
    pub compact_log: bool,
    /// Most rows one statement reads or deletes.
    pub batch_size: usize,
    /// Time between two sweeps.
    pub interval: Duration,
}

impl Default for RetentionPolicy {
    /// A day of published outbox rows, a week of dedupe records and of log records (Kafka's
    /// default retention), the log compacted, a sweep a minute.
    fn default() -> Self {
        RetentionPolicy {
            outbox: Some(Duration::from_secs(24 * 3600)),
            inbox: Some(Duration::from_secs(7 * 24 * 3600)),
            log: Some(Duration::from_secs(7 * 24 * 3600)),
            compact_log: true,
            batch_size: 1000,
            interval: Duration::from_secs(60),
        }
    }
}

/// A table retention sweeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// The outbox, in its layout.
    Outbox(OutboxLayout),
    /// The consumers' dedupe records.
    Inbox,
    /// The embedded log.
    Log,
}

impl Table {
    /// The table's name, the `table` label of its metrics.
    pub fn name(self) -> &'static str {
        match self {
            Table::Outbox(OutboxLayout::Tramline) => "tramline_outbox",
            Table::Outbox(OutboxLayout::Eventuate) => "message",
            Table::Inbox => "tramline_inbox",
            Table::Log => "tramline_log",
        }
    }

    /// The column holding a row's time, for its size.
    fn time_column(self) -> &'static str {
        match self {
            Table::Outbox(OutboxLayout::Tramline) => "created_at",
            Table::Outbox(OutboxLayout::Eventuate) => "creation_time",
            Table::Inbox => "received_at",
            Table::Log => "appended_at",
        }
    }
}

/// How many rows a table holds and when the oldest was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSize {
    /// The table.
    pub table: Table,
    /// Rows held.
    pub rows: i64,
    /// The oldest row's time (ms since the Unix epoch), if any row has one.
    pub oldest_ms: Option<i64>,
}

/// What one sweep removed, per table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swept {
    /// Rows deleted, by table name.
    pub deleted: HashMap<&'static str, u64>,
}

impl Swept {
    /// Rows deleted from every table.
    pub fn total(&self) -> u64 {
        self.deleted.values().sum()
    }
}

/// The retention of one database's tables.
#[derive(Debug, Clone)]
pub struct Retention {
    db: Db,
    store: String,
    tables: Vec<Table>,
    policy: RetentionPolicy,
}

impl Retention {
    /// Retention of `tables` in `db`, named `store` in metrics and errors.
    pub fn new(
        db: Db,
        store: impl Into<String>,
        tables: impl IntoIterator<Item = Table>,
        policy: RetentionPolicy,
    ) -> Self {
        let mut list: Vec<Table> = Vec::new();
        for t in tables {
            if !list.contains(&t) {
                list.push(t);
            }
        }
        Retention {
            db,
            store: store.into(),
            tables: list,
            policy,
        }
    }

    /// The store's name.
    pub fn store(&self) -> &str {
        &self.store
    }

    /// The tables swept.
    pub fn tables(&self) -> &[Table] {
        &self.tables
    }

    /// Sweeps every table until nothing more is due, now; then samples their sizes into the
    /// metrics.
    pub async fn sweep(&self) -> Result<Swept, SqlError> {
        let now = tramline_core::envelope::now_ms();
        let mut swept = Swept::default();
        for &table in &self.tables {
            let n = match table {
                Table::Outbox(layout) => match self.policy.outbox {
                    Some(age) => self.sweep_outbox(layout, cutoff(now, age)).await?,
                    None => 0,
                },
                Table::Inbox => match self.policy.inbox {
                    Some(age) => self.sweep_inbox(cutoff(now, age)).await?,
                    None => 0,
                },
                Table::Log => match self.policy.log {
                    Some(age) => self.sweep_log(cutoff(now, age)).await?,
                    None => 0,
                },
            };
            metrics::counter!(RETENTION_DELETED, &self.labels(table)).increment(n);
            swept.deleted.insert(table.name(), n);
        }
        for size in self.sizes().await? {
            let age = size
                .oldest_ms
                .map(|at| age_seconds(tramline_core::envelope::now_ms(), at))
                .unwrap_or(0.0);
            metrics::gauge!(RETENTION_ROWS, &self.labels(size.table)).set(size.rows as f64);
            metrics::gauge!(RETENTION_OLDEST_AGE, &self.labels(size.table)).set(age);
        }
        Ok(swept)
    }

    /// Sweeps every [`RetentionPolicy::interval`], the first at once, until `cancel` fires.
    /// A failed sweep is logged and tried again at the next: retention never stops a service.
    pub async fn run(&self, cancel: CancellationToken) -> Result<(), SqlError> {
        let mut every = tokio::time::interval(self.policy.interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = every.tick() => {}
            }
            match self.sweep().await {
                Ok(swept) if swept.total() > 0 => {
                    tracing::debug!(store = %self.store, deleted = swept.total(), "retention sweep")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    store = %self.store,
                    error = %tramline_core::error::sentence(&e),
                    "retention sweep failed; trying again at the next"
                ),
            }
        }
    }

    /// How many rows each table holds and its oldest row's time.
    pub async fn sizes(&self) -> Result<Vec<TableSize>, SqlError> {
        let mut sizes = Vec::with_capacity(self.tables.len());
        for &table in &self.tables {
            let stmt = self.db.stmt(&format!(
                "SELECT {} FROM (SELECT COUNT(*) AS n, MIN({}) AS oldest FROM {}) AS size",
                self.db.dialect().json_tuples(&["n", "oldest"]),
                table.time_column(),
                table.name()
            ));
            let rows: Vec<(i64, Option<i64>)> = self
                .db
                .fetch_json(&stmt, &self.store, "size a table")
                .await?;
            let (rows, oldest_ms) = rows.first().copied().unwrap_or((0, None));
            sizes.push(TableSize {
                table,
                rows,
                oldest_ms,
            });
        }
        Ok(sizes)
    }

    fn labels(&self, table: Table) -> [(&'static str, String); 2] {
        [
            ("store", self.store.clone()),
            ("table", table.name().to_owned()),
        ]
    }

    fn batch(&self) -> i64 {
        i64::try_from(self.policy.batch_size.max(1)).unwrap_or(i64::MAX)
    }

    /// Deletes `keys` of `table` (`key_column IN …`, after `scope`), in chunks.
    async fn delete<K: Clone + Into<crate::db::Arg>>(
        &self,
        scope: impl Fn() -> Stmt,
        key_column: &str,
        keys: &[K],
    ) -> Result<u64, SqlError> {
        let mut deleted = 0;
        for chunk in keys.chunks(DELETE_CHUNK) {
            let mut stmt = scope();
            stmt.push(key_column)
                .push(" IN ")
                .bind_list(chunk.iter().cloned());
            deleted += self
                .db
                .execute(&stmt, &self.store, "delete old rows")
                .await?;
        }
        Ok(deleted)
    }

    /// Walks the outbox in its order from the start, a page at a time, deleting the
    /// published rows older than `cutoff`; stops at the first row created after it (rows
    /// come nearly in creation order, and none created later can be published earlier).
    async fn sweep_outbox(&self, layout: OutboxLayout, cutoff: i64) -> Result<u64, SqlError> {
        let d = self.db.dialect();
        let mut deleted = 0;
        match layout {
            OutboxLayout::Tramline => {
                let mut after = i64::MIN;
                loop {
                    let mut stmt = self.db.stmt(&format!(
                        "SELECT {} FROM (SELECT seq, created_at, published_at FROM \
                         tramline_outbox WHERE seq > ",
                        d.json_tuples(&["seq", "created_at", "published_at"])
                    ));
                    stmt.bind(after)
                        .push(" ORDER BY seq LIMIT ")
                        .bind(self.batch())
                        .push(") AS page");
                    let mut page: Vec<(i64, i64, Option<i64>)> = self
                        .db
                        .fetch_json(&stmt, &self.store, "read old rows")
                        .await?;
                    page.sort_unstable_by_key(|r| r.0);
                    let full = page.len() as i64 == self.batch();
                    let young = page.iter().position(|r| r.1 >= cutoff);
                    let old = &page[..young.unwrap_or(page.len())];
                    let due: Vec<i64> = old
                        .iter()
                        .filter(|r| r.2.is_some_and(|at| at < cutoff))
                        .map(|r| r.0)
                        .collect();
                    let scope = || self.db.stmt("DELETE FROM tramline_outbox WHERE ");
                    deleted += self.delete(scope, "seq", &due).await?;
                    match old.last() {
                        Some(last) if young.is_none() && full => after = last.0,
                        _ => return Ok(deleted),
                    }
                }
            }
            OutboxLayout::Eventuate => {
                let mut after = String::new();
                loop {
                    let mut stmt = self.db.stmt(&format!(
                        "SELECT {} FROM (SELECT id, creation_time, published FROM message \
                         WHERE id > ",
                        d.json_tuples(&["id", "creation_time", "published"])
                    ));
                    stmt.bind(after.clone())
                        .push(" ORDER BY id LIMIT ")
                        .bind(self.batch())
                        .push(") AS page");
                    let mut page: Vec<(String, Option<i64>, Option<i64>)> = self
                        .db
                        .fetch_json(&stmt, &self.store, "read old rows")
                        .await?;
                    page.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                    let full = page.len() as i64 == self.batch();
                    let young = page.iter().position(|r| r.1.is_some_and(|t| t >= cutoff));
                    let old = &page[..young.unwrap_or(page.len())];
                    // Eventuate's table has no publication time: its creation time stands in.
                    let due: Vec<String> = old
                        .iter()
                        .filter(|r| r.2 == Some(1) && r.1.is_some())
                        .map(|r| r.0.clone())
                        .collect();
                    let scope = || self.db.stmt("DELETE FROM message WHERE ");
                    deleted += self.delete(scope, "id", &due).await?;
                    match old.last() {
                        Some(last) if young.is_none() && full => after = last.0.clone(),
                        _ => return Ok(deleted),
                    }
                }
            }
        }
    }

    /// Deletes dedupe records older than `cutoff`, oldest first, about a batch per
    /// statement (through the index on `received_at`).
    async fn sweep_inbox(&self, cutoff: i64) -> Result<u64, SqlError> {
        let mut deleted = 0;
        loop {
            // The time of the batch-th oldest record bounds this statement's delete.
            let mut stmt = self.db.stmt(&format!(
                "SELECT {} FROM (SELECT received_at FROM tramline_inbox WHERE received_at < ",
                self.db.dialect().json_tuples(&["received_at"])
            ));
            stmt.bind(cutoff)
                .push(" ORDER BY received_at LIMIT 1 OFFSET ")
                .bind(self.batch() - 1)
                .push(") AS bound");
            let bound: Vec<(i64,)> = self
                .db
                .fetch_json(&stmt, &self.store, "read old rows")
                .await?;
            let mut stmt = self
                .db
                .stmt("DELETE FROM tramline_inbox WHERE received_at < ");
            stmt.bind(cutoff);
            if let Some((bound,)) = bound.first() {
                stmt.push(" AND received_at <= ").bind(*bound);
            }
            let n = self
                .db
                .execute(&stmt, &self.store, "delete old rows")
                .await?;
            deleted += n;
            if bound.is_empty() || n == 0 {
                return Ok(deleted);
            }
        }
    }

    /// Deletes, partition by partition, the log records older than `cutoff` below every
    /// group's committed offset (and, compacting, only those a newer record of their key
    /// replaces).
    async fn sweep_log(&self, cutoff: i64) -> Result<u64, SqlError> {
        let d = self.db.dialect();
        let stmt = self.db.stmt(&format!(
            "SELECT {} FROM tramline_log_partitions",
            d.json_tuples(&["topic", "part"])
        ));
        let partitions: Vec<(String, i64)> = self
            .db
            .fetch_json(&stmt, &self.store, "read partitions")
            .await?;
        let mut deleted = 0;
        for (topic, part) in partitions {
            let mut stmt = self.db.stmt(&format!(
                "SELECT {} FROM (SELECT MIN(next_offset) AS committed FROM \
                 tramline_consumer_offsets WHERE topic = ",
                d.json_tuples(&["committed"])
            ));
            stmt.bind(&topic)
                .push(" AND part = ")
                .bind(part)
                .push(") AS low");
            let low: Vec<(Option<i64>,)> = self
                .db
                .fetch_json(&stmt, &self.store, "read committed offsets")
                .await?;
            // No group reads this partition: age alone decides, as in Kafka.
            let read_below = low.first().and_then(|l| l.0).unwrap_or(i64::MAX);
            deleted += self
                .sweep_partition(&topic, part, cutoff, read_below)
                .await?;
        }
        Ok(deleted)
    }

    async fn sweep_partition(
        &self,
        topic: &str,
        part: i64,
        cutoff: i64,
        read_below: i64,
    ) -> Result<u64, SqlError> {
        let d = self.db.dialect();
        let mut deleted = 0;
        let mut after = -1i64;
        loop {
            let mut stmt = self.db.stmt(&format!(
                "SELECT {} FROM (SELECT log_offset, msg_key, appended_at FROM tramline_log \
                 WHERE topic = ",
                d.json_tuples(&["log_offset", "msg_key", "appended_at"])
            ));
            stmt.bind(topic)
                .push(" AND part = ")
                .bind(part)
                .push(" AND log_offset > ")
                .bind(after)
                .push(" AND log_offset < ")
                .bind(read_below)
                .push(" ORDER BY log_offset LIMIT ")
                .bind(self.batch())
                .push(") AS page");
            let mut page: Vec<(i64, String, i64)> = self
                .db
                .fetch_json(&stmt, &self.store, "read old rows")
                .await?;
            page.sort_unstable_by_key(|r| r.0);
            let full = page.len() as i64 == self.batch();
            // Offsets are appended in time order within a partition.
            let young = page.iter().position(|r| r.2 >= cutoff);
            let old = &page[..young.unwrap_or(page.len())];
            let due: Vec<i64> = if self.policy.compact_log {
                let newest = self.newest_offsets(topic, part, old).await?;
                old.iter()
                    .filter(|r| newest.get(&r.1).is_some_and(|n| *n > r.0))
                    .map(|r| r.0)
                    .collect()
            } else {
                old.iter().map(|r| r.0).collect()
            };
            let scope = || {
                let mut s = self.db.stmt("DELETE FROM tramline_log WHERE topic = ");
                s.bind(topic).push(" AND part = ").bind(part).push(" AND ");
                s
            };
            deleted += self.delete(scope, "log_offset", &due).await?;
            match old.last() {
                Some(last) if young.is_none() && full => after = last.0,
                _ => return Ok(deleted),
            }
        }
    }

    /// The newest offset of each key of `rows` in the partition (through the index on
    /// `(topic, part, msg_key, log_offset)`).
    async fn newest_offsets(
        &self,
        topic: &str,
        part: i64,
        rows: &[(i64, String, i64)],
    ) -> Result<HashMap<String, i64>, SqlError> {
        let mut keys: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        let mut newest = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(DELETE_CHUNK) {
            let mut stmt = self.db.stmt(&format!(
                "SELECT {} FROM (SELECT msg_key, MAX(log_offset) AS newest FROM tramline_log \
                 WHERE topic = ",
                self.db.dialect().json_tuples(&["msg_key", "newest"])
            ));
            stmt.bind(topic)
                .push(" AND part = ")
                .bind(part)
                .push(" AND msg_key IN ")
                .bind_list(chunk.iter().map(|k| k.to_string()))
                .push(" GROUP BY msg_key) AS newest");
            let rows: Vec<(String, i64)> = self
                .db
                .fetch_json(&stmt, &self.store, "read newest records")
                .await?;
            newest.extend(rows);
        }
        Ok(newest)
    }
}

/// The time before which rows of `age` are due, from `now` (ms).
fn cutoff(now: i64, age: Duration) -> i64 {
    now.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX))
}
