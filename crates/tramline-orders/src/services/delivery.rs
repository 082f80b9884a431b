//! The delivery service: opens a delivery for every approved payment, and starts and completes
//! it by command.

use super::{
    command_many, command_one, for_orders_in, get, load, new_id, save, Reaction, ServiceDb, Stored,
};
use crate::domain::delivery::{Delivery, DeliveryEventType};
use crate::domain::payment::PaymentEventType;
use crate::error::Result;
use crate::events::{DomainEvent, PAYMENT_EVENTS};
use tramline_sql::db::Tuple;
use tramline_sql::{Dialect, Tx};

const STORE: &str = "delivery service";

/// The consumer group the delivery service follows payments as.
pub const GROUP: &str = "delivery-service";
/// The topics it reacts to.
pub const TOPICS: &[&str] = &[PAYMENT_EVENTS];

/// A step of a delivery's lifecycle, by command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStep {
    /// Pick it up.
    Start,
    /// Deliver it.
    Complete,
}

/// Migrations of the delivery service's own tables.
pub fn migrations(dialect: Dialect) -> sqlx::migrate::Migrator {
    match dialect {
        Dialect::Sqlite => sqlx::migrate!("./migrations/sqlite/delivery"),
        Dialect::MySql => sqlx::migrate!("./migrations/mysql/delivery"),
        Dialect::Postgres => sqlx::migrate!("./migrations/postgres/delivery"),
    }
}

/// The delivery service.
#[derive(Debug, Clone)]
pub struct DeliveryService {
    db: ServiceDb,
}

impl DeliveryService {
    /// The service on its database.
    pub fn new(db: ServiceDb) -> Self {
        DeliveryService { db }
    }

    /// The service's database.
    pub fn db(&self) -> &ServiceDb {
        &self.db
    }

    /// Starts a READY delivery → `DeliveryStarted`.
    pub async fn start(&self, delivery_id: &str) -> Result<Delivery> {
        command_one(&self.db, delivery_id, DeliveryStep::Start, advance).await
    }

    /// Completes a STARTED delivery → `DeliveryCompleted`.
    pub async fn complete(&self, delivery_id: &str) -> Result<Delivery> {
        command_one(&self.db, delivery_id, DeliveryStep::Complete, advance).await
    }

    /// Moves many deliveries along in one transaction, in the given order (one delivery may
    /// appear twice, to start and then complete it). A step the state machine refuses, or an
    /// unknown id, gets its own error and changes nothing; a store error fails them all.
    pub async fn advance_many(
        &self,
        steps: &[(String, DeliveryStep)],
    ) -> Result<Vec<Result<Delivery>>> {
        command_many(&self.db, steps, advance).await
    }

    /// The delivery with this id.
    pub async fn get(&self, delivery_id: &str) -> Result<Delivery> {
        get(&self.db, delivery_id).await
    }

    /// The deliveries of orders with ids in (`after`, `upto`], in order id order.
    pub async fn for_orders_in(&self, after: &str, upto: Option<&str>) -> Result<Vec<Delivery>> {
        for_orders_in(&self.db, after, upto, |d: &Delivery| &d.order_id).await
    }
}

fn advance(delivery: &mut Delivery, step: DeliveryStep) -> Result<DeliveryEventType> {
    match step {
        DeliveryStep::Start => delivery.start(),
        DeliveryStep::Complete => delivery.complete(),
    }
}

impl Stored for Delivery {
    const ENTITY: &'static str = "delivery";
    const STORE: &'static str = STORE;
    const TABLE: &'static str = "deliveries";
    const FIELDS: &'static [(&'static str, &'static str)] = &[
        ("deliveryId", "delivery_id"),
        ("orderId", "order_id"),
        ("status", "status"),
        ("version", "version"),
    ];
    const MUTABLE: &'static [&'static str] = &["status", "version"];
    type EventType = DeliveryEventType;

    fn id(&self) -> &str {
        &self.delivery_id
    }

    fn announce(&self, event: DeliveryEventType) -> DomainEvent {
        DomainEvent::Delivery(event, self.clone())
    }

    fn bind(&self, row: &mut Tuple<'_>) {
        row.bind(&self.delivery_id)
            .bind(&self.order_id)
            .bind(self.status.as_str())
            .bind(self.version);
    }
}

/// How deliveries follow payments.
#[derive(Debug, Default)]
pub struct DeliveryReaction;

impl Reaction for DeliveryReaction {
    const STORE: &'static str = STORE;

    async fn react(&self, tx: &mut Tx, events: Vec<DomainEvent>) -> Result<Vec<DomainEvent>> {
        let approved: Vec<String> = events
            .into_iter()
            .filter_map(|e| match e {
                DomainEvent::Payment(PaymentEventType::Approved, p) => Some(p.order_id),
                _ => None,
            })
            .collect();
        if approved.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = approved.iter().map(String::as_str).collect();
        // Keyed by order id: one delivery per order.
        let mut deliveries = load::<Delivery>(tx, "order_id", &ids, |d| &d.order_id).await?;
        let mut emitted = Vec::new();
        for order_id in &approved {
            if deliveries.by_key.contains_key(order_id) {
                continue; // already has its delivery
            }
            let (delivery, created) = Delivery::for_order(new_id(), order_id.clone());
            emitted.push(delivery.announce(created));
            deliveries.by_key.insert(order_id.clone(), delivery);
            deliveries.touch(order_id);
        }
        save(tx, &deliveries.changed()).await?;
        Ok(emitted)
    }
}
