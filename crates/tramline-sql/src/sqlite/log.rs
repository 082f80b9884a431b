//! The embedded transport: a partitioned, append-only log in a SQLite file.
//!
//! Partitions are chosen as Kafka's default partitioner does, so a key keeps its partition if
//! a deployment moves to Kafka with the same partition count. Offsets are assigned inside the
//! append transaction under SQLite's write lock, so a partition's offsets are dense and in
//! commit order. A group has one member, which reads every partition; parallelism inside it
//! comes from the consumer runtime's lanes.

use super::{
    begin_write, fetch_json_rows, insert_rows, migrate, open, open_readers, Schema, SqliteOptions,
};
use crate::SqlError;
use sqlx::{QueryBuilder, Sqlite, SqlitePool};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tramline_core::offsets::CommitPosition;
use tramline_core::partitioner::partition_for;
use tramline_core::ports::{Subscription, Transport};
use tramline_core::{Envelope, Error, Record};

const STORE: &str = "log";

// These fold their rows into one JSON array: see `fetch_json_rows`.
const PARTITIONS: &str = "SELECT json_group_array(json_array(part, next_offset)) \
     FROM tramline_log_partitions WHERE topic = ?";
const CREATE_PARTITION: &str = "INSERT INTO tramline_log_partitions (topic, part, next_offset) \
     VALUES (?, ?, 0) ON CONFLICT DO NOTHING";
const ALL_ENDS: &str =
    "SELECT json_group_array(json_array(topic, part, next_offset)) FROM tramline_log_partitions";

/// A record as a poll reads it: index into the subscription's positions, offset, id, key,
/// headers, payload, created at.
type StoredRecord = (
    usize,
    i64,
    String,
    String,
    BTreeMap<String, String>,
    String,
    i64,
);
const COMMITTED: &str = "SELECT json_group_array(json_array(topic, part, next_offset)) \
     FROM tramline_consumer_offsets WHERE group_id = ?";
const COMMIT: &str =
    "INSERT INTO tramline_consumer_offsets (group_id, topic, part, next_offset, committed_at) ";
const ON_COMMIT_CONFLICT: &str = " ON CONFLICT (group_id, topic, part) DO UPDATE SET \
     next_offset = MAX(next_offset, excluded.next_offset), committed_at = excluded.committed_at";

/// The log: topics of partitions of records, in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteLog {
    /// Writers (appends, offset commits): one connection, so they queue here instead of
    /// spinning in SQLite's busy handler.
    pool: SqlitePool,
    /// Readers (polls, lag): WAL lets them run beside the writer.
    readers: SqlitePool,
    appended: Arc<Notify>,
}

impl SqliteLog {
    /// Opens (creating if missing) the log file at `path`.
    pub async fn open(path: &Path, options: &SqliteOptions) -> Result<Self, SqlError> {
        let pool = open(path, options).await?;
        migrate(&pool, &[Schema::Log]).await?;
        Ok(SqliteLog {
            readers: open_readers(path, options).await?,
            pool,
            appended: Arc::new(Notify::new()),
        })
    }

