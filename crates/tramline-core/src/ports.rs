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
}

/// The application side of a consumer: applies records with an exactly-once effect.
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
