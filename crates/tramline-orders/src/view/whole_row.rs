//! A second baseline: what a Kafka Connect JDBC sink in upsert mode does with the three topics.
//!
//! Each record is written as a row of the fields it carries — its source's columns and the
//! order id — with `INSERT … ON CONFLICT (order_id) DO UPDATE SET` every one of those columns,
//! one statement per record in delivery order, one transaction per polled batch, and no
//! version guard and no dedupe record: the sink's "idempotent upsert". It is fast and right
//! as long as every record arrives once and in order; a redelivered older record (what a relay
//! killed between publish and mark produces) overwrites a newer one, and nothing notices.

use super::projection::ProjectionStats;
use super::STORE;
use crate::events::DomainEvent;
use crate::services::ServiceDb;
use tramline_core::ports::{Applied, Handler};
use tramline_core::{Error, Record};
use tramline_sql::db::Arg;
use tramline_sql::dialect::Assign;
use tramline_sql::Inbox;

/// The columns an event carries, with their values (the order id first).
fn record_row(event: &DomainEvent) -> Vec<(&'static str, Arg)> {
    let mut row: Vec<(&'static str, Arg)> = vec![("order_id", event.order_id().into())];
    match event {
        DomainEvent::Order(_, o) => row.extend([
            ("order_status", o.status.as_str().into()),
            ("customer_id", (&o.customer_id).into()),
            ("product_id", (&o.product_id).into()),
            ("quantity", o.quantity.into()),
            ("amount_cents", o.amount_cents.into()),
            ("shipping_address", (&o.shipping_address).into()),
            ("order_version", o.version.into()),
        ]),
        DomainEvent::Payment(_, p) => row.extend([
            ("payment_id", (&p.payment_id).into()),
            ("payment_status", p.status.as_str().into()),
            ("payment_version", p.version.into()),
        ]),
        DomainEvent::Delivery(_, d) => row.extend([
            ("delivery_id", (&d.delivery_id).into()),
            ("delivery_status", d.status.as_str().into()),
            ("delivery_version", d.version.into()),
        ]),
    }
    row
}

/// The JDBC sink's unguarded upsert of each record's fields.
#[derive(Debug)]
pub struct WholeRowProjection {
    db: ServiceDb,
    /// Only where a record that can never be applied is kept (the sink's dead-letter topic).
    inbox: Inbox,
    stats: ProjectionStats,
}

impl WholeRowProjection {
    /// The baseline writing to the view in `db`; `consumer` names its parked messages.
    pub fn new(db: ServiceDb, consumer: &str) -> Self {
        WholeRowProjection {
            db,
            inbox: Inbox::new(consumer),
            stats: ProjectionStats::default(),
        }
    }

    /// The projection's counters (it has no duplicate-key errors: it upserts).
    pub fn stats(&self) -> &ProjectionStats {
        &self.stats
    }

    /// Where it parks what it cannot decode.
    pub fn inbox(&self) -> &Inbox {
        &self.inbox
    }
}

impl Handler for WholeRowProjection {
    async fn apply(&self, batch: &[Record]) -> Result<Applied, Error> {
        let mut tx = self.db.begin(STORE).await?;
        let dialect = tx.dialect();
        for record in batch {
            let event = DomainEvent::decode(&record.envelope).map_err(|e| e.into_core(record))?;
            let row = record_row(&event);
            let columns: Vec<&str> = row.iter().map(|(c, _)| *c).collect();
            let assigns: Vec<Assign<'_>> = columns[1..].iter().map(|c| Assign::New(c)).collect();
            let mut stmt = tx.stmt(&format!(
                "INSERT INTO order_status_view ({})",
                columns.join(", ")
            ));
            stmt.values(&[row], |t, row| {
                for (_, value) in row {
                    t.bind(value.clone());
                }
            })
            .push(&dialect.upsert("order_status_view", &["order_id"], &assigns, None));
            tx.execute(&stmt, STORE, "upsert the record's row").await?;
        }
        tx.commit(STORE).await?;
        Ok(Applied {
            applied: batch.len(),
            ..Applied::default()
        })
    }

    async fn park(&self, record: &Record, reason: &Error) -> Result<(), Error> {
        Ok(self.inbox.park(&self.db.db, record, reason).await?)
    }
}
