//! tramline's projection of the Order Status View: a declaration
//! ([`tramline_core::readmodel`]), run by the generic transactional consumer
//! ([`tramline_sql::TransactionalConsumer`]) over the declared table
//! ([`tramline_sql::ReadModelTable`]).
//!
//! Each source is a column group ordered by the version its snapshot events carry, so every
//! batch is one multi-row upsert per batch whose assignments are guarded by each group's
//! version: no read-modify-write (no lost update), no insert race (no duplicate key), and an
//! older snapshot never overwrites a newer one. The table is `order_status_view`, created by
//! the view's migrations with exactly the declared layout (`<group>_version` per source).
//!
//! Each applied event is logged at DEBUG with the trace id of the request that caused it (the
//! record's `traceparent`), its order id and event type, so an operator can follow a request
//! to its view update; with DEBUG off the log costs a level check and no allocation.

use crate::domain::delivery::DeliveryEventType;
use crate::domain::order::OrderEventType;
use crate::domain::payment::PaymentEventType;
use crate::events::{DELIVERY_EVENTS, ORDER_EVENTS, PAYMENT_EVENTS};
use crate::services::ServiceDb;
use crate::trace::{trace_id_of, TRACEPARENT};
use std::sync::atomic::{AtomicU64, Ordering};
use tramline_core::readmodel::{
    Column, ColumnType, Declaration, EventMapping, Group, ValueSource, VersionSource,
};
use tramline_core::{Error, Record};
use tramline_sql::readmodel::KeyedChange;
use tramline_sql::{Apply, ReadModelError, ReadModelTable, TransactionalConsumer, Tx};

/// The view's table.
pub const TABLE: &str = "order_status_view";

/// A source's group: its name, topic, event types, and `(column, payload field, type)`.
struct Source {
    group: &'static str,
    topic: &'static str,
    event_types: Vec<&'static str>,
    columns: &'static [(&'static str, &'static str, ColumnType)],
}

fn sources() -> [Source; 3] {
    use ColumnType::{Integer, Text};
    [
        Source {
            group: "order",
            topic: ORDER_EVENTS,
            event_types: OrderEventType::ALL.iter().map(|t| t.as_str()).collect(),
            columns: &[
                ("order_status", "status", Text),
                ("customer_id", "customerId", Text),
                ("product_id", "productId", Text),
                ("quantity", "quantity", Integer),
                ("amount_cents", "amountCents", Integer),
                ("shipping_address", "shippingAddress", Text),
            ],
        },
        Source {
            group: "payment",
            topic: PAYMENT_EVENTS,
            event_types: PaymentEventType::ALL.iter().map(|t| t.as_str()).collect(),
            columns: &[
                ("payment_id", "paymentId", Text),
                ("payment_status", "status", Text),
            ],
        },
        Source {
            group: "delivery",
            topic: DELIVERY_EVENTS,
            event_types: DeliveryEventType::ALL.iter().map(|t| t.as_str()).collect(),
            columns: &[
                ("delivery_id", "deliveryId", Text),
                ("delivery_status", "status", Text),
            ],
        },
    ]
}

/// The Order Status View, declared: one group per source, ordered by the snapshots'
/// `version`; every event of a source sets all of its group's columns from its snapshot,
/// keyed by the snapshot's `orderId`, and `<source>_changed_at` to its creation time.
pub fn declaration() -> Declaration {
    let field = |name: &str| ValueSource::Field(vec![name.to_owned()]);
    let mut groups = Vec::new();
    let mut events = Vec::new();
    for source in sources() {
        // When the source last changed: its event's creation time, under the same guard.
        let changed_at = format!("{}_changed_at", source.group);
        groups.push(Group {
            name: source.group.into(),
            columns: source
                .columns
                .iter()
                .map(|(column, _, ty)| Column::new(*column, *ty))
                .chain([Column::new(&changed_at, ColumnType::Integer)])
                .collect(),
            version: VersionSource::Value(field("version")),
        });
        for event_type in source.event_types {
            let mapping = source.columns.iter().fold(
                EventMapping::new(source.topic, event_type, source.group, field("orderId")),
                |mapping, (column, payload, _)| mapping.set(*column, field(payload)),
            );
            events.push(mapping.set(&changed_at, ValueSource::RecordTime));
        }
    }
    Declaration {
        name: "order-status".into(),
        table: TABLE.into(),
        key: Column::new("order_id", ColumnType::Text),
        groups,
        events,
    }
}

