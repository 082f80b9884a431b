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
use std::sync::atomic::{AtomicU64, Ordering};
use tramline_sql::sqlite::WriteTx;
use tramline_sql::SqlError;

const UPSERT_ORDER: &str = "INSERT INTO order_status_view (order_id, order_status, customer_id, \
     product_id, quantity, amount_cents, shipping_address, order_version, updated_at) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
     ON CONFLICT (order_id) DO UPDATE SET order_status = excluded.order_status, \
     customer_id = excluded.customer_id, product_id = excluded.product_id, \
     quantity = excluded.quantity, amount_cents = excluded.amount_cents, \
     shipping_address = excluded.shipping_address, order_version = excluded.order_version, \
     updated_at = excluded.updated_at \
     WHERE order_status_view.order_version IS NULL \
        OR order_status_view.order_version < excluded.order_version";
const UPSERT_PAYMENT: &str = "INSERT INTO order_status_view (order_id, payment_id, payment_status, \
     payment_version, updated_at) VALUES (?, ?, ?, ?, ?) \
     ON CONFLICT (order_id) DO UPDATE SET payment_id = excluded.payment_id, \
     payment_status = excluded.payment_status, payment_version = excluded.payment_version, \
     updated_at = excluded.updated_at \
     WHERE order_status_view.payment_version IS NULL \
        OR order_status_view.payment_version < excluded.payment_version";
const UPSERT_DELIVERY: &str = "INSERT INTO order_status_view (order_id, delivery_id, delivery_status, \
     delivery_version, updated_at) VALUES (?, ?, ?, ?, ?) \
     ON CONFLICT (order_id) DO UPDATE SET delivery_id = excluded.delivery_id, \
     delivery_status = excluded.delivery_status, delivery_version = excluded.delivery_version, \
     updated_at = excluded.updated_at \
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

impl Reaction for OrderStatusProjection {
    const STORE: &'static str = STORE;

    async fn react(&self, tx: &mut WriteTx, event: DomainEvent) -> Result<Vec<DomainEvent>> {
        let now = tramline_core::envelope::now_ms();
        let query = match &event {
            DomainEvent::Order(_, o) => sqlx::query(UPSERT_ORDER)
                .bind(&o.order_id)
                .bind(o.status.as_str())
                .bind(&o.customer_id)
                .bind(&o.product_id)
                .bind(o.quantity)
                .bind(o.amount_cents)
                .bind(&o.shipping_address)
                .bind(o.version),
            DomainEvent::Payment(_, p) => sqlx::query(UPSERT_PAYMENT)
                .bind(&p.order_id)
                .bind(&p.payment_id)
                .bind(p.status.as_str())
                .bind(p.version),
            DomainEvent::Delivery(_, d) => sqlx::query(UPSERT_DELIVERY)
                .bind(&d.order_id)
                .bind(&d.delivery_id)
                .bind(d.status.as_str())
                .bind(d.version),
        };
        let done = query.bind(now).execute(&mut **tx).await.map_err(|e| {
            let e = SqlError::new(STORE, "upsert", e);
            if e.is_duplicate() {
                self.stats.duplicate_key_errors.fetch_add(1, Ordering::Relaxed);
            }
            e
        })?;
        if done.rows_affected() == 0 {
            self.stats.stale_skipped.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Vec::new())
    }
}
