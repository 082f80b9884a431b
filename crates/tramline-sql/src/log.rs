//! The DB-backed transport: a partitioned, append-only log in a database, for deployments
//! without Kafka (the embedded default keeps it in its own SQLite file).
//!
//! Partitions are chosen as Kafka's default partitioner does, so a key keeps its partition if
//! a deployment moves to Kafka with the same partition count. An append locks its topic's
//! partition rows (on SQLite, the database's write lock) and assigns offsets under that lock,
//! so a partition's offsets are dense and become visible in order. A group has one member,
//! which reads every partition; parallelism inside it comes from the consumer runtime's lanes.
//!
//! A subscription sets `tramline_consumer_lag{group, topic, partition}` — the partition's end
//! less the group's last commit through this subscription — from the partition ends every poll
//! reads anyway, at most once per [`SqlLog::with_lag_interval`]: the gauge costs no query.

use crate::{insert_rows, migrate, Assign, Db, DbOptions, LockMode, Schema, SqlError, Stmt};
use metrics::Gauge;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tramline_core::offsets::CommitPosition;
use tramline_core::partitioner::partition_for;
use tramline_core::ports::{Subscription, Transport};
use tramline_core::{Envelope, Error, Record};

const STORE: &str = "log";

/// Least time between two updates of a subscription's lag gauges, by default.
const LAG_INTERVAL: Duration = Duration::from_secs(5);

/// A record as a poll reads it: index into the subscription's positions, offset, id, key,
/// headers, payload, created at.
type StoredRecord = (usize, i64, String, String, String, String, i64);

/// The log: topics of partitions of records, in one database.
#[derive(Debug, Clone)]
pub struct SqlLog {
    /// Writers: appends, offset commits.
    db: Db,
    /// Readers: polls, lag (on SQLite a read-only pool that never waits for the writer).
    readers: Db,
    appended: Arc<Notify>,
    /// Least time between two updates of a subscription's lag gauges.
    lag_interval: Duration,
}

/// The statement reading each partition's next offset of `topic`, optionally locking them.
fn partitions_stmt(db_dialect: crate::Dialect, topic: &str, lock: Option<LockMode>) -> Stmt {
    let (prefix, suffix) =
        db_dialect.json_select(&db_dialect.json_tuples(&["part", "next_offset"]), lock);
    let mut stmt = Stmt::new(db_dialect, &prefix);
    stmt.push("tramline_log_partitions WHERE topic = ")
        .bind(topic)
        .push(&suffix);
    stmt
}

/// Next offset of each partition, in partition order.
fn in_partition_order(mut parts: Vec<(i32, i64)>) -> Vec<i64> {
    parts.sort_unstable();
    parts.into_iter().map(|(_, next)| next).collect()
}

impl SqlLog {
    /// Opens (creating its tables if missing) the log in the database at `url`.
    pub async fn open(url: &str, options: &DbOptions) -> Result<Self, SqlError> {
        let db = Db::connect(url, options).await?;
        migrate(&db, &[Schema::Log]).await?;
        Ok(SqlLog {
            readers: db.readers(),
            db,
            appended: Arc::new(Notify::new()),
            lag_interval: LAG_INTERVAL,
        })
    }

    /// The log with its subscriptions updating their lag gauges at most once per `every`
    /// (5 s by default; a test wants it sooner).
    pub fn with_lag_interval(mut self, every: Duration) -> Self {
        self.lag_interval = every;
        self
    }

