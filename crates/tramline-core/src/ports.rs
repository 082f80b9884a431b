//! The ports: what an outbox, a transport and a message handler must offer.
//!
//! Every port is at-least-once: an outbox may hand out a message again until it is marked
//! published, a transport may redeliver until an offset is committed. Handlers absorb the
//! duplicates (see [`Handler::apply`]).

use crate::offsets::CommitPosition;
use crate::{Envelope, Error, Record};
use std::future::Future;
use std::time::Duration;
use tokio::sync::Notify;

/// A batch of unpublished outbox messages, in commit order.
#[derive(Debug, Default, Clone)]
pub struct OutboxBatch {
    /// Store positions of the messages, to mark them published.
    pub positions: Vec<i64>,
    /// The messages, in the order they must be published.
    pub messages: Vec<Envelope>,
}

impl OutboxBatch {
    /// Whether the batch holds no message.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

/// What an outbox holds unpublished, for the relay's backlog gauges.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// Unpublished messages.
    pub count: u64,
    /// Creation time (ms since the Unix epoch) of the oldest unpublished message; `None` when
    /// there is none (or the store does not know it).
    pub oldest_created_at_ms: Option<i64>,
}

/// A transactional outbox a relay drains.
///
/// What a relay does with one, here on the in-memory outbox ([`crate::memory`]; the SQL
/// stores' `SqlOutbox` is the one services use):
///
/// ```
/// use tramline_core::memory::MemoryOutbox;
/// use tramline_core::ports::Outbox;
/// use tramline_core::Envelope;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tramline_core::Error> {
/// let outbox = MemoryOutbox::default();
/// outbox.append([Envelope::new("orders", "order-1", "{}".into())]);
/// let batch = outbox.fetch_unpublished(100).await?;
/// assert_eq!(batch.messages.len(), 1);
/// // ... the transport accepted the batch ...
/// outbox.mark_published(&batch).await?;
/// assert!(outbox.fetch_unpublished(100).await?.is_empty());
/// # Ok(())
/// # }
/// ```
pub trait Outbox: Send + Sync + 'static {
    /// Up to `max` unpublished messages, oldest commit first. Must never skip a message that
    /// committed later than one it returns but belongs before it.
    fn fetch_unpublished(
        &self,
        max: usize,
    ) -> impl Future<Output = Result<OutboxBatch, Error>> + Send;

    /// Marks the batch's messages published, so they are not fetched again.
    fn mark_published(&self, batch: &OutboxBatch)
        -> impl Future<Output = Result<(), Error>> + Send;

    /// Signalled after a transaction in this process wrote to the outbox, so the relay wakes at
    /// once instead of waiting for its next poll.
    fn wakeup(&self) -> &Notify;

    /// How many messages are unpublished and how old the oldest is, for monitoring; the relay
    /// asks at most once per `RelayConfig::sample_interval`, so it may cost a count. `None`
    /// (the default) means the outbox cannot tell, and the relay then emits no backlog gauges.
    fn pending(&self) -> impl Future<Output = Result<Option<Pending>, Error>> + Send {
        async { Ok(None) }
    }
}

