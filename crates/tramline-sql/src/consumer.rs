//! The transactional consumer: the one path every tramline consumer takes, the services'
//! reactions and every declared view alike. Per batch: decode every record (a record that
//! does not decode is poison, and leaves no dedupe record behind), then in **one**
//! transaction claim the message ids in the inbox, apply what the new records carry, and
//! commit; the consumer runtime commits the transport's offsets only after that. What is
//! applied is the [`Apply`] implementation's business.

use crate::parked::{self, ParkPolicy, ParkedError, ParkedMessage, Released};
use crate::{Db, Inbox, SqlError, Tx};
use std::future::Future;
use tramline_core::changes::ChangeFeed;
use tramline_core::ports::{Applied, Handler};
use tramline_core::{Error, Record};

/// What a consumer does with a batch's records, inside its transaction.
///
/// A handler of one's own, counting each payment once per order with plain sqlx on the
/// consumer's transaction ([`Tx::conn`]); [`TransactionalConsumer`] adds the dedupe records
/// to that transaction, so a redelivered payment is never counted twice:
///
/// ```no_run
/// use tramline_core::{Error, Record};
/// use tramline_sql::{Apply, Conn, SqlError, Tx};
///
/// struct PaymentCount;
///
/// impl Apply for PaymentCount {
///     type Item = String; // the order id
///     type Output = ();
///
///     fn store(&self) -> &str {
///         "payment counts"
///     }
///
///     fn decode(&self, record: &Record) -> Result<Option<String>, Error> {
///         let payload: serde_json::Value = serde_json::from_str(&record.envelope.payload)
///             .map_err(|e| Error::poison(&record.envelope, e))?;
///         Ok(payload["orderId"].as_str().map(str::to_owned))
///     }
///
///     async fn apply(&self, tx: &mut Tx, orders: Vec<String>, _: &[Record]) -> Result<(), Error> {
///         let Conn::Postgres(conn) = tx.conn() else {
///             return Err(Error::Config("payment counts live in PostgreSQL".into()));
///         };
///         for order in orders {
///             sqlx::query("INSERT INTO payment_counts (order_id, n) VALUES ($1, 1) \
///                          ON CONFLICT (order_id) DO UPDATE SET n = payment_counts.n + 1")
///                 .bind(order)
///                 .execute(&mut *conn)
///                 .await
///                 .map_err(SqlError::at(self.store(), "count a payment"))?;
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Apply: Send + Sync + 'static {
    /// A decoded record.
    type Item: Send;
    /// What applying a batch leaves for [`Apply::commit`] (e.g. messages for an outbox).
    type Output: Send;
    /// The store's name, for errors and metrics (a constant, or chosen at run time).
    fn store(&self) -> &str;

    /// The record decoded; `None` for a record that changes nothing here. An error is poison:
    /// the runtime parks the record with it.
    fn decode(&self, record: &Record) -> Result<Option<Self::Item>, Error>;

    /// Applies the new records' items in `tx` (`batch`: the whole batch, for an error that
    /// must name a record; the runtime then re-applies record by record to find the one).
    fn apply(
        &self,
        tx: &mut Tx,
        items: Vec<Self::Item>,
        batch: &[Record],
    ) -> impl Future<Output = Result<Self::Output, Error>> + Send;

    /// Commits `tx` with what [`Apply::apply`] left; by default it just commits.
    fn commit(
        &self,
        tx: Tx,
        output: Self::Output,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        let _ = output;
        async move { Ok(tx.commit(self.store()).await?) }
    }

    /// Called for each applied record after the commit (on the hot path: keep it cheap).
    fn applied(&self, _record: &Record) {}

    /// The key of the row `item` changes, for a [`ChangeFeed`] (a read model's view key);
    /// `None` by default: the consumer publishes nothing.
    fn key<'a>(&self, _item: &'a Self::Item) -> Option<&'a str> {
        None
    }
}

/// A [`Handler`] applying `A` with an exactly-once effect (see the module).
#[derive(Debug)]
pub struct TransactionalConsumer<A> {
    db: Db,
    inbox: Inbox,
    applier: A,
    parking: ParkPolicy,
    changes: Option<ChangeFeed>,
}

impl<A: Apply> TransactionalConsumer<A> {
    /// A consumer writing to `db` with `applier`, its dedupe records under `consumer`; a
    /// parked message holds its key ([`ParkPolicy::HoldKey`]).
    pub fn new(db: Db, consumer: &str, applier: A) -> Self {
        TransactionalConsumer {
            db,
            inbox: Inbox::new(consumer),
            applier,
            parking: ParkPolicy::default(),
            changes: None,
        }
    }

