//! A consumer group member: librdkafka's consumer, polled on its own thread.
//!
//! The decision to know: the consumer is polled on a dedicated thread, not on the async
//! runtime, because librdkafka runs rebalance callbacks inside `poll`, and a revocation must
//! *block* there until the consumer runtime has finished the revoked partitions' records and
//! handed back their positions, which the callback then commits synchronously — only then does
//! the rebalance go on and the partitions move. Records and revocations travel to the runtime
//! through one channel, in order, so every record of a revoked partition reaches a lane
//! before its revocation does. The same thread serves librdkafka's statistics, which set the
//! member's lag gauges (see the `lag` module).

use crate::lag::LagGauges;
use crate::transport::Positions;
use crate::{KafkaConfig, KafkaError, KafkaTransport};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError as ClientError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message, Timestamp};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tramline_core::offsets::CommitPosition;
use tramline_core::ports::{Revocation, Subscription};
use tramline_core::wire::{RawRecord, WireFormat};
use tramline_core::{Error, Record};

/// Header set on a record whose value is not in its topic's envelope format; the handler
/// refuses such a record as poison, so it is parked with this reason rather than lost.
pub use tramline_core::wire::DECODE_ERROR;

/// Records fetched ahead of the consumer runtime.
const CHANNEL_CAPACITY: usize = 4096;

/// What the polling thread hands to the subscription.
enum Delivery {
    Record(Record),
    Revoked(Revocation),
    Stopped(String),
}

/// The consumer's context: serves rebalances on the polling thread.
struct MemberContext {
    config: Arc<KafkaConfig>,
    group: String,
    deliveries: mpsc::Sender<Delivery>,
    positions: Arc<Positions>,
    lag: LagGauges,
}

impl ClientContext for MemberContext {
    fn stats_raw(&self, statistics: &[u8]) {
        if let Err(e) = self.lag.report(statistics) {
            tracing::debug!(group = %self.group, error = %tramline_core::error::sentence(&e), "librdkafka statistics unreadable; lag gauges not updated");
        }
    }
}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        if revoked.count() == 0 {
            return;
        }
        let partitions = revoked
            .elements()
            .iter()
            .map(|e| {
                (
                    self.config.topics.topic_of(e.topic()).to_owned(),
                    e.partition(),
                )
            })
            .collect();
        let (revocation, handed_back) = Revocation::new(partitions);
        if self
            .deliveries
            .blocking_send(Delivery::Revoked(revocation))
            .is_err()
        {
            return; // the subscription is gone: nothing in flight to hand over
        }
        let positions = match handed_back.recv_timeout(self.config.revoke_timeout) {
            Ok(positions) => positions,
            Err(_) => {
                tracing::warn!(group = %self.group, "revoked partitions were not handed back in time; the next owner redelivers from the last commit");
                return;
            }
        };
        if positions.is_empty() {
            return;
        }
        if consumer.assignment_lost() {
            tracing::warn!(group = %self.group, "partitions were lost before their offsets could be committed; the next owner redelivers");
            return;
        }
        match commit_list(&self.config, &positions)
            .and_then(|list| consumer.commit(&list, CommitMode::Sync))
        {
            Ok(()) => self.note_committed(&positions),
            Err(e) => {
                tracing::warn!(group = %self.group, error = %tramline_core::error::sentence(&e), "committing revoked partitions failed; the next owner redelivers")
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let assigned = match rebalance {
            Rebalance::Assign(assigned) => assigned,
            Rebalance::Revoke(revoked) => {
                self.lag.revoked(revoked);
                return;
            }
            Rebalance::Error(_) => return,
        };
        self.lag.assigned(assigned);
        // Where the group stands on the new partitions, for `lag`.
        match consumer.committed_offsets((*assigned).clone(), self.config.connect_timeout) {
            Ok(committed) => {
                for e in committed.elements() {
                    if let Offset::Offset(next) = e.offset() {
                        self.positions
                            .committed(&self.group, e.topic(), e.partition(), next);
                    }
                }
            }
            Err(e) => {
                tracing::debug!(group = %self.group, error = %tramline_core::error::sentence(&e), "reading committed offsets after an assignment failed")
            }
        }
    }
}

