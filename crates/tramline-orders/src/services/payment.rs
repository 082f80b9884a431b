//! The payment service: opens a payment for every new order, approves or rejects it by command,
//! and cancels a pending one when its order is cancelled.

use super::{
    command_many, command_one, for_orders_in, get, load, new_id, not_found, save, Reaction,
    ServiceDb, Stored,
};
use crate::domain::order::OrderEventType;
use crate::domain::payment::{Payment, PaymentEventType};
use crate::error::Result;
use crate::events::{DomainEvent, ORDER_EVENTS};
use tramline_sql::db::Tuple;
use tramline_sql::{Dialect, Tx};

const STORE: &str = "payment service";

/// The consumer group the payment service follows orders as.
pub const GROUP: &str = "payment-service";
/// The topics it reacts to.
pub const TOPICS: &[&str] = &[ORDER_EVENTS];

/// What to do with a pending payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Approve it.
    Approve,
    /// Reject it.
    Reject,
}

/// Migrations of the payment service's own tables.
pub fn migrations(dialect: Dialect) -> sqlx::migrate::Migrator {
    match dialect {
        Dialect::Sqlite => sqlx::migrate!("./migrations/sqlite/payment"),
        Dialect::MySql => sqlx::migrate!("./migrations/mysql/payment"),
        Dialect::Postgres => sqlx::migrate!("./migrations/postgres/payment"),
    }
}

/// The payment service.
#[derive(Debug, Clone)]
pub struct PaymentService {
    db: ServiceDb,
}

impl PaymentService {
    /// The service on its database.
    pub fn new(db: ServiceDb) -> Self {
        PaymentService { db }
    }

    /// The service's database.
    pub fn db(&self) -> &ServiceDb {
        &self.db
    }

    /// Approves a PENDING payment → `PaymentApproved`.
    pub async fn approve(&self, payment_id: &str) -> Result<Payment> {
        command_one(&self.db, payment_id, Decision::Approve, decide).await
    }

    /// Rejects a PENDING payment → `PaymentRejected`.
    pub async fn reject(&self, payment_id: &str) -> Result<Payment> {
        command_one(&self.db, payment_id, Decision::Reject, decide).await
    }

    /// Decides many payments in one transaction, in order. A decision the state machine
    /// refuses, or an unknown id, gets its own error and changes nothing; a store error fails
    /// them all.
    pub async fn decide_many(
        &self,
        decisions: &[(String, Decision)],
    ) -> Result<Vec<Result<Payment>>> {
        command_many(&self.db, decisions, decide).await
    }

    /// The payment with this id.
    pub async fn get(&self, payment_id: &str) -> Result<Payment> {
        get(&self.db, payment_id).await
    }

    /// The payments of orders with ids in (`after`, `upto`], in order id order.
    pub async fn for_orders_in(&self, after: &str, upto: Option<&str>) -> Result<Vec<Payment>> {
        for_orders_in(&self.db, after, upto, |p: &Payment| &p.order_id).await
    }
}

fn decide(payment: &mut Payment, decision: Decision) -> Result<PaymentEventType> {
    match decision {
        Decision::Approve => payment.approve(),
        Decision::Reject => payment.reject(),
    }
}

impl Stored for Payment {
    const ENTITY: &'static str = "payment";
    const STORE: &'static str = STORE;
    const TABLE: &'static str = "payments";
    const FIELDS: &'static [(&'static str, &'static str)] = &[
        ("paymentId", "payment_id"),
        ("orderId", "order_id"),
        ("amountCents", "amount_cents"),
        ("status", "status"),
        ("version", "version"),
    ];
    const MUTABLE: &'static [&'static str] = &["status", "version"];
    type EventType = PaymentEventType;

    fn id(&self) -> &str {
        &self.payment_id
    }

    fn announce(&self, event: PaymentEventType) -> DomainEvent {
        DomainEvent::Payment(event, self.clone())
    }

    fn bind(&self, row: &mut Tuple<'_>) {
        row.bind(&self.payment_id)
            .bind(&self.order_id)
            .bind(self.amount_cents)
            .bind(self.status.as_str())
            .bind(self.version);
    }
}

/// How payments follow orders.
#[derive(Debug, Default)]
pub struct PaymentReaction;

impl Reaction for PaymentReaction {
    const STORE: &'static str = STORE;

    async fn react(&self, tx: &mut Tx, events: Vec<DomainEvent>) -> Result<Vec<DomainEvent>> {
        let relevant: Vec<_> = events
            .into_iter()
            .filter_map(|e| match e {
                DomainEvent::Order(
                    t @ (OrderEventType::Created | OrderEventType::Cancelled),
                    o,
                ) => Some((t, o)),
                _ => None,
            })
            .collect();
        if relevant.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = relevant.iter().map(|(_, o)| o.order_id.as_str()).collect();
        // Keyed by order id: one payment per order.
        let mut payments = load::<Payment>(tx, "order_id", &ids, |p| &p.order_id).await?;
        let mut emitted = Vec::new();
        for (event, order) in &relevant {
            let id = order.order_id.as_str();
            if *event == OrderEventType::Created {
                if payments.by_key.contains_key(id) {
                    continue; // already has its payment
                }
                let (payment, created) =
                    Payment::for_order(new_id(), id.to_owned(), order.amount_cents);
                emitted.push(payment.announce(created));
                payments.by_key.insert(id.to_owned(), payment);
                payments.touch(id);
            } else {
                let payment = payments
                    .by_key
                    .get_mut(id)
                    .ok_or_else(|| not_found::<Payment>(id))?;
                if let Some(cancelled) = payment.on_order_cancelled() {
                    emitted.push(payment.announce(cancelled));
                    payments.touch(id);
                }
            }
        }
        save(tx, &payments.changed()).await?;
        Ok(emitted)
    }
}
