//! tramline's projection: column-scoped, version-guarded upserts.
//!
//! One statement per source and batch creates the rows that are missing and otherwise sets
//! only the columns of the event's source, and only where the event's version is newer than
//! the one the row holds. There is no read-modify-write, so there is no window in which
//! another handler's write can be lost, and no "insert if absent" race that could raise a
//! duplicate key. A batch keeps only the newest event per order and source (PostgreSQL refuses
//! an upsert that touches a row twice) and writes rows in order id order, so concurrent
//! batches lock rows in one order. On MariaDB the guard is evaluated per column and the
//! version column is assigned last (see [`tramline_sql::Dialect::upsert`]).
//!
//! Each applied event is logged at DEBUG with the trace id of the request that caused it (the
//! record's `traceparent`), its order id and event type, so an operator can follow a request
//! to its view update; with DEBUG off the log costs a level check and no allocation.

use super::STORE;
use crate::error::Result;
use crate::events::DomainEvent;
use crate::services::Reaction;
use crate::trace::{trace_id_of, TRACEPARENT};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use tramline_core::Record;
use tramline_sql::db::Tuple;
use tramline_sql::{insert_rows, Assign, Tx};

/// One source's columns in the view: how its upsert is written.
struct Source {
    /// Columns the source owns, starting with `order_id`, ending with its version column.
    columns: &'static [&'static str],
}

const ORDER: Source = Source {
    columns: &[
        "order_id",
        "order_status",
        "customer_id",
        "product_id",
        "quantity",
        "amount_cents",
        "shipping_address",
        "order_version",
    ],
};
const PAYMENT: Source = Source {
    columns: &[
        "order_id",
        "payment_id",
        "payment_status",
        "payment_version",
    ],
};
const DELIVERY: Source = Source {
    columns: &[
        "order_id",
        "delivery_id",
        "delivery_status",
        "delivery_version",
    ],
};

/// Counters of a projection, the same for both strategies so they can be compared.
#[derive(Debug, Default)]
pub struct ProjectionStats {
    /// Writes that failed on a duplicate primary key.
    pub duplicate_key_errors: AtomicU64,
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

    /// Upserts one source's newest snapshot per order.
    async fn upsert<T>(
        &self,
        tx: &mut Tx,
        source: &Source,
        newest: BTreeMap<String, (i64, T)>,
        bind: impl Fn(&mut Tuple<'_>, &T),
    ) -> Result<()> {
        if newest.is_empty() {
            return Ok(());
        }
        let rows: Vec<(String, T)> = newest
            .into_iter()
            .map(|(id, (_, item))| (id, item))
            .collect();
        let columns = source.columns;
        let version = columns[columns.len() - 1];
        let insert = format!(
            "INSERT INTO order_status_view ({}, updated_at)",
            columns.join(", ")
        );
        let assigns: Vec<Assign<'_>> = columns[1..]
            .iter()
            .chain(&["updated_at"])
            .map(|c| Assign::New(c))
            .collect();
        let upsert =
            tx.dialect()
                .upsert("order_status_view", &["order_id"], &assigns, Some(version));
        let now = tramline_core::envelope::now_ms();
        insert_rows(
            tx,
            STORE,
            "upsert",
            &insert,
            &upsert,
            &rows,
            |row, (id, item)| {
                row.bind(id);
                bind(row, item);
                row.bind(now);
            },
        )
        .await
        .inspect_err(|e| {
            if e.is_duplicate() {
                self.stats
                    .duplicate_key_errors
                    .fetch_add(1, Ordering::Relaxed);
            }
        })?;
        Ok(())
    }
}

/// Keeps `item` if it is the newest version seen for `order_id`.
fn keep_newest<T>(newest: &mut BTreeMap<String, (i64, T)>, order_id: &str, version: i64, item: T) {
    match newest.get(order_id) {
        Some((seen, _)) if *seen >= version => {}
        _ => {
            newest.insert(order_id.to_owned(), (version, item));
        }
    }
}

impl Reaction for OrderStatusProjection {
    const STORE: &'static str = STORE;

    async fn react(&self, tx: &mut Tx, events: Vec<DomainEvent>) -> Result<Vec<DomainEvent>> {
        let (mut orders, mut payments, mut deliveries) =
            (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        for event in events {
            match event {
                DomainEvent::Order(_, o) => {
                    keep_newest(&mut orders, &o.order_id.clone(), o.version, o)
                }
                DomainEvent::Payment(_, p) => {
                    keep_newest(&mut payments, &p.order_id.clone(), p.version, p)
                }
                DomainEvent::Delivery(_, d) => {
                    keep_newest(&mut deliveries, &d.order_id.clone(), d.version, d)
                }
            }
        }
        self.upsert(tx, &ORDER, orders, |row, o| {
            row.bind(o.status.as_str())
                .bind(&o.customer_id)
                .bind(&o.product_id)
                .bind(o.quantity)
                .bind(o.amount_cents)
                .bind(&o.shipping_address)
                .bind(o.version);
        })
        .await?;
        self.upsert(tx, &PAYMENT, payments, |row, p| {
            row.bind(&p.payment_id)
                .bind(p.status.as_str())
                .bind(p.version);
        })
        .await?;
        self.upsert(tx, &DELIVERY, deliveries, |row, d| {
            row.bind(&d.delivery_id)
                .bind(d.status.as_str())
                .bind(d.version);
        })
        .await?;
        Ok(Vec::new())
    }

    fn applied(&self, record: &Record) {
        // The fields are evaluated only when DEBUG is enabled; they borrow, never allocate.
        let e = &record.envelope;
        tracing::debug!(
            trace_id = e.header(TRACEPARENT).and_then(trace_id_of).unwrap_or(""),
            order_id = e.key.as_str(),
            event_type = e.event_type().unwrap_or(""),
            "event applied to the view"
        );
    }
}
