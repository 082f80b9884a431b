//! The seed's projection, kept as the baseline that shows the two bugs.
//!
//! Per event it loads the row as an ORM loads an entity, then in its write transaction inserts
//! the whole row if it was absent, or writes back *every* column from the loaded copy with the
//! event's columns changed. Two handlers of one order racing through this lose each other's
//! columns (the concurrent-update bug) or both insert (the concurrent-insert bug, a duplicate
//! key). There is no version guard, so an older event also overwrites a newer one.
//!
//! On SQLite the load happens before the write transaction, as it did in the seed's ORM session
//! at MariaDB's REPEATABLE READ: a load inside a SQLite write transaction would hold the single
//! writer lock and hide the race the baseline exists to show. Each event commits on its own, as
//! in the seed, so a failed batch may have committed its first events; their dedupe records make
//! the retry skip them.

use super::projection::ProjectionStats;
use super::{OrderStatusQuery, OrderStatusRow, STORE};
use crate::events::DomainEvent;
use crate::services::ServiceDb;
use std::sync::atomic::Ordering;
use tramline_core::ports::{Applied, Handler};
use tramline_core::{Error, Record};
use tramline_sql::sqlite::Inbox;
use tramline_sql::SqlError;

const INSERT: &str = "INSERT INTO order_status_view (order_id, order_status, customer_id, \
     product_id, quantity, amount_cents, shipping_address, order_version, payment_id, \
     payment_status, payment_version, delivery_id, delivery_status, delivery_version, updated_at) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
const UPDATE: &str = "UPDATE order_status_view SET order_status = ?, customer_id = ?, \
     product_id = ?, quantity = ?, amount_cents = ?, shipping_address = ?, order_version = ?, \
     payment_id = ?, payment_status = ?, payment_version = ?, delivery_id = ?, \
     delivery_status = ?, delivery_version = ?, updated_at = ? WHERE order_id = ?";

/// The seed's read-then-write-the-whole-row projection.
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
        let now = tramline_core::envelope::now_ms();
        let written = match loaded {
            None => {
                let mut row = OrderStatusRow {
                    order_id: event.order_id().to_owned(),
                    ..OrderStatusRow::default()
                };
                row.set_from(&event);
                bind_columns(sqlx::query(INSERT).bind(&row.order_id), &row)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
            }
            Some(mut row) => {
                row.set_from(&event);
                bind_columns(sqlx::query(UPDATE), &row)
                    .bind(now)
                    .bind(&row.order_id)
                    .execute(&mut *tx)
                    .await
            }
        };
        if let Err(e) = written {
            let e = SqlError::new(STORE, "write whole row", e);
            if e.is_duplicate() {
                self.stats
                    .duplicate_key_errors
                    .fetch_add(1, Ordering::Relaxed);
            }
            return Err(e.into());
        }
        tx.commit().await.map_err(SqlError::at(STORE, "commit"))?;
        Ok(true)
    }
}

fn bind_columns<'q>(
    q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    row: &'q OrderStatusRow,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    q.bind(&row.order_status)
        .bind(&row.customer_id)
        .bind(&row.product_id)
        .bind(row.quantity)
        .bind(row.amount_cents)
        .bind(&row.shipping_address)
        .bind(row.order_version)
        .bind(&row.payment_id)
        .bind(&row.payment_status)
        .bind(row.payment_version)
        .bind(&row.delivery_id)
        .bind(&row.delivery_status)
        .bind(row.delivery_version)
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
        Ok(self.inbox.park(&self.db.pool, record, reason).await?)
    }
}
