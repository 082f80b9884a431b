//! The services' consumers: a [`Reaction`] on the transactional consumer every tramline
//! consumer runs ([`TransactionalConsumer`]): dedupe records, the effect and the events the
//! effect emits, all in one transaction.

use super::ServiceDb;
use crate::error::Result;
use crate::events::DomainEvent;
use std::future::Future;
use tramline_core::ports::{Applied, Handler};
use tramline_core::{Error, Record};
use tramline_sql::parked::{BoxFuture, ParkPolicy, ParkedError, ParkedOps, Released};
use tramline_sql::{Apply, Inbox, TransactionalConsumer, Tx};

/// What a consumer does with a batch of new events inside the batch's transaction.
pub trait Reaction: Send + Sync + 'static {
    /// Store name for error messages.
    const STORE: &'static str;

    /// Applies `events` (never seen before, in delivery order) in `tx` and returns the events
    /// the changes emit (may be none).
    fn react<'a>(
        &'a self,
        tx: &'a mut Tx,
        events: Vec<DomainEvent>,
    ) -> impl Future<Output = Result<Vec<DomainEvent>>> + Send + 'a;

    /// Called once the batch's transaction committed, for each record whose event was
    /// applied (not for duplicates), e.g. to log it with the record's trace context. The
    /// default does nothing. It runs per record on the hot path: keep it cheap.
    fn applied(&self, _record: &Record) {}
}

/// A [`Reaction`] as the transactional consumer's [`Apply`]: the events decoded, the
/// reaction run, and what it emits appended to the service's outbox in the same transaction.
#[derive(Debug)]
pub struct Reacting<R> {
    db: ServiceDb,
    reaction: R,
}

impl<R: Reaction> Apply for Reacting<R> {
    type Item = DomainEvent;
    type Output = Vec<DomainEvent>;

    fn store(&self) -> &str {
        R::STORE
    }

    fn decode(&self, record: &Record) -> std::result::Result<Option<DomainEvent>, Error> {
        DomainEvent::decode(&record.envelope)
            .map(Some)
            .map_err(|e| e.into_core(record))
    }

    async fn apply(
        &self,
        tx: &mut Tx,
        events: Vec<DomainEvent>,
        batch: &[Record],
    ) -> std::result::Result<Vec<DomainEvent>, Error> {
        // A refusal by the domain names the batch's first record; the runtime then re-applies
        // record by record to find the one to park.
        self.reaction
            .react(tx, events)
            .await
            .map_err(|e| e.into_core(&batch[0]))
    }

    async fn commit(&self, tx: Tx, emitted: Vec<DomainEvent>) -> std::result::Result<(), Error> {
        Ok(self.db.commit(tx, R::STORE, &emitted).await?)
    }

    fn applied(&self, record: &Record) {
        self.reaction.applied(record);
    }
}

/// A [`Handler`] that runs a [`Reaction`] with exactly-once effect, on the transactional
/// consumer every tramline consumer runs ([`TransactionalConsumer`]).
#[derive(Debug)]
pub struct Subscriber<R>(TransactionalConsumer<Reacting<R>>);

impl<R: Reaction> Subscriber<R> {
    /// A subscriber named `consumer` (its dedupe namespace) writing to `db`.
    pub fn new(db: ServiceDb, consumer: &str, reaction: R) -> Self {
        Subscriber(TransactionalConsumer::new(
            db.db.clone(),
            consumer,
            Reacting { db, reaction },
        ))
    }

    /// The reaction, e.g. to read its counters.
    pub fn reaction(&self) -> &R {
        &self.0.applier().reaction
    }

    /// The inbox, e.g. to count parked messages.
    pub fn inbox(&self) -> &Inbox {
        self.0.inbox()
    }

    /// What a parked message does to the later messages of its key.
    pub fn with_parking(self, parking: ParkPolicy) -> Self {
        Subscriber(self.0.with_parking(parking))
    }
}

impl<R: Reaction> ParkedOps for Subscriber<R> {
    fn consumer(&self) -> &str {
        self.0.consumer()
    }

    fn db(&self) -> &tramline_sql::Db {
        ParkedOps::db(&self.0)
    }

    fn retry(&self, id: i64) -> BoxFuture<'_, std::result::Result<Released, ParkedError>> {
        self.0.retry(id)
    }

    fn skip(&self, id: i64) -> BoxFuture<'_, std::result::Result<Released, ParkedError>> {
        self.0.skip(id)
    }
}

impl<R: Reaction> Handler for Subscriber<R> {
    async fn apply(&self, batch: &[Record]) -> std::result::Result<Applied, Error> {
        self.0.apply(batch).await
    }

    async fn park(&self, record: &Record, reason: &Error) -> std::result::Result<(), Error> {
        self.0.park(record, reason).await
    }
}
