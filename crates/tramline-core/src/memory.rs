//! In-memory adapters of the ports, for a service's unit tests and for prototypes: an
//! [`Outbox`] ([`MemoryOutbox`]) and a [`Transport`] ([`MemoryLog`]) that keep everything in
//! the process and lose it on exit. They keep the ports' contracts (commit order, per-key
//! order, offsets committed per group), so the [`OutboxRelay`](crate::relay::OutboxRelay)
//! and the [`ConsumerRuntime`](crate::consumer::ConsumerRuntime) run on them unchanged.
//!
//! ```
//! use std::sync::Arc;
//! use tramline_core::memory::{MemoryLog, MemoryOutbox};
//! use tramline_core::relay::{OutboxRelay, RelayConfig};
//! use tramline_core::Envelope;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tramline_core::Error> {
//! let outbox = Arc::new(MemoryOutbox::default());
//! let log = Arc::new(MemoryLog::default());
//! outbox.append(vec![Envelope::new("orders", "order-1", r#"{"total":10}"#.into())]);
//! let relay = OutboxRelay::new(Arc::clone(&outbox), Arc::clone(&log), RelayConfig::default());
//! assert_eq!(relay.publish_once().await?, 1);
//! assert_eq!(log.records("orders").len(), 1);
//! # Ok(())
//! # }
//! ```

use crate::offsets::CommitPosition;
use crate::partitioner::partition_for;
use crate::ports::{Outbox, OutboxBatch, Pending, Subscription, Transport};
use crate::{Envelope, Error, Record};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here leaves the state half-changed across a panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An outbox in memory: messages appended in order, handed out until marked published.
#[derive(Debug, Default)]
pub struct MemoryOutbox {
    /// (position, message, published).
    rows: Mutex<Vec<(i64, Envelope, bool)>>,
    wakeup: Notify,
}

impl MemoryOutbox {
    /// Appends messages (as one committed transaction would) and wakes the relay.
    pub fn append(&self, messages: impl IntoIterator<Item = Envelope>) {
        let mut rows = lock(&self.rows);
        for message in messages {
            let position = rows.len() as i64 + 1;
            rows.push((position, message, false));
        }
        drop(rows);
        self.wakeup.notify_one();
    }
}

impl Outbox for MemoryOutbox {
    async fn fetch_unpublished(&self, max: usize) -> Result<OutboxBatch, Error> {
        let mut batch = OutboxBatch::default();
        for (position, message, _) in lock(&self.rows).iter().filter(|r| !r.2).take(max) {
            batch.positions.push(*position);
            batch.messages.push(message.clone());
        }
        Ok(batch)
    }

    async fn mark_published(&self, batch: &OutboxBatch) -> Result<(), Error> {
        let mut rows = lock(&self.rows);
        for position in &batch.positions {
            if let Some(row) = usize::try_from(*position - 1)
                .ok()
                .and_then(|at| rows.get_mut(at))
            {
                row.2 = true;
            }
        }
        Ok(())
    }

    fn wakeup(&self) -> &Notify {
        &self.wakeup
    }

    async fn pending(&self) -> Result<Option<Pending>, Error> {
        let rows = lock(&self.rows);
        let mut unpublished = rows.iter().filter(|r| !r.2);
        let oldest = unpublished.clone().map(|r| r.1.created_at_ms).min();
        Ok(Some(Pending {
            count: unpublished.by_ref().count() as u64,
            oldest_created_at_ms: oldest,
        }))
    }
}

#[derive(Debug, Default)]
struct LogState {
    /// Topic → partitions → records.
    topics: BTreeMap<String, Vec<Vec<Record>>>,
    /// (group, topic, partition) → the next offset the group reads.
    committed: BTreeMap<(String, String, i32), i64>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<LogState>,
    appended: Notify,
}

/// A log in memory: topics of partitions, a message's partition chosen by its key as on the
/// embedded log and Kafka, offsets committed per consumer group. A topic published to
/// before it was created gets one partition. Each group has one member (no rebalancing).
#[derive(Debug, Clone, Default)]
pub struct MemoryLog {
    shared: Arc<Shared>,
}

impl MemoryLog {
    /// Every record of `topic`, partition by partition.
    pub fn records(&self, topic: &str) -> Vec<Record> {
        let state = lock(&self.shared.state);
        state
            .topics
            .get(topic)
            .map(|parts| parts.iter().flatten().cloned().collect())
            .unwrap_or_default()
    }
}

impl Transport for MemoryLog {
    type Subscription = MemorySubscription;

    async fn publish(&self, batch: &[Envelope]) -> Result<(), Error> {
        let mut state = lock(&self.shared.state);
        for envelope in batch {
            let parts = state
                .topics
                .entry(envelope.topic.clone())
                .or_insert_with(|| vec![Vec::new()]);
            let count = i32::try_from(parts.len()).unwrap_or(i32::MAX);
            let partition = partition_for(&envelope.key, count);
            let records = &mut parts[usize::try_from(partition).unwrap_or(0)];
            records.push(Record {
                envelope: envelope.clone(),
                partition,
                offset: records.len() as i64,
            });
        }
        drop(state);
        self.shared.appended.notify_waiters();
        Ok(())
    }

    async fn subscribe(&self, group: &str, topics: &[String]) -> Result<MemorySubscription, Error> {
        Ok(MemorySubscription {
            log: self.clone(),
            group: group.to_owned(),
            topics: topics.to_vec(),
            positions: BTreeMap::new(),
        })
    }