impl MemberContext {
    fn note_committed(&self, positions: &[CommitPosition]) {
        for p in positions {
            self.positions.committed(
                &self.group,
                &self.config.topics.cluster_name(&p.topic),
                p.partition,
                p.next_offset,
            );
        }
    }
}

/// The positions as librdkafka's list, under the topics' cluster names.
fn commit_list(
    config: &KafkaConfig,
    positions: &[CommitPosition],
) -> Result<TopicPartitionList, ClientError> {
    let mut list = TopicPartitionList::new();
    for p in positions {
        list.add_partition_offset(
            &config.topics.cluster_name(&p.topic),
            p.partition,
            Offset::Offset(p.next_offset),
        )?;
    }
    Ok(list)
}

/// One member of a consumer group on Kafka.
pub struct KafkaSubscription {
    consumer: Arc<BaseConsumer<MemberContext>>,
    deliveries: mpsc::Receiver<Delivery>,
    revoked: Option<Revocation>,
    stop: Arc<AtomicBool>,
    /// The polling thread, to wait for in [`Subscription::close`].
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for KafkaSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSubscription")
            .field("group", &self.consumer.context().group)
            .finish_non_exhaustive()
    }
}

impl KafkaSubscription {
    /// Joins `group` on `topics` and starts the polling thread.
    pub(crate) fn start(
        transport: &KafkaTransport,
        group: &str,
        topics: &[String],
    ) -> Result<Self, KafkaError> {
        let config = transport.shared_config();
        let group_id = config.group_id(group);
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let context = MemberContext {
            config: Arc::clone(&config),
            group: group_id.clone(),
            deliveries: tx.clone(),
            positions: transport.positions(),
            lag: LagGauges::new(group, Arc::clone(&config)),
        };
        let consumer: BaseConsumer<MemberContext> = config
            .consumer(&group_id)
            .create_with_context(context)
            .map_err(KafkaError::Config)?;
        let names: Vec<String> = topics
            .iter()
            .map(|t| config.topics.cluster_name(t))
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        consumer
            .subscribe(&refs)
            .map_err(|source| KafkaError::Operation {
                operation: "subscribe",
                source,
            })?;
        let consumer = Arc::new(consumer);
        let stop = Arc::new(AtomicBool::new(false));
        let polling = Poller {
            consumer: Arc::clone(&consumer),
            config,
            deliveries: tx,
            stop: Arc::clone(&stop),
        };
        let thread = std::thread::Builder::new()
            .name(format!("kafka-{group_id}"))
            .spawn(move || polling.run())
            .map_err(|e| KafkaError::ConsumerStopped {
                group: group_id,
                reason: format!("cannot start the polling thread: {e}"),
            })?;
        Ok(KafkaSubscription {
            consumer,
            deliveries: rx,
            revoked: None,
            stop,
            thread: Some(thread),
        })
    }

    fn stopped(&self, reason: String) -> Error {
        KafkaError::ConsumerStopped {
            group: self.consumer.context().group.clone(),
            reason,
        }
        .into()
    }
}