/// A message transport: the embedded log or a Kafka cluster.
///
/// Publishing, and a consumer group reading from where it last committed, on the in-memory
/// log ([`crate::memory::MemoryLog`]):
///
/// ```
/// use std::time::Duration;
/// use tramline_core::memory::MemoryLog;
/// use tramline_core::ports::{Subscription, Transport};
/// use tramline_core::Envelope;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tramline_core::Error> {
/// let log = MemoryLog::default();
/// log.create_topic("orders", 4).await?;
/// let placed = Envelope::new("orders", "order-1", r#"{"status":"PLACED"}"#.into());
/// log.publish(&[placed.clone()]).await?;
/// let topics = ["orders".to_owned()];
/// let mut view = log.subscribe("order-view", &topics).await?;
/// let records = view.poll(100, Duration::from_millis(10)).await?;
/// assert_eq!(records[0].envelope.id, placed.id);
/// assert_eq!(log.lag("order-view", &topics).await?, 1, "read, not yet committed");
/// # Ok(())
/// # }
/// ```
pub trait Transport: Send + Sync + 'static {
    /// A consumer group member's view of its topics.
    type Subscription: Subscription;

    /// Appends the batch durably; messages of one key keep their order.
    fn publish(&self, batch: &[Envelope]) -> impl Future<Output = Result<(), Error>> + Send;

    /// Joins consumer group `group` on `topics`, resuming at the group's committed offsets.
    fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> impl Future<Output = Result<Self::Subscription, Error>> + Send;

    /// Creates `topic` with `partitions` partitions if it does not exist yet; an existing
    /// topic is left as it is (its partition count never shrinks, so keys never move).
    fn create_topic(
        &self,
        topic: &str,
        partitions: i32,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Where each partition of `topics` ends now: the offset the next record appended to it
    /// will get. A reader that has read every partition up to these has read everything
    /// published before the call (a rebuild replays up to them).
    fn end_offsets(
        &self,
        topics: &[String],
    ) -> impl Future<Output = Result<Vec<CommitPosition>, Error>> + Send;

    /// Records of `topics` that `group` has not committed yet, as far as this process can
    /// tell (on Kafka: what this process published, less what its members committed). Zero
    /// means every record this process knows of is applied.
    fn lag(
        &self,
        group: &str,
        topics: &[String],
    ) -> impl Future<Output = Result<i64, Error>> + Send;
}

/// Partitions a group member is about to give up (a rebalance moves them to another member).
///
/// The consumer runtime finishes the records of these partitions it holds, then hands their
/// final positions back with [`Revocation::complete`]; the transport commits them *before*
/// the partitions move, so the next owner starts exactly where this member stopped. Dropping
/// a revocation without completing it lets the partitions go uncommitted: the next owner
/// then redelivers from the last commit, and the handlers absorb the duplicates.
#[derive(Debug)]
pub struct Revocation {
    /// The revoked (topic, partition) pairs.
    pub partitions: Vec<(String, i32)>,
    done: std::sync::mpsc::SyncSender<Vec<CommitPosition>>,
}

impl Revocation {
    /// A revocation of `partitions`, and the receiver on which the transport waits for the
    /// positions to commit.
    pub fn new(
        partitions: Vec<(String, i32)>,
    ) -> (Self, std::sync::mpsc::Receiver<Vec<CommitPosition>>) {
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        (Revocation { partitions, done }, wait)
    }

    /// Hands back the positions to commit for the revoked partitions (those that advanced).
    pub fn complete(self, positions: Vec<CommitPosition>) {
        // The transport may have stopped waiting (its deadline passed): then the partitions
        // were given up uncommitted, which redelivers and is absorbed.
        let _ = self.done.send(positions);
    }
}

/// One consumer group member's stream of records.
///
/// Commit after the records' effects are durable; a member that joins later resumes there:
///
/// ```
/// use std::time::Duration;
/// use tramline_core::memory::MemoryLog;
/// use tramline_core::offsets::CommitPosition;
/// use tramline_core::ports::{Subscription, Transport};
/// use tramline_core::Envelope;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tramline_core::Error> {
/// let log = MemoryLog::default();
/// let first = Envelope::new("orders", "order-1", "{}".into());
/// log.publish(&[first, Envelope::new("orders", "order-1", "{}".into())]).await?;
/// let topics = ["orders".to_owned()];
/// let mut member = log.subscribe("order-view", &topics).await?;
/// let records = member.poll(1, Duration::ZERO).await?;
/// let done = &records[0]; // ... its effect committed ...
/// let position = CommitPosition {
///     topic: done.envelope.topic.clone(),
///     partition: done.partition,
///     next_offset: done.offset + 1,
/// };
/// member.commit(&[position]).await?;
/// member.close().await;
/// let mut next = log.subscribe("order-view", &topics).await?;
/// assert_eq!(next.poll(10, Duration::ZERO).await?[0].offset, 1);
/// # Ok(())
/// # }
/// ```
pub trait Subscription: Send + Sync + 'static {
    /// Up to `max` records after the current position, waiting at most `wait` if none is
    /// there yet (an empty result is not an error).
    fn poll(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<Record>, Error>> + Send;

    /// Durably records that the group resumes at these positions.
    fn commit(
        &self,
        positions: &[CommitPosition],
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// A revocation announced since the last poll, if any: every record of its partitions
    /// that a poll returned came before it. Transports whose members never lose partitions
    /// keep the default.
    fn take_revocation(&mut self) -> Option<Revocation> {
        None
    }

    /// Leaves the group and waits until it has: the group's other members get the partitions
    /// at once instead of after a session timeout. Dropping a subscription leaves without
    /// waiting.
    fn close(self) -> impl Future<Output = ()> + Send
    where
        Self: Sized,
    {
        async {}
    }
}

/// What a handler did with a batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Records whose effect was applied.
    pub applied: usize,
    /// Records skipped because their message id had been applied before.
    pub duplicates: usize,
    /// Records not applied but parked behind an earlier parked message of their key, which
    /// holds the key until an operator retries or skips it.
    pub held: usize,
}

