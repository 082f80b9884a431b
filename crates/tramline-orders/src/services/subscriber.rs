//! The transactional consumer every service (and the view) runs: dedupe record, effect and the
//! events the effect emits, all in one transaction.

use super::ServiceDb;
use crate::error::Result;
use crate::events::DomainEvent;
use std::future::Future;
use tramline_core::ports::{Applied, Handler};
use tramline_core::{Error, Record};
use tramline_sql::sqlite::{Inbox, WriteTx};

/// What a consumer does with one event inside the batch's transaction.
pub trait Reaction: Send + Sync + 'static {
    /// Store name for error messages.
    const STORE: &'static str;

    /// Applies `event` in `tx` and returns the events the change emits (may be none).
    fn react<'a>(
        &'a self,
        tx: &'a mut WriteTx,
        event: DomainEvent,
    ) -> impl Future<Output = Result<Vec<DomainEvent>>> + Send + 'a;
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
        let mut tx = self.db.begin(R::STORE).await?;
        let mut out = Applied::default();
        let mut emitted = Vec::new();
        for record in batch {
            // Decode before claiming: a poison message must leave no dedupe record behind.
            let event = DomainEvent::decode(&record.envelope).map_err(|e| e.into_core(record))?;
            if !self.inbox.claim(&mut tx, record).await? {
                out.duplicates += 1;
                continue;
            }
            emitted.extend(self.reaction.react(&mut tx, event).await.map_err(|e| e.into_core(record))?);
            out.applied += 1;
        }
        self.db.commit(tx, R::STORE, &emitted).await?;
        Ok(out)
    }

    async fn park(&self, record: &Record, reason: &Error) -> Result<(), Error> {
        Ok(self.inbox.park(&self.db.pool, record, reason).await?)
    }
}