/// Counters of a projection, the same for both strategies so they can be compared.
#[derive(Debug, Default)]
pub struct ProjectionStats {
    /// Writes that failed on a duplicate primary key.
    pub duplicate_key_errors: AtomicU64,
}

/// The Order Status View projection: the declared table, applied by the transactional
/// consumer ([`OrderStatusProjection::consumer`]). Unlike a declared view that skips events
/// it does not map, it refuses (parks) an event of the three topics it does not know.
#[derive(Debug)]
pub struct OrderStatusProjection {
    table: ReadModelTable,
    stats: ProjectionStats,
}

/// The view's consumer.
pub type ViewConsumer = TransactionalConsumer<OrderStatusProjection>;

impl Default for OrderStatusProjection {
    fn default() -> Self {
        OrderStatusProjection {
            table: ReadModelTable::new(declaration())
                .expect("the Order Status View's declaration is safe (see its unit test)"),
            stats: ProjectionStats::default(),
        }
    }
}

impl OrderStatusProjection {
    /// The view's consumer on `db` (the view's database, migrated), its dedupe records under
    /// `consumer`.
    pub fn consumer(db: &ServiceDb, consumer: &str) -> ViewConsumer {
        TransactionalConsumer::new(db.db.clone(), consumer, OrderStatusProjection::default())
    }

    /// The projection's counters.
    pub fn stats(&self) -> &ProjectionStats {
        &self.stats
    }

    /// The declared table.
    pub fn table(&self) -> &ReadModelTable {
        &self.table
    }
}

impl Apply for OrderStatusProjection {
    type Item = KeyedChange;
    type Output = ();

    fn store(&self) -> &str {
        super::STORE
    }

    fn decode(&self, record: &Record) -> Result<Option<KeyedChange>, Error> {
        let e = &record.envelope;
        match Apply::decode(&self.table, record)? {
            Some(change) => Ok(Some(change)),
            None => Err(Error::poison(
                e,
                format!(
                    "unknown event type {:?} on {}",
                    e.event_type().unwrap_or_default(),
                    e.topic
                ),
            )),
        }
    }

    async fn apply(
        &self,
        tx: &mut Tx,
        items: Vec<KeyedChange>,
        batch: &[Record],
    ) -> Result<(), Error> {
        if let Err(e) = self.table.apply(tx, &items).await {
            if matches!(&e, ReadModelError::Sql(s) if s.is_duplicate()) {
                self.stats
                    .duplicate_key_errors
                    .fetch_add(1, Ordering::Relaxed);
            }
            return Err(e.into_handler_error(&batch[0]));
        }
        Ok(())
    }

    fn key<'a>(&self, item: &'a KeyedChange) -> Option<&'a str> {
        Some(&item.0)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_declaration_is_safe_and_has_one_version_per_source() {
        let d = declaration();
        assert_eq!(d.validate(), Vec::new());
        for group in ["order", "payment", "delivery"] {
            assert_eq!(d.version_sets(group).len(), 1, "{group}");
        }
        let table = ReadModelTable::new(d).expect("safe");
        let sql = table.create_sql(tramline_sql::Dialect::Sqlite);
        for column in ["order_version", "payment_version", "delivery_version"] {
            assert!(sql.contains(column), "{sql}");
        }
        assert!(
            !sql.contains("__"),
            "no presence columns without deletes: {sql}"
        );
    }
}