    /// The log's database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    async fn create_partitions(&self, topic: &str, partitions: i32) -> Result<(), Error> {
        if partitions < 1 {
            return Err(Error::Config(format!(
                "topic {topic}: partitions must be at least 1, got {partitions}"
            )));
        }
        let mut tx = self.db.begin(STORE).await?;
        // Shared locks: a concurrent append waits until the topic is complete.
        let existing = tx
            .fetch_json::<(i32, i64)>(
                &partitions_stmt(tx.dialect(), topic, Some(LockMode::Share)),
                STORE,
                "read partitions",
            )
            .await?;
        if !existing.is_empty() && existing.len() != partitions as usize {
            return Err(Error::Config(format!(
                "topic {topic} exists with {} partitions, not {partitions}",
                existing.len()
            )));
        }
        let parts: Vec<i32> = (0..partitions).collect();
        insert_rows(
            &mut tx,
            STORE,
            "create topic",
            "INSERT INTO tramline_log_partitions (topic, part, next_offset)",
            &self.db.dialect().insert_missing(&["topic", "part"]),
            &parts,
            |row, p| {
                row.bind(topic).bind(*p).bind(0i64);
            },
        )
        .await?;
        tx.commit(STORE).await?;
        Ok(())
    }

    /// Next offset of each partition of `topic` (empty if the topic does not exist).
    pub async fn partitions(&self, topic: &str) -> Result<Vec<i64>, SqlError> {
        let stmt = partitions_stmt(self.readers.dialect(), topic, None);
        let parts = self
            .readers
            .fetch_json(&stmt, STORE, "read partitions")
            .await?;
        Ok(in_partition_order(parts))
    }

    async fn uncommitted(&self, group: &str, topics: &[String]) -> Result<i64, SqlError> {
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
        let d = self.readers.dialect();
        let mut stmt = self.readers.stmt(&format!(
            "SELECT {} FROM tramline_consumer_offsets WHERE group_id = ",
            d.json_tuples(&["topic", "part", "next_offset"])
        ));
        stmt.bind(group);
        let rows: Vec<(String, i32, i64)> = self
            .readers
            .fetch_json(&stmt, STORE, "read committed offsets")
            .await?;
        Ok(rows
            .into_iter()
            .map(|(topic, part, next)| ((topic, part), next))
            .collect())
    }

    async fn append(&self, batch: &[Envelope]) -> Result<(), Error> {
        let mut tx = self.db.begin(STORE).await?;
        // topic → next offset of each partition, read under the partitions' row locks.
        let mut next: HashMap<&str, Vec<i64>> = HashMap::new();
        let mut touched: HashSet<(&str, i32)> = HashSet::new();
        let mut placed = Vec::with_capacity(batch.len());
        // Topics locked in name order, so two appenders never wait on each other in a cycle.
        let mut topics: Vec<&str> = batch.iter().map(|m| m.topic.as_str()).collect();
        topics.sort_unstable();
        topics.dedup();
        for topic in topics {
            let stmt = partitions_stmt(tx.dialect(), topic, Some(LockMode::Update));
            let offsets = in_partition_order(tx.fetch_json(&stmt, STORE, "lock partitions").await?);
            if offsets.is_empty() {
                return Err(Error::Config(format!(
                    "topic {topic} does not exist in the log; create it first"
                )));
            }
            next.insert(topic, offsets);
        }
        for m in batch {
            let offsets = next
                .get_mut(m.topic.as_str())
                .expect("every topic of the batch was read above");
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
             created_at, appended_at)",
            "",
            &placed,
            |row, (part, offset, m)| {
                row.bind(&m.topic)
                    .bind(*part)
                    .bind(*offset)
                    .bind(m.id.to_string())
                    .bind(&m.key)
                    .bind(m.headers_json())
                    .bind(&m.payload)
                    .bind(m.created_at_ms)
                    .bind(now);
            },
        )
        .await?;
        let mut advanced: Vec<(&str, i32, i64)> = touched
            .into_iter()
            .map(|(topic, part)| (topic, part, next[topic][part as usize]))
            .collect();
        advanced.sort_unstable();
        insert_rows(
            &mut tx,
            STORE,
            "advance partitions",
            "INSERT INTO tramline_log_partitions (topic, part, next_offset)",
            &self.db.dialect().upsert(
                "tramline_log_partitions",
                &["topic", "part"],
                &[Assign::New("next_offset")],
                None,
            ),
            &advanced,
            |row, (topic, part, next)| {
                row.bind(*topic).bind(*part).bind(*next);
            },
        )
        .await?;
        tx.commit(STORE).await?;
        self.appended.notify_waiters();
        Ok(())
    }
}

