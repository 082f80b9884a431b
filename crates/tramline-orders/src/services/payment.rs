//! The payment service: opens a payment for every new order, approves or rejects it by command,
//! and cancels a pending one when its order is cancelled.

use super::{
    command_many, command_one, get, load, new_id, not_found, read_sorted, Reaction, ServiceDb,
    Stored,
};
use crate::domain::order::OrderEventType;
use crate::domain::payment::{Payment, PaymentEventType};
use crate::error::Result;
use crate::events::DomainEvent;
use sqlx::SqliteConnection;
use tramline_sql::sqlite::{insert_rows, WriteTx};

const STORE: &str = "payment service";

/// The stored columns as the camelCase JSON object `Payment` deserialises from.
macro_rules! payment_json {
    () => {
        "SELECT json_group_array(json_object('paymentId', payment_id, 'orderId', order_id, \
         'amountCents', amount_cents, 'status', status, 'version', version)) FROM "
    };
}
const LOAD_BY_ID: &str = concat!(
    payment_json!(),
    "payments WHERE payment_id IN (SELECT value FROM json_each(?))"
);
const LOAD_BY_ORDER: &str = concat!(
    payment_json!(),
    "payments WHERE order_id IN (SELECT value FROM json_each(?))"
);
const RANGE: &str = concat!(
    payment_json!(),
    "payments WHERE order_id > ?1 AND (?2 IS NULL OR order_id <= ?2)"
);
const SAVE: &str = "INSERT INTO payments (payment_id, order_id, amount_cents, status, version, \
     updated_at) ";
const ON_CONFLICT: &str = " ON CONFLICT (payment_id) DO UPDATE SET status = excluded.status, \
     version = excluded.version, updated_at = excluded.updated_at";

/// What to do with a pending payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Approve it.
    Approve,
    /// Reject it.
    Reject,
}

/// Migrations of the payment service's own tables.
pub fn migrations() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations/sqlite/payment")
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
        let query = sqlx::query(RANGE).bind(after).bind(upto);
        read_sorted(&self.db, query, |p: &Payment| &p.order_id).await
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
    const LOAD_BY_ID: &'static str = LOAD_BY_ID;
    type EventType = PaymentEventType;

    fn id(&self) -> &str {
        &self.payment_id
    }

    fn announce(&self, event: PaymentEventType) -> DomainEvent {
        DomainEvent::Payment(event, self.clone())
    }

    async fn save(conn: &mut SqliteConnection, payments: &[&Payment]) -> Result<()> {
        let now = tramline_core::envelope::now_ms();
        insert_rows(
            conn,
            STORE,
            "save payments",
            SAVE,
            ON_CONFLICT,
            payments,
            |row, p| {
                row.push_bind(p.payment_id.clone())
                    .push_bind(p.order_id.clone())
                    .push_bind(p.amount_cents)
                    .push_bind(p.status.as_str())
                    .push_bind(p.version)
                    .push_bind(now);
            },
        )
        .await?;
        Ok(())
    }
}

/// How payments follow orders.
#[derive(Debug, Default)]
pub struct PaymentReaction;

impl Reaction for PaymentReaction {
    const STORE: &'static str = STORE;

    async fn react(&self, tx: &mut WriteTx, events: Vec<DomainEvent>) -> Result<Vec<DomainEvent>> {
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
        let mut payments = load::<Payment>(tx, LOAD_BY_ORDER, &ids, |p| &p.order_id).await?;
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
        Payment::save(tx, &payments.changed()).await?;
        Ok(emitted)
    }
}