/// The application side of a consumer: applies records with an exactly-once effect.
///
/// The SQL stores' `TransactionalConsumer` is the handler services use (effect and dedupe
/// record in one database transaction). A handler of one's own, run by the
/// [`ConsumerRuntime`](crate::consumer::ConsumerRuntime), here keeping its effect and its
/// dedupe records in memory:
///
/// ```
/// use std::collections::HashSet;
/// use std::sync::{Arc, Mutex};
/// use tokio_util::sync::CancellationToken;
/// use tramline_core::consumer::{ConsumerConfig, ConsumerRuntime};
/// use tramline_core::memory::MemoryLog;
/// use tramline_core::ports::{Applied, Handler, Transport};
/// use tramline_core::{Envelope, Error, Record};
///
/// #[derive(Default)]
/// struct Totals {
///     seen: Mutex<(HashSet<uuid::Uuid>, i64)>,
/// }
///
/// impl Handler for Totals {
///     async fn apply(&self, batch: &[Record]) -> Result<Applied, Error> {
///         let mut applied = Applied::default();
///         let mut state = self.seen.lock().expect("not poisoned");
///         for record in batch {
///             let amount: i64 = record.envelope.payload.parse()
///                 .map_err(|e| Error::poison(&record.envelope, e))?;
///             if state.0.insert(record.envelope.id) {
///                 state.1 += amount;
///                 applied.applied += 1;
///             } else {
///                 applied.duplicates += 1;
///             }
///         }
///         Ok(applied)
///     }
///
///     async fn park(&self, _record: &Record, _reason: &Error) -> Result<(), Error> {
///         Ok(()) // a real handler stores the record for an operator
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Error> {
/// let log = MemoryLog::default();
/// let payment = Envelope::new("payments", "order-1", "25".into());
/// // Published twice, as an at-least-once relay may: applied once.
/// log.publish(&[payment.clone(), payment, Envelope::new("payments", "order-2", "5".into())])
///     .await?;
/// let totals = Arc::new(Totals::default());
/// let runtime = ConsumerRuntime::new(Arc::clone(&totals), ConsumerConfig::default());
/// let stats = runtime.stats();
/// let subscription = log.subscribe("totals", &["payments".to_owned()]).await?;
/// let stop = CancellationToken::new();
/// let running = tokio::spawn({
///     let stop = stop.clone();
///     async move { runtime.run(subscription, stop).await }
/// });
/// while stats.applied.load(std::sync::atomic::Ordering::Relaxed) < 2 {
///     tokio::time::sleep(std::time::Duration::from_millis(5)).await;
/// }
/// stop.cancel();
/// running.await.expect("not panicked")?;
/// assert_eq!(totals.seen.lock().expect("not poisoned").1, 30);
/// # Ok(())
/// # }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Applies the batch — records of one lane, in delivery order — in **one** transaction
    /// together with a dedupe record per message id, skipping ids already recorded. Either
    /// everything commits or nothing does. A malformed or unknown message fails with
    /// [`Error::Poison`].
    fn apply(&self, batch: &[Record]) -> impl Future<Output = Result<Applied, Error>> + Send;

    /// Stores a record that can never be applied, with the reason, so that it is kept for an
    /// operator rather than lost; the record counts as handled afterwards.
    fn park(
        &self,
        record: &Record,
        reason: &Error,
    ) -> impl Future<Output = Result<(), Error>> + Send;
}
