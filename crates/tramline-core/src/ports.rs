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