    async fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), Error> {
        let count = usize::try_from(partitions.max(1)).unwrap_or(1);
        lock(&self.shared.state)
            .topics
            .entry(topic.to_owned())
            .or_insert_with(|| vec![Vec::new(); count]);
        Ok(())
    }

    async fn end_offsets(&self, topics: &[String]) -> Result<Vec<CommitPosition>, Error> {
        let state = lock(&self.shared.state);
        let mut ends = Vec::new();
        for topic in topics {
            for (partition, records) in state.topics.get(topic).into_iter().flatten().enumerate() {
                ends.push(CommitPosition {
                    topic: topic.clone(),
                    partition: i32::try_from(partition).unwrap_or(i32::MAX),
                    next_offset: records.len() as i64,
                });
            }
        }
        Ok(ends)
    }

    async fn lag(&self, group: &str, topics: &[String]) -> Result<i64, Error> {
        let ends = self.end_offsets(topics).await?;
        let state = lock(&self.shared.state);
        Ok(ends
            .into_iter()
            .map(|end| {
                let key = (group.to_owned(), end.topic, end.partition);
                end.next_offset - state.committed.get(&key).copied().unwrap_or(0)
            })
            .sum())
    }
}

/// The one member of a consumer group on a [`MemoryLog`].
#[derive(Debug)]
pub struct MemorySubscription {
    log: MemoryLog,
    group: String,
    topics: Vec<String>,
    /// (topic, partition) → the next offset this member reads; a partition first seen
    /// starts at the group's committed offset.
    positions: BTreeMap<(String, i32), i64>,
}

impl MemorySubscription {
    fn take(&mut self, max: usize) -> Vec<Record> {
        let state = lock(&self.log.shared.state);
        let mut records = Vec::new();
        for topic in &self.topics {
            for (partition, part) in state.topics.get(topic).into_iter().flatten().enumerate() {
                let partition = i32::try_from(partition).unwrap_or(i32::MAX);
                let next = self
                    .positions
                    .entry((topic.clone(), partition))
                    .or_insert_with(|| {
                        let key = (self.group.clone(), topic.clone(), partition);
                        state.committed.get(&key).copied().unwrap_or(0)
                    });
                let from = usize::try_from(*next).unwrap_or(0).min(part.len());
                let room = max - records.len();
                let taken = &part[from..(from + room).min(part.len())];
                *next += taken.len() as i64;
                records.extend_from_slice(taken);
                if records.len() == max {
                    return records;
                }
            }
        }
        records
    }
}

impl Subscription for MemorySubscription {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, Error> {
        let shared = Arc::clone(&self.log.shared);
        let appended = shared.appended.notified();
        tokio::pin!(appended);
        appended.as_mut().enable();
        let records = self.take(max);
        if !records.is_empty() {
            return Ok(records);
        }
        let _ = tokio::time::timeout(wait, appended).await;
        Ok(self.take(max))
    }

    async fn commit(&self, positions: &[CommitPosition]) -> Result<(), Error> {
        let mut state = lock(&self.log.shared.state);
        for p in positions {
            let key = (self.group.clone(), p.topic.clone(), p.partition);
            state.committed.insert(key, p.next_offset);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(key: &str) -> Envelope {
        Envelope::new("t", key, "{}".into())
    }

    #[tokio::test]
    async fn a_group_resumes_at_its_committed_offsets() {
        let log = MemoryLog::default();
        log.create_topic("t", 2).await.expect("create");
        log.publish(&[message("a"), message("b"), message("a")])
            .await
            .expect("publish");
        let topics = vec!["t".to_owned()];
        let mut first = log.subscribe("g", &topics).await.expect("subscribe");
        let read = first.poll(10, Duration::ZERO).await.expect("poll");
        assert_eq!(read.len(), 3);
        let a: Vec<(i32, i64)> = read
            .iter()
            .filter(|r| r.envelope.key == "a")
            .map(|r| (r.partition, r.offset))
            .collect();
        assert_eq!(a.len(), 2);
        assert!(
            a[0].0 == a[1].0 && a[0].1 < a[1].1,
            "one key's records keep their order in one partition: {a:?}"
        );
        let upto = &read[0];
        let commit = CommitPosition {
            topic: "t".into(),
            partition: upto.partition,
            next_offset: upto.offset + 1,
        };
        first.commit(&[commit]).await.expect("commit");
        assert_eq!(log.lag("g", &topics).await.expect("lag"), 2);
        let mut again = log.subscribe("g", &topics).await.expect("subscribe");
        assert_eq!(again.poll(10, Duration::ZERO).await.expect("poll").len(), 2);
    }

    #[tokio::test]
    async fn the_outbox_hands_out_a_message_until_it_is_marked() {
        let outbox = MemoryOutbox::default();
        outbox.append([message("a"), message("b")]);
        let batch = outbox.fetch_unpublished(1).await.expect("fetch");
        assert_eq!(batch.messages[0].key, "a");
        assert_eq!(
            outbox
                .fetch_unpublished(10)
                .await
                .expect("fetch")
                .positions
                .len(),
            2
        );
        outbox.mark_published(&batch).await.expect("mark");
        let rest = outbox.fetch_unpublished(10).await.expect("fetch");
        assert_eq!(rest.messages.len(), 1);
        assert_eq!(rest.messages[0].key, "b");
        let pending = outbox.pending().await.expect("pending").expect("known");
        assert_eq!(pending.count, 1);
    }
}
