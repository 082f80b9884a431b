//! The transactional consumer every service (and the view) runs: dedupe records, the effect
//! and the events the effect emits, all in one transaction.

use super::ServiceDb;
use crate::error::Result;
use crate::events::DomainEvent;
use std::future::Future;
use tramline_core::ports::{Applied, Handler};
use tramline_core::{Error, Record};
use tramline_sql::{Inbox, Tx};

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

/// A [`Handler`] that runs a [`Reaction`] with exactly-once effect.
pub struct Subscriber<R> {
    db: ServiceDb,
    inbox: Inbox,
    reaction: R,
}

impl<R: Reaction> Subscriber<R> {
    /// A subscriber named `consumer` (its dedupe namespace) writing to `db`.
    pub fn new(db: ServiceDb, consumer: &str, reaction: R) -> Self {
        Subscriber {
            db,
            inbox: Inbox::new(consumer),
            reaction,
        }
    }

    /// The reaction, e.g. to read its counters.
    pub fn reaction(&self) -> &R {
        &self.reaction
    }

    /// The inbox, e.g. to count parked messages.
    pub fn inbox(&self) -> &Inbox {
        &self.inbox
    }
}

impl<R: Reaction> Handler for Subscriber<R> {
    async fn apply(&self, batch: &[Record]) -> Result<Applied, Error> {
        if batch.is_empty() {
            return Ok(Applied::default());
        }
        // Decode before claiming: a poison message must leave no dedupe record behind.
        let mut events = Vec::with_capacity(batch.len());
        for record in batch {
            events.push(DomainEvent::decode(&record.envelope).map_err(|e| e.into_core(record))?);
        }
        let mut tx = self.db.begin(R::STORE).await?;
        let new = self.inbox.claim(&mut tx, batch).await?;
        let fresh: Vec<DomainEvent> = events
            .into_iter()
            .zip(&new)
            .filter_map(|(event, new)| new.then_some(event))
            .collect();
        let out = Applied {
            applied: fresh.len(),
            duplicates: batch.len() - fresh.len(),
        };
        // A refusal by the domain names the batch's first record; the runtime then re-applies
        // record by record to find the one to park.
        let emitted = self
            .reaction
            .react(&mut tx, fresh)
            .await
            .map_err(|e| e.into_core(&batch[0]))?;
        self.db.commit(tx, R::STORE, &emitted).await?;
        for (record, _) in batch.iter().zip(&new).filter(|(_, new)| **new) {
            self.reaction.applied(record);
        }
        Ok(out)
    }

    async fn park(&self, record: &Record, reason: &Error) -> Result<(), Error> {
        Ok(self.inbox.park(&self.db.db, record, reason).await?)
    }
}