    /// Creates `topic` with `partitions` partitions if it does not exist. An existing topic
    /// keeps its partitions (their count never shrinks, so keys never move).
    pub async fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), Error> {
        if partitions < 1 {
            return Err(Error::Config(format!(
                "topic {topic}: partitions must be at least 1, got {partitions}"
            )));
        }
        let existing = self.partitions(topic).await?;
        if !existing.is_empty() && existing.len() != partitions as usize {
            return Err(Error::Config(format!(
                "topic {topic} exists with {} partitions, not {partitions}",
                existing.len()
            )));
        }
        let mut tx = begin_write(&self.pool, STORE).await?;
        for p in 0..partitions {
            sqlx::query(CREATE_PARTITION)
                .bind(topic)
                .bind(p)
                .execute(&mut *tx)
                .await
                .map_err(SqlError::at(STORE, "create topic"))?;
        }
        tx.commit()
            .await
            .map_err(SqlError::at(STORE, "commit create topic"))?;
        Ok(())
    }

    /// Next offset of each partition of `topic` (empty if the topic does not exist).
    pub async fn partitions(&self, topic: &str) -> Result<Vec<i64>, SqlError> {
        read_partitions(&self.readers, topic).await
    }

    /// Records of `topics` that group `group` has not committed yet.
    pub async fn lag(&self, group: &str, topics: &[String]) -> Result<i64, SqlError> {
        let committed = self.committed(group).await?;
        let mut lag = 0;
        for topic in topics {
            for (p, end) in self.partitions(topic).await?.into_iter().enumerate() {
                let done = committed
                    .get(&(topic.clone(), p as i32))
                    .copied()
                    .unwrap_or(0);
                lag += end - done;
            }
        }
        Ok(lag)
    }

    async fn committed(&self, group: &str) -> Result<HashMap<(String, i32), i64>, SqlError> {
        let rows: Vec<(String, i32, i64)> = fetch_json_rows(
            sqlx::query(COMMITTED).bind(group),
            &self.readers,
            STORE,
            "read committed offsets",
        )
        .await?;
        Ok(rows
            .into_iter()
            .map(|(topic, part, next)| ((topic, part), next))
            .collect())
    }

    async fn append(&self, batch: &[Envelope]) -> Result<(), Error> {
        let mut tx = begin_write(&self.pool, STORE).await?;
        // topic → next offset of each partition, read under the write lock.
        let mut next: HashMap<&str, Vec<i64>> = HashMap::new();
        let mut touched: HashSet<(&str, i32)> = HashSet::new();
        let mut placed = Vec::with_capacity(batch.len());
        for m in batch {
            if !next.contains_key(m.topic.as_str()) {
                let offsets = read_partitions(&mut *tx, &m.topic).await?;
                if offsets.is_empty() {
                    return Err(Error::Config(format!(
                        "topic {} does not exist in the log; create it first",
                        m.topic
                    )));
                }
                next.insert(&m.topic, offsets);
            }
            let offsets = next.get_mut(m.topic.as_str()).expect("inserted above");
            let part = partition_for(&m.key, offsets.len() as i32);
            placed.push((part, offsets[part as usize], m));
            offsets[part as usize] += 1;
            touched.insert((m.topic.as_str(), part));
        }
        let now = tramline_core::envelope::now_ms();
        insert_rows(
            &mut tx,
            STORE,
            "append",
            "INSERT INTO tramline_log (topic, part, log_offset, id, msg_key, headers, payload, \
             created_at, appended_at) ",
            "",
            &placed,
            |row, (part, offset, m)| {
                row.push_bind(m.topic.clone())
                    .push_bind(*part)
                    .push_bind(*offset)
                    .push_bind(m.id.to_string())
                    .push_bind(m.key.clone())
                    .push_bind(m.headers_json())
                    .push_bind(m.payload.clone())
                    .push_bind(m.created_at_ms)
                    .push_bind(now);
            },
        )
        .await?;
        let advanced: Vec<(&str, i32, i64)> = touched
            .into_iter()
            .map(|(topic, part)| (topic, part, next[topic][part as usize]))
            .collect();
        insert_rows(
            &mut tx,
            STORE,
            "advance partitions",
            "INSERT INTO tramline_log_partitions (topic, part, next_offset) ",
            " ON CONFLICT (topic, part) DO UPDATE SET next_offset = excluded.next_offset",
            &advanced,
            |row, (topic, part, next)| {
                row.push_bind(topic.to_string())
                    .push_bind(*part)
                    .push_bind(*next);
            },
        )
        .await?;
        tx.commit()
            .await
            .map_err(SqlError::at(STORE, "commit append"))?;
        self.appended.notify_waiters();
        Ok(())
    }
}

/// Next offset of each partition of `topic`, in partition order.
async fn read_partitions<'c, E>(executor: E, topic: &str) -> Result<Vec<i64>, SqlError>
where
    E: sqlx::Executor<'c, Database = Sqlite>,
{
    let mut parts: Vec<(i32, i64)> = fetch_json_rows(
        sqlx::query(PARTITIONS).bind(topic),
        executor,
        STORE,
        "read partitions",
    )
    .await?;
    parts.sort_unstable();
    Ok(parts.into_iter().map(|(_, next)| next).collect())
}

impl Transport for SqliteLog {
    type Subscription = SqliteSubscription;

    async fn publish(&self, batch: &[Envelope]) -> Result<(), Error> {
        self.append(batch).await
    }

    async fn subscribe(&self, group: &str, topics: &[String]) -> Result<SqliteSubscription, Error> {
        let committed = self.committed(group).await?;
        let mut positions = Vec::new();
        for topic in topics {
            let parts = self.partitions(topic).await?;
            if parts.is_empty() {
                return Err(Error::Config(format!(
                    "cannot subscribe to topic {topic}: it does not exist in the log"
                )));
            }
            for p in 0..parts.len() as i32 {
                let at = committed.get(&(topic.clone(), p)).copied().unwrap_or(0);
                positions.push((topic.clone(), p, at));
            }
        }
        Ok(SqliteSubscription {
            log: self.clone(),
            group: group.to_owned(),
            positions,
            next_partition: 0,
        })
    }
}