impl Drop for KafkaSubscription {
    fn drop(&mut self) {
        // The polling thread leaves the group and closes the consumer.
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Subscription for KafkaSubscription {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, Error> {
        let mut out = Vec::new();
        if self.revoked.is_some() {
            return Ok(out); // the runtime must hand the revoked partitions back first
        }
        let first = match tokio::time::timeout(wait, self.deliveries.recv()).await {
            // The rebalance callback keeps a sender, so a polling thread that died (a panic)
            // does not close the channel: look at the thread itself.
            Err(_elapsed) if self.thread.as_ref().is_some_and(|t| t.is_finished()) => {
                return Err(self.stopped("the polling thread ended".into()))
            }
            Err(_elapsed) => return Ok(out),
            Ok(None) => return Err(self.stopped("the polling thread ended".into())),
            Ok(Some(d)) => d,
        };
        let mut next = Some(first);
        while let Some(delivery) = next.take() {
            match delivery {
                Delivery::Record(r) => out.push(r),
                Delivery::Revoked(r) => {
                    self.revoked = Some(r);
                    break;
                }
                Delivery::Stopped(reason) => return Err(self.stopped(reason)),
            }
            if out.len() < max {
                next = self.deliveries.try_recv().ok();
            }
        }
        Ok(out)
    }

    async fn commit(&self, positions: &[CommitPosition]) -> Result<(), Error> {
        let config = &self.consumer.context().config;
        let list = commit_list(config, positions).map_err(|source| KafkaError::Operation {
            operation: "commit offsets",
            source,
        })?;
        let consumer = Arc::clone(&self.consumer);
        let committed =
            tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync))
                .await
                .map_err(|e| self.stopped(format!("the commit call panicked: {e}")))?;
        match committed {
            Ok(()) => {
                self.consumer.context().note_committed(positions);
                Ok(())
            }
            // This member lost its partitions (a rebalance it missed, e.g. while the broker was
            // away): the commit is refused, and the next owner redelivers from the group's last
            // commit, which the handlers absorb. Not a reason to stop.
            Err(ClientError::ConsumerCommit(
                RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::AssignmentLost,
            )) => {
                tracing::info!("offset commit refused after a rebalance; the partitions' next owner redelivers");
                Ok(())
            }
            Err(source) => Err(KafkaError::Operation {
                operation: "commit offsets",
                source,
            }
            .into()),
        }
    }

    fn take_revocation(&mut self) -> Option<Revocation> {
        self.revoked.take()
    }

    async fn close(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take();
        // The thread holds the last handle but one; it closes the consumer once this one goes.
        drop(self);
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// The polling thread's state.
struct Poller {
    consumer: Arc<BaseConsumer<MemberContext>>,
    config: Arc<KafkaConfig>,
    deliveries: mpsc::Sender<Delivery>,
    stop: Arc<AtomicBool>,
}

impl Poller {
    fn run(self) {
        while !self.stop.load(Ordering::Relaxed) {
            let delivery = match self.consumer.poll(Duration::from_millis(100)) {
                None => continue,
                Some(Ok(message)) => Delivery::Record(self.record(&message)),
                Some(Err(ClientError::MessageConsumption(RDKafkaErrorCode::Fatal))) => {
                    Delivery::Stopped("librdkafka reported a fatal error".into())
                }
                Some(Err(e)) => {
                    // Broker away, partition leader moving, …: librdkafka recovers by itself.
                    tracing::debug!(error = %tramline_core::error::sentence(&e), "Kafka consumer error");
                    continue;
                }
            };
            let fatal = matches!(delivery, Delivery::Stopped(_));
            if self.deliveries.blocking_send(delivery).is_err() || fatal {
                break;
            }
        }
        // Leave the group, serving the final revocation, before the thread ends, so that a
        // member that closes is gone from the group when `close` returns.
        self.consumer.unsubscribe();
        let deadline = std::time::Instant::now() + self.config.connect_timeout;
        while self.consumer.assignment().is_ok_and(|a| a.count() > 0)
            && std::time::Instant::now() < deadline
        {
            let _ = self.consumer.poll(Duration::from_millis(50));
        }
        if let Ok(consumer) = Arc::try_unwrap(self.consumer) {
            drop(consumer); // closes: LeaveGroup, then waits for the close to finish
        }
    }

    /// The record's envelope in its topic's format; a value that does not decode still
    /// becomes a record (marked with [`DECODE_ERROR`]), so that it is parked, not lost or fatal.
    fn record(&self, message: &BorrowedMessage<'_>) -> Record {
        let topic = self.config.topics.topic_of(message.topic());
        let timestamp_ms = match message.timestamp() {
            Timestamp::CreateTime(ms) | Timestamp::LogAppendTime(ms) => Some(ms),
            Timestamp::NotAvailable => None,
        };
        let headers: Vec<(&str, &[u8])> = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key, h.value.unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        let raw = RawRecord {
            topic,
            partition: message.partition(),
            offset: message.offset(),
            key: message.key(),
            value: message.payload().unwrap_or_default(),
            headers: &headers,
            timestamp_ms,
        };
        let envelope = match self.config.formats.get(message.topic()) {
            Some(format) => format.envelope(&raw),
            None => WireFormat::Eventuate.envelope(&raw),
        };
        Record {
            envelope,
            partition: message.partition(),
            offset: message.offset(),
        }
    }
}
