//! The seed's projection, kept as the baseline that shows the two bugs.
//!
//! Per event it loads the row as an ORM loads an entity, then in its write transaction inserts
//! the whole row if it was absent, or writes back *every* column from the loaded copy with the
//! event's columns changed. Two handlers of one order racing through this lose each other's
//! columns (the concurrent-update bug) or both insert (the concurrent-insert bug, a duplicate
//! key). There is no version guard, so an older event also overwrites a newer one.
//!
//! The load happens before the write transaction, as it did in the seed's ORM session at
//! MariaDB's REPEATABLE READ (on SQLite, a load inside the write transaction would also hold
//! the single writer lock and hide the race the baseline exists to show). Each event commits on its own, as
//! in the seed, so a failed batch may have committed its first events; their dedupe records make
//! the retry skip them.

use super::projection::ProjectionStats;
use super::{OrderStatusQuery, OrderStatusRow, STORE};
use crate::events::DomainEvent;
use crate::services::ServiceDb;
use std::sync::atomic::Ordering;
use tramline_core::ports::{Applied, Handler};
use tramline_core::{Error, Record};
use tramline_sql::db::Arg;
use tramline_sql::Inbox;

/// Every column but the key, in the view's column order (`FIELDS` after the key).
fn columns() -> impl Iterator<Item = &'static str> {
    super::FIELDS[1..].iter().map(|(_, column)| *column)
}

/// The row's values of [`columns`], in order.
fn column_values(row: &OrderStatusRow) -> [Arg; 13] {
    [
        (&row.order_status).into(),
        (&row.customer_id).into(),
        (&row.product_id).into(),
        row.quantity.into(),
        row.amount_cents.into(),
        (&row.shipping_address).into(),
        row.order_version.into(),
        (&row.payment_id).into(),
        (&row.payment_status).into(),
        row.payment_version.into(),
        (&row.delivery_id).into(),
        (&row.delivery_status).into(),
        row.delivery_version.into(),
    ]
}

/// The seed's read-then-write-the-whole-row projection.
#[derive(Debug)]
pub struct NaiveProjection {
    db: ServiceDb,
    query: OrderStatusQuery,
    inbox: Inbox,
    stats: ProjectionStats,
}

impl NaiveProjection {
    /// The baseline writing to the view in `db`, deduping as consumer `consumer`.
    pub fn new(db: ServiceDb, consumer: &str) -> Self {
        NaiveProjection {
            query: OrderStatusQuery::new(db.clone()),
            db,
            inbox: Inbox::new(consumer),
            stats: ProjectionStats::default(),
        }
    }

    /// The projection's counters.
    pub fn stats(&self) -> &ProjectionStats {
        &self.stats
    }

    /// The inbox, e.g. to count parked messages.
    pub fn inbox(&self) -> &Inbox {
        &self.inbox
    }

    async fn apply_one(&self, record: &Record) -> Result<bool, Error> {
        let event = DomainEvent::decode(&record.envelope).map_err(|e| e.into_core(record))?;
        // The seed's findById: the entity as loaded, before the write.
        let loaded = self
            .query
            .get(event.order_id())
            .await
            .map_err(|e| e.into_core(record))?;
        let mut tx = self.db.begin(STORE).await?;
        if self
            .inbox
            .claim(&mut tx, std::slice::from_ref(record))
            .await?
            != [true]
        {
            return Ok(false);
        }
        let (row, existed) = match loaded {
            Some(row) => (row, true),
            None => (
                OrderStatusRow {
                    order_id: event.order_id().to_owned(),
                    ..OrderStatusRow::default()
                },
                false,
            ),
        };
        let mut row = row;
        row.set_from(&event);
        let values = column_values(&row);
        let stmt = if existed {
            // Every column written back from the loaded copy: the lost update.
            let mut stmt = tx.stmt("UPDATE order_status_view SET ");
            for (i, (column, value)) in columns().zip(values).enumerate() {
                if i > 0 {
                    stmt.push(", ");
                }
                stmt.push(column).push(" = ").bind(value);
            }
            stmt.push(" WHERE order_id = ").bind(&row.order_id);
            stmt
        } else {
            // Inserted because it was absent when loaded: the duplicate key.
            let mut stmt = tx.stmt(&format!(
                "INSERT INTO order_status_view (order_id, {})",
                columns().collect::<Vec<_>>().join(", ")
            ));
            stmt.values(&[values], |t, values| {
                t.bind(&row.order_id);
                for v in values {
                    t.bind(v.clone());
                }
            });
            stmt
        };
        if let Err(e) = tx.execute(&stmt, STORE, "write whole row").await {
            if e.is_duplicate() {
                self.stats
                    .duplicate_key_errors
                    .fetch_add(1, Ordering::Relaxed);
                // The seed's consumer gives up on the event: the concurrent-insert bug loses
                // it. Here it is parked, so the loss is counted instead of silent.
                return Err(Error::poison(&record.envelope, e));
            }
            return Err(e.into());
        }
        tx.commit(STORE).await?;
        Ok(true)
    }
}

impl Handler for NaiveProjection {
    async fn apply(&self, batch: &[Record]) -> Result<Applied, Error> {
        let mut out = Applied::default();
        for record in batch {
            if self.apply_one(record).await? {
                out.applied += 1;
            } else {
                out.duplicates += 1;
            }
        }
        Ok(out)
    }

    async fn park(&self, record: &Record, reason: &Error) -> Result<(), Error> {
        Ok(self.inbox.park(&self.db.db, record, reason).await?)
    }
}