    /// Publishes the keys ([`Apply::key`]) of each committed batch's applied items on
    /// `feed`, while anyone listens (the web console's live rows).
    pub fn with_changes(mut self, feed: ChangeFeed) -> Self {
        self.changes = Some(feed);
        self
    }

    /// The keys of `items` when someone listens to the feed; `None` otherwise.
    fn keys_of(&self, items: &[A::Item]) -> Option<Vec<String>> {
        self.changes.as_ref().filter(|f| f.listening())?;
        Some(
            items
                .iter()
                .filter_map(|item| self.applier.key(item).map(str::to_owned))
                .collect(),
        )
    }

    /// Publishes `keys` (collected by [`Self::keys_of`]) after their commit.
    fn publish(&self, keys: Option<Vec<String>>) {
        if let (Some(feed), Some(keys)) = (&self.changes, keys) {
            feed.publish(keys);
        }
    }

    /// What a parked message does to the later messages of its key.
    pub fn with_parking(mut self, parking: ParkPolicy) -> Self {
        self.parking = parking;
        self
    }

    /// What it applies with, e.g. to read its counters.
    pub fn applier(&self) -> &A {
        &self.applier
    }

    /// The inbox, e.g. to count parked messages.
    pub fn inbox(&self) -> &Inbox {
        &self.inbox
    }

    /// The database it writes.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Applies parked message `id` again — under [`ParkPolicy::HoldKey`], its key's parked
    /// messages from the first, in order — each in a transaction of its own with its dedupe
    /// record, until one fails again (it stays parked with the new error) or none is left.
    pub async fn retry_parked(&self, id: i64) -> Result<Released, ParkedError> {
        let message = self.parked(id).await?;
        let mut released = Released::default();
        match self.parking {
            ParkPolicy::Message => {
                self.attempt(&message, &mut released).await?;
            }
            ParkPolicy::HoldKey => self.release_key(&message.key, &mut released).await?,
        }
        Ok(released)
    }

    /// Records parked message `id` as handled without applying it (a redelivered copy is a
    /// duplicate), then — under [`ParkPolicy::HoldKey`] — retries the messages held behind
    /// it. Under that policy only the key's first parked message can be skipped.
    pub async fn skip_parked(&self, id: i64) -> Result<Released, ParkedError> {
        let message = self.parked(id).await?;
        if self.parking == ParkPolicy::HoldKey {
            let first = parked::first_of_key(&self.db, self.inbox.consumer(), &message.key)
                .await?
                .map_or(id, |m| m.id);
            if first != id {
                return Err(ParkedError::NotFirst { id, first });
            }
        }
        let record = message.record()?;
        let store = self.applier.store();
        let mut tx = self.db.begin(store).await?;
        if delete_parked(&mut tx, id).await? {
            self.inbox
                .claim(&mut tx, std::slice::from_ref(&record))
                .await?;
        }
        tx.commit(store).await?;
        let mut released = Released {
            skipped: Some(id),
            ..Released::default()
        };
        if self.parking == ParkPolicy::HoldKey {
            self.release_key(&message.key, &mut released).await?;
        }
        Ok(released)
    }

    async fn parked(&self, id: i64) -> Result<ParkedMessage, ParkedError> {
        let message = parked::get(&self.db, id)
            .await?
            .ok_or(ParkedError::NotFound(id))?;
        if message.consumer != self.inbox.consumer() {
            return Err(ParkedError::OtherConsumer {
                id,
                consumer: message.consumer,
            });
        }
        Ok(message)
    }

    /// Applies the key's parked messages in order until one fails or none is left.
    async fn release_key(&self, key: &str, released: &mut Released) -> Result<(), ParkedError> {
        while let Some(next) = parked::first_of_key(&self.db, self.inbox.consumer(), key).await? {
            if !self.attempt(&next, released).await? {
                break;
            }
        }
        Ok(())
    }