/// The one member of a consumer group, reading every partition of its topics.
#[derive(Debug)]
pub struct SqliteSubscription {
    log: SqliteLog,
    group: String,
    /// (topic, partition, next offset to read).
    positions: Vec<(String, i32, i64)>,
    /// Where the next poll starts, so no partition is starved.
    next_partition: usize,
}

impl SqliteSubscription {
    async fn read(&mut self, max: usize) -> Result<Vec<Record>, Error> {
        // One cheap look at every partition's end first, so idle partitions cost no query.
        let ends: HashMap<(String, i32), i64> = fetch_json_rows::<(String, i32, i64), _>(
            sqlx::query(ALL_ENDS),
            &self.log.readers,
            STORE,
            "read partition ends",
        )
        .await?
        .into_iter()
        .map(|(topic, part, end)| ((topic, part), end))
        .collect();
        let n = self.positions.len();
        let ready: Vec<usize> = (0..n)
            .map(|i| (self.next_partition + i) % n)
            .filter(|&idx| {
                let (topic, part, at) = &self.positions[idx];
                ends.get(&(topic.clone(), *part))
                    .is_some_and(|end| end > at)
            })
            .collect();
        self.next_partition = (self.next_partition + 1) % n.max(1);
        if ready.is_empty() {
            return Ok(Vec::new());
        }
        let per_partition = max.div_ceil(ready.len()).max(1) as i64;
        // One statement for every ready partition: a UNION ALL of one ordered, limited read per
        // partition, tagged with the partition's index in `positions`.
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT json_group_array(json_array(idx, log_offset, id, msg_key, json(headers), \
             payload, created_at)) FROM (",
        );
        for (n, &idx) in ready.iter().enumerate() {
            let (topic, part, at) = &self.positions[idx];
            if n > 0 {
                q.push(" UNION ALL ");
            }
            q.push("SELECT * FROM (SELECT ")
                .push_bind(idx as i64)
                .push(
                    " AS idx, log_offset, id, msg_key, headers, payload, created_at \
                       FROM tramline_log WHERE topic = ",
                )
                .push_bind(topic.clone())
                .push(" AND part = ")
                .push_bind(*part)
                .push(" AND log_offset >= ")
                .push_bind(*at)
                .push(" ORDER BY log_offset LIMIT ")
                .push_bind(per_partition)
                .push(")");
        }
        q.push(")");
        let mut rows: Vec<StoredRecord> =
            fetch_json_rows(q.build(), &self.log.readers, STORE, "read records").await?;
        // The aggregate's order follows the subqueries' in practice; sorting makes it certain.
        rows.sort_unstable_by_key(|r| (r.0, r.1));
        let mut out = Vec::with_capacity(rows.len());
        for (idx, offset, id, key, headers, payload, created_at_ms) in rows {
            let (topic, part, at) = &mut self.positions[idx];
            let id = id.parse().map_err(|e| Error::Store {
                store: STORE,
                operation: "decode record",
                transient: false,
                source: format!("{topic}/{part}@{offset}: message id {id:?}: {e}").into(),
            })?;
            *at = offset + 1;
            out.push(Record {
                envelope: Envelope {
                    id,
                    topic: topic.clone(),
                    key,
                    headers,
                    payload,
                    created_at_ms,
                },
                partition: *part,
                offset,
            });
        }
        Ok(out)
    }
}

impl Subscription for SqliteSubscription {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, Error> {
        let appended = Arc::clone(&self.log.appended);
        let notified = appended.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let records = self.read(max).await?;
        if !records.is_empty() {
            return Ok(records);
        }
        // Nothing yet: wait for an append in this process, or `wait` for other writers.
        let _ = tokio::time::timeout(wait, notified).await;
        self.read(max).await
    }

    async fn commit(&self, positions: &[CommitPosition]) -> Result<(), Error> {
        let mut tx = begin_write(&self.log.pool, STORE).await?;
        let now = tramline_core::envelope::now_ms();
        insert_rows(
            &mut tx,
            STORE,
            "commit offsets",
            COMMIT,
            ON_COMMIT_CONFLICT,
            positions,
            |row, p| {
                row.push_bind(self.group.clone())
                    .push_bind(p.topic.clone())
                    .push_bind(p.partition)
                    .push_bind(p.next_offset)
                    .push_bind(now);
            },
        )
        .await?;
        tx.commit()
            .await
            .map_err(SqlError::at(STORE, "commit offsets"))?;
        Ok(())
    }
}
