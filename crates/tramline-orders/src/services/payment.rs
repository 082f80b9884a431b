//! The payment service: opens a payment for every new order, approves or rejects it by command,
//! and cancels a pending one when its order is cancelled.

use super::{load_many, new_id, Loaded, Reaction, ServiceDb};
use crate::domain::order::OrderEventType;
use crate::domain::payment::Payment;
use crate::error::{OrderSystemError, Result};
use crate::events::DomainEvent;
use sqlx::SqliteConnection;
use tramline_sql::sqlite::{fetch_json_rows, insert_rows, WriteTx};
use tramline_sql::SqlError;

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
        self.decide_one(payment_id, Decision::Approve).await
    }

    /// Rejects a PENDING payment → `PaymentRejected`.
    pub async fn reject(&self, payment_id: &str) -> Result<Payment> {
        self.decide_one(payment_id, Decision::Reject).await
    }

    async fn decide_one(&self, payment_id: &str, decision: Decision) -> Result<Payment> {
        let mut outcomes = self
            .decide_many(&[(payment_id.to_owned(), decision)])
            .await?;
        outcomes.pop().expect("one outcome per decision")
    }

    /// Decides many payments in one transaction, in order. A decision the state machine
    /// refuses, or an unknown id, gets its own error and changes nothing; a store error fails
    /// them all.
    pub async fn decide_many(
        &self,
        decisions: &[(String, Decision)],
    ) -> Result<Vec<Result<Payment>>> {
        let mut tx = self.db.begin(STORE).await?;
        let ids: Vec<&str> = decisions.iter().map(|(id, _)| id.as_str()).collect();
        let mut payments = load(&mut tx, LOAD_BY_ID, &ids, |p| &p.payment_id).await?;
        let mut outcomes = Vec::with_capacity(decisions.len());
        let mut events = Vec::new();
        for (payment_id, decision) in decisions {
            let Some(payment) = payments.by_key.get_mut(payment_id) else {
                outcomes.push(Err(not_found(payment_id)));
                continue;
            };
            let decided = match decision {
                Decision::Approve => payment.approve(),
                Decision::Reject => payment.reject(),
            };
            outcomes.push(decided.map(|event| {
                events.push(DomainEvent::Payment(event, payment.clone()));
                payment.clone()
            }));
            if outcomes.last().is_some_and(Result::is_ok) {
                payments.touch(payment_id);
            }
        }
        save(&mut tx, &payments.changed()).await?;
        self.db.commit(tx, STORE, &events).await?;
        Ok(outcomes)
    }

    /// The payment with this id.
    pub async fn get(&self, payment_id: &str) -> Result<Payment> {
        let mut conn = self
            .db
            .pool
            .acquire()
            .await
            .map_err(SqlError::at(STORE, "acquire"))?;
        load(&mut conn, LOAD_BY_ID, &[payment_id], |p| &p.payment_id)
            .await?
            .by_key
            .remove(payment_id)
            .ok_or_else(|| not_found(payment_id))
    }

    /// The payments of orders with ids in (`after`, `upto`], in order id order.
    pub async fn for_orders_in(&self, after: &str, upto: Option<&str>) -> Result<Vec<Payment>> {
        let mut payments: Vec<Payment> = fetch_json_rows(
            sqlx::query(RANGE).bind(after).bind(upto),
            &self.db.pool,
            STORE,
            "read payments",
        )
        .await?;
        payments.sort_unstable_by(|a, b| a.order_id.cmp(&b.order_id));
        Ok(payments)
    }
}

async fn load(
    conn: &mut SqliteConnection,
    select: &'static str,
    ids: &[&str],
    key: fn(&Payment) -> &str,
) -> Result<Loaded<Payment>> {
    Ok(Loaded::new(load_many(conn, STORE, select, ids).await?, key))
}

fn not_found(id: &str) -> OrderSystemError {
    OrderSystemError::NotFound {
        entity: "payment",
        id: id.to_owned(),
    }
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
        let mut payments = load(tx, LOAD_BY_ORDER, &ids, |p| &p.order_id).await?;
        let mut emitted = Vec::new();
        for (event, order) in &relevant {
            let id = order.order_id.as_str();
            if *event == OrderEventType::Created {
                if payments.by_key.contains_key(id) {
                    continue; // already has its payment
                }
                let (payment, created) =
                    Payment::for_order(new_id(), id.to_owned(), order.amount_cents);
                emitted.push(DomainEvent::Payment(created, payment.clone()));
                payments.by_key.insert(id.to_owned(), payment);
                payments.touch(id);
            } else {
                let payment = payments.by_key.get_mut(id).ok_or_else(|| not_found(id))?;
                if let Some(cancelled) = payment.on_order_cancelled() {
                    emitted.push(DomainEvent::Payment(cancelled, payment.clone()));
                    payments.touch(id);
                }
            }
        }
        save(tx, &payments.changed()).await?;
        Ok(emitted)
    }
}