impl Transport for SqlLog {
    type Subscription = SqlSubscription;

    async fn publish(&self, batch: &[Envelope]) -> Result<(), Error> {
        self.append(batch).await
    }

    async fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), Error> {
        self.create_partitions(topic, partitions).await
    }

    async fn lag(&self, group: &str, topics: &[String]) -> Result<i64, Error> {
        Ok(self.uncommitted(group, topics).await?)
    }

    async fn end_offsets(&self, topics: &[String]) -> Result<Vec<CommitPosition>, Error> {
        let mut ends = Vec::new();
        for topic in topics {
            for (partition, next_offset) in self.partitions(topic).await?.into_iter().enumerate() {
                ends.push(CommitPosition {
                    topic: topic.clone(),
                    partition: partition as i32,
                    next_offset,
                });
            }
        }
        Ok(ends)
    }

    async fn subscribe(&self, group: &str, topics: &[String]) -> Result<SqlSubscription, Error> {
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
        Ok(SqlSubscription {
            log: self.clone(),
            group: group.to_owned(),
            lag: Lag::new(group, &positions, self.lag_interval),
            positions,
            next_partition: 0,
        })
    }
}

/// The one member of a consumer group, reading every partition of its topics.
#[derive(Debug)]
pub struct SqlSubscription {
    log: SqlLog,
    group: String,
    /// (topic, partition, next offset to read).
    positions: Vec<(String, i32, i64)>,
    /// Where the next poll starts, so no partition is starved.
    next_partition: usize,
    /// The lag gauges of `positions`' partitions.
    lag: Lag,
}

/// A subscription's `tramline_consumer_lag` gauges, one per partition of its positions.
#[derive(Debug)]
struct Lag {
    /// The group's committed next offset of each partition, as far as this subscription
    /// knows (where it started, then its own commits).
    committed: Vec<AtomicI64>,
    gauges: Vec<Gauge>,
    /// Least time between two updates.
    interval: Duration,
    /// When the gauges were last set.
    sampled: Option<Instant>,
}

impl Lag {
    /// Registers the gauges of `positions` (topic, partition, committed next offset).
    fn new(group: &str, positions: &[(String, i32, i64)], interval: Duration) -> Self {
        Lag {
            committed: positions
                .iter()
                .map(|(_, _, at)| AtomicI64::new(*at))
                .collect(),
            gauges: positions
                .iter()
                .map(|(topic, part, _)| {
                    metrics::gauge!(
                        tramline_core::telemetry::CONSUMER_LAG,
                        "group" => group.to_owned(),
                        "topic" => topic.clone(),
                        "partition" => part.to_string()
                    )
                })
                .collect(),
            interval,
            sampled: None,
        }
    }

    /// Sets each partition's gauge from the partition ends a poll read, if the last time is
    /// at least `interval` ago.
    fn sample(&mut self, positions: &[(String, i32, i64)], ends: &HashMap<(String, i32), i64>) {
        if self.sampled.is_some_and(|at| at.elapsed() < self.interval) {
            return;
        }
        self.sampled = Some(Instant::now());
        for (idx, (topic, part, _)) in positions.iter().enumerate() {
            let end = ends.get(&(topic.clone(), *part)).copied().unwrap_or(0);
            let committed = self.committed[idx].load(Ordering::Relaxed);
            self.gauges[idx].set(end.saturating_sub(committed).max(0) as f64);
        }
    }
}

