//! tramline's projection: column-scoped, version-guarded upserts.
//!
//! One statement per event creates the row if it is missing and otherwise sets only the
//! columns of the event's source, and only if the event's version is newer than the one the
//! row holds. There is no read-modify-write, so there is no window in which another handler's
//! write can be lost, and no "insert if absent" race that could raise a duplicate key.

use super::STORE;
use crate::error::Result;
use crate::events::DomainEvent;
use crate::services::Reaction;
use sqlx::query_builder::Separated;
use sqlx::Sqlite;
use std::sync::atomic::{AtomicU64, Ordering};
use tramline_sql::sqlite::{insert_rows, WriteTx};

const INSERT_ORDER: &str = "INSERT INTO order_status_view (order_id, order_status, customer_id, \
     product_id, quantity, amount_cents, shipping_address, order_version, updated_at) ";
const ON_CONFLICT_ORDER: &str = " ON CONFLICT (order_id) DO UPDATE SET \
     order_status = excluded.order_status, customer_id = excluded.customer_id, \
     product_id = excluded.product_id, quantity = excluded.quantity, \
     amount_cents = excluded.amount_cents, shipping_address = excluded.shipping_address, \
     order_version = excluded.order_version, updated_at = excluded.updated_at \
     WHERE order_status_view.order_version IS NULL \
        OR order_status_view.order_version < excluded.order_version";
const INSERT_PAYMENT: &str =
    "INSERT INTO order_status_view (order_id, payment_id, payment_status, \
     payment_version, updated_at) ";
const ON_CONFLICT_PAYMENT: &str = " ON CONFLICT (order_id) DO UPDATE SET \
     payment_id = excluded.payment_id, payment_status = excluded.payment_status, \
     payment_version = excluded.payment_version, updated_at = excluded.updated_at \
     WHERE order_status_view.payment_version IS NULL \
        OR order_status_view.payment_version < excluded.payment_version";
const INSERT_DELIVERY: &str = "INSERT INTO order_status_view (order_id, delivery_id, \
     delivery_status, delivery_version, updated_at) ";
const ON_CONFLICT_DELIVERY: &str = " ON CONFLICT (order_id) DO UPDATE SET \
     delivery_id = excluded.delivery_id, delivery_status = excluded.delivery_status, \
     delivery_version = excluded.delivery_version, updated_at = excluded.updated_at \
     WHERE order_status_view.delivery_version IS NULL \
        OR order_status_view.delivery_version < excluded.delivery_version";

/// Counters of a projection, the same for both strategies so they can be compared.
#[derive(Debug, Default)]
pub struct ProjectionStats {
    /// Writes that failed on a duplicate primary key.
    pub duplicate_key_errors: AtomicU64,
    /// Events older than what the row already holds, skipped by the version guard.
    pub stale_skipped: AtomicU64,
}

/// The Order Status View projection; run it through [`crate::services::Subscriber`].
#[derive(Debug, Default)]
pub struct OrderStatusProjection {
    stats: ProjectionStats,
}

impl OrderStatusProjection {
    /// The projection's counters.
    pub fn stats(&self) -> &ProjectionStats {
        &self.stats
    }
}

impl OrderStatusProjection {
    /// Upserts the rows of one source; returns how many changed the view. Rows of one
    /// statement are applied one after the other, so two events of one order in one
    /// statement still meet the version guard.
    async fn upsert<T>(
        &self,
        tx: &mut WriteTx,
        rows: &[T],
        insert: &'static str,
        on_conflict: &'static str,
        bind: impl Fn(&mut Separated<'_, '_, Sqlite, &'static str>, &T),
    ) -> Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        let now = tramline_core::envelope::now_ms();
        insert_rows(
            tx,
            STORE,
            "upsert",
            insert,
            on_conflict,
            rows,
            |row, item| {
                bind(row, item);
                row.push_bind(now);
            },
        )
        .await
        .map_err(|e| {
            if e.is_duplicate() {
                self.stats
                    .duplicate_key_errors
                    .fetch_add(1, Ordering::Relaxed);
            }
            e.into()
        })
    }
}

impl Reaction for OrderStatusProjection {
    const STORE: &'static str = STORE;

    async fn react(&self, tx: &mut WriteTx, events: Vec<DomainEvent>) -> Result<Vec<DomainEvent>> {
        let total = events.len() as u64;
        let (mut orders, mut payments, mut deliveries) = (Vec::new(), Vec::new(), Vec::new());
        for event in events {
            match event {
                DomainEvent::Order(_, o) => orders.push(o),
                DomainEvent::Payment(_, p) => payments.push(p),
                DomainEvent::Delivery(_, d) => deliveries.push(d),
            }
        }
        let mut changed = self
            .upsert(tx, &orders, INSERT_ORDER, ON_CONFLICT_ORDER, |row, o| {
                row.push_bind(o.order_id.clone())
                    .push_bind(o.status.as_str())
                    .push_bind(o.customer_id.clone())
                    .push_bind(o.product_id.clone())
                    .push_bind(o.quantity)
                    .push_bind(o.amount_cents)
                    .push_bind(o.shipping_address.clone())
                    .push_bind(o.version);
            })
            .await?;
        changed += self
            .upsert(
                tx,
                &payments,
                INSERT_PAYMENT,
                ON_CONFLICT_PAYMENT,
                |row, p| {
                    row.push_bind(p.order_id.clone())
                        .push_bind(p.payment_id.clone())
                        .push_bind(p.status.as_str())
                        .push_bind(p.version);
                },
            )
            .await?;
        changed += self
            .upsert(
                tx,
                &deliveries,
                INSERT_DELIVERY,
                ON_CONFLICT_DELIVERY,
                |row, d| {
                    row.push_bind(d.order_id.clone())
                        .push_bind(d.delivery_id.clone())
                        .push_bind(d.status.as_str())
                        .push_bind(d.version);
                },
            )
            .await?;
        self.stats
            .stale_skipped
            .fetch_add(total.saturating_sub(changed), Ordering::Relaxed);
        Ok(Vec::new())
    }
}