    /// Applies one parked message in one transaction: its parked row deleted, its id
    /// claimed, its effect applied. False when it failed again: it stays parked, not held,
    /// with the new error.
    async fn attempt(
        &self,
        message: &ParkedMessage,
        released: &mut Released,
    ) -> Result<bool, ParkedError> {
        let record = message.record()?;
        let batch = std::slice::from_ref(&record);
        let store = self.applier.store();
        let mut tx = self.db.begin(store).await?;
        if !delete_parked(&mut tx, message.id).await? {
            return Ok(true); // released meanwhile by someone else
        }
        let new = self.inbox.claim(&mut tx, batch).await?;
        if !new[0] {
            tx.commit(store).await?;
            released.duplicates.push(message.id);
            return Ok(true);
        }
        let mut keys = None;
        let outcome = async {
            let items: Vec<A::Item> = self.applier.decode(&record)?.into_iter().collect();
            keys = self.keys_of(&items);
            let output = self.applier.apply(&mut tx, items, batch).await?;
            Ok::<_, Error>(output)
        }
        .await;
        let committed = match outcome {
            Ok(output) => self.applier.commit(tx, output).await,
            Err(e) => {
                drop(tx);
                Err(e)
            }
        };
        match committed {
            Ok(()) => {
                self.applier.applied(&record);
                self.publish(keys);
                released.applied.push(message.id);
                Ok(true)
            }
            Err(e) if e.is_transient() => Err(ParkedError::Apply(e)),
            Err(e) => {
                let reason = tramline_core::error::sentence(&e);
                let mut stmt = self
                    .db
                    .stmt("UPDATE tramline_parked SET held = 0, reason = ");
                stmt.bind(&reason).push(" WHERE id = ").bind(message.id);
                self.db
                    .execute(&stmt, "parked", "record the new error")
                    .await?;
                released.still_parked = Some((message.id, reason));
                Ok(false)
            }
        }
    }
}

/// Deletes parked row `id` in `tx`; false if it was not there.
async fn delete_parked(tx: &mut Tx, id: i64) -> Result<bool, SqlError> {
    let mut stmt = tx.stmt("DELETE FROM tramline_parked WHERE id = ");
    stmt.bind(id);
    Ok(tx
        .execute(&stmt, "parked", "release a parked message")
        .await?
        > 0)
}

/// The error of applying `batch`, as poison when the database refused the data (see
/// [`SqlError::refuses_data`]): the runtime then applies record by record and parks the one
/// refused, rather than stopping.
fn condemn(e: Error, batch: &[Record]) -> Error {
    match (&e, batch.first()) {
        (Error::Store { retry: None, .. }, Some(first)) if crate::error::refuses_data(&e) => {
            Error::poison(&first.envelope, e)
        }
        _ => e,
    }
}

impl<A: Apply> Handler for TransactionalConsumer<A> {
    async fn apply(&self, batch: &[Record]) -> Result<Applied, Error> {
        if batch.is_empty() {
            return Ok(Applied::default());
        }
        let store = self.applier.store();
        let mut tx = self.db.begin(store).await?;
        // Records of a key that has a parked message are parked behind it, in order.
        let held = match self.parking {
            ParkPolicy::HoldKey => self.inbox.held_keys(&mut tx, batch).await?,
            ParkPolicy::Message => Default::default(),
        };
        // Usually nothing is held: the batch is applied as it is, without copying it.
        let open: std::borrow::Cow<'_, [Record]> = match held.is_empty() {
            true => std::borrow::Cow::Borrowed(batch),
            false => {
                let mut open = Vec::with_capacity(batch.len());
                for record in batch {
                    if held.contains(&record.envelope.key) {
                        self.inbox.hold(&mut tx, record).await?;
                    } else {
                        open.push(record.clone());
                    }
                }
                std::borrow::Cow::Owned(open)
            }
        };
        // Decode before claiming: a poison message must leave no dedupe record behind (an
        // error rolls the transaction back).
        let mut decoded = Vec::with_capacity(open.len());
        for record in open.iter() {
            decoded.push(self.applier.decode(record)?);
        }
        let new = self.inbox.claim(&mut tx, &open).await?;
        let fresh: Vec<A::Item> = decoded
            .into_iter()
            .zip(&new)
            .filter_map(|(item, new)| if *new { item } else { None })
            .collect();
        let applied = new.iter().filter(|n| **n).count();
        let keys = self.keys_of(&fresh);
        let output = self
            .applier
            .apply(&mut tx, fresh, &open)
            .await
            .map_err(|e| condemn(e, &open))?;
        self.applier
            .commit(tx, output)
            .await
            .map_err(|e| condemn(e, &open))?;
        for (record, _) in open.iter().zip(&new).filter(|(_, new)| **new) {
            self.applier.applied(record);
        }
        self.publish(keys);
        Ok(Applied {
            applied,
            duplicates: open.len() - applied,
            held: batch.len() - open.len(),
        })
    }

    async fn park(&self, record: &Record, reason: &Error) -> Result<(), Error> {
        Ok(self.inbox.park(&self.db, record, reason).await?)
    }
}