impl SqlSubscription {
    async fn read(&mut self, max: usize) -> Result<Vec<Record>, Error> {
        let readers = &self.log.readers;
        let d = readers.dialect();
        // One cheap look at every partition's end first, so idle partitions cost no query.
        let ends_stmt = readers.stmt(&format!(
            "SELECT {} FROM tramline_log_partitions",
            d.json_tuples(&["topic", "part", "next_offset"])
        ));
        let ends: HashMap<(String, i32), i64> = readers
            .fetch_json::<(String, i32, i64)>(&ends_stmt, STORE, "read partition ends")
            .await?
            .into_iter()
            .map(|(topic, part, end)| ((topic, part), end))
            .collect();
        self.lag.sample(&self.positions, &ends);
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
        let mut stmt = readers.stmt(&format!(
            "SELECT {} FROM (",
            d.json_tuples(&[
                "idx",
                "log_offset",
                "id",
                "msg_key",
                "headers",
                "payload",
                "created_at"
            ])
        ));
        for (n, &idx) in ready.iter().enumerate() {
            let (topic, part, at) = &self.positions[idx];
            if n > 0 {
                stmt.push(" UNION ALL ");
            }
            stmt.push("SELECT * FROM (SELECT ")
                .bind(idx as i64)
                .push(
                    " AS idx, log_offset, id, msg_key, headers, payload, created_at \
                     FROM tramline_log WHERE topic = ",
                )
                .bind(topic)
                .push(" AND part = ")
                .bind(*part)
                .push(" AND log_offset >= ")
                .bind(*at)
                .push(" ORDER BY log_offset LIMIT ")
                .bind(per_partition)
                .push(&format!(") AS p{n}"));
        }
        stmt.push(") AS ready");
        let mut rows: Vec<StoredRecord> = readers.fetch_json(&stmt, STORE, "read records").await?;
        // The aggregate's order follows the subqueries' in practice; sorting makes it certain.
        rows.sort_unstable_by_key(|r| (r.0, r.1));
        let mut out = Vec::with_capacity(rows.len());
        for (idx, offset, id, key, headers, payload, created_at_ms) in rows {
            let (topic, part, at) = &mut self.positions[idx];
            let decode_error = |what: &str, e: &dyn std::fmt::Display| Error::Store {
                store: STORE.into(),
                operation: "decode record",
                retry: None,
                source: format!("{topic}/{part}@{offset}: {what}: {e}").into(),
            };
            let id = id.parse().map_err(|e| decode_error("message id", &e))?;
            let headers: BTreeMap<String, String> =
                serde_json::from_str(&headers).map_err(|e| decode_error("headers", &e))?;
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

impl Subscription for SqlSubscription {
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
        // One row per partition (the latest position wins), in key order: an upsert may not
        // touch a row twice on PostgreSQL, and key order keeps concurrent commits deadlock-free.
        let mut latest: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for p in positions {
            let at = latest.entry((p.topic.as_str(), p.partition)).or_insert(0);
            *at = (*at).max(p.next_offset);
        }
        let rows: Vec<_> = latest.into_iter().collect();
        let mut tx = self.log.db.begin(STORE).await?;
        let now = tramline_core::envelope::now_ms();
        insert_rows(
            &mut tx,
            STORE,
            "commit offsets",
            "INSERT INTO tramline_consumer_offsets (group_id, topic, part, next_offset, \
             committed_at)",
            &self.log.db.dialect().upsert(
                "tramline_consumer_offsets",
                &["group_id", "topic", "part"],
                &[Assign::Max("next_offset"), Assign::New("committed_at")],
                None,
            ),
            &rows,
            |row, ((topic, part), next)| {
                row.bind(&self.group)
                    .bind(*topic)
                    .bind(*part)
                    .bind(*next)
                    .bind(now);
            },
        )
        .await?;
        tx.commit(STORE).await?;
        for ((topic, part), next) in rows {
            if let Some(idx) = self
                .positions
                .iter()
                .position(|(t, p, _)| t == topic && *p == part)
            {
                self.lag.committed[idx].fetch_max(next, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}
