//! The transactional consumer: the one path every tramline consumer takes, the services'
//! reactions and every declared view alike. Per batch: decode every record (a record that
//! does not decode is poison, and leaves no dedupe record behind), then in **one**
//! transaction claim the message ids in the inbox, apply what the new records carry, and
//! commit; the consumer runtime commits the transport's offsets only after that. What is
//! applied is the [`Apply`] implementation's business.

use crate::{Db, Inbox, Tx};
use std::future::Future;
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
}

/// A [`Handler`] applying `A` with an exactly-once effect (see the module).
#[derive(Debug)]
pub struct TransactionalConsumer<A> {
    db: Db,
    inbox: Inbox,
    applier: A,
}

impl<A: Apply> TransactionalConsumer<A> {
    /// A consumer writing to `db` with `applier`, its dedupe records under `consumer`.
    pub fn new(db: Db, consumer: &str, applier: A) -> Self {
        TransactionalConsumer {
            db,
            inbox: Inbox::new(consumer),
            applier,
        }
    }

    /// What it applies with, e.g. to read its counters.
    pub fn applier(&self) -> &A {
        &self.applier
    }

    /// The inbox, e.g. to count parked messages.
    pub fn inbox(&self) -> &Inbox {
        &self.inbox
    }
}

impl<A: Apply> Handler for TransactionalConsumer<A> {
    async fn apply(&self, batch: &[Record]) -> Result<Applied, Error> {
        if batch.is_empty() {
            return Ok(Applied::default());
        }
        // Decode before claiming: a poison message must leave no dedupe record behind.
        let mut decoded = Vec::with_capacity(batch.len());
        for record in batch {
            decoded.push(self.applier.decode(record)?);
        }
        let mut tx = self.db.begin(self.applier.store()).await?;
        let new = self.inbox.claim(&mut tx, batch).await?;
        let fresh: Vec<A::Item> = decoded
            .into_iter()
            .zip(&new)
            .filter_map(|(item, new)| if *new { item } else { None })
            .collect();
        let applied = new.iter().filter(|n| **n).count();
        let output = self.applier.apply(&mut tx, fresh, batch).await?;
        self.applier.commit(tx, output).await?;
        for (record, _) in batch.iter().zip(&new).filter(|(_, new)| **new) {
            self.applier.applied(record);
        }
        Ok(Applied {
            applied,
            duplicates: batch.len() - applied,
        })
    }

    async fn park(&self, record: &Record, reason: &Error) -> Result<(), Error> {
        Ok(self.inbox.park(&self.db, record, reason).await?)
    }
}
