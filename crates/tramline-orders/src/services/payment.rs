//! The payment service: opens a payment for every new order, approves or rejects it by command,
//! and cancels a pending one when its order is cancelled.

use super::{new_id, Reaction, ServiceDb};
use crate::domain::order::OrderEventType;
use crate::domain::payment::{Payment, PaymentStatus};
use crate::error::{OrderSystemError, Result};
use crate::events::DomainEvent;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use tramline_sql::sqlite::WriteTx;
use tramline_sql::SqlError;

const STORE: &str = "payment service";

const INSERT: &str =
    "INSERT INTO payments (payment_id, order_id, amount_cents, status, version, updated_at) \
     VALUES (?, ?, ?, ?, ?, ?)";
const SELECT_RANGE: &str =
    "SELECT payment_id, order_id, amount_cents, status, version FROM payments \
     WHERE order_id > ?1 AND (?2 IS NULL OR order_id <= ?2) ORDER BY order_id";
const SELECT_BY_ID: &str =
    "SELECT payment_id, order_id, amount_cents, status, version FROM payments WHERE payment_id = ?";
const SELECT_BY_ORDER: &str =
    "SELECT payment_id, order_id, amount_cents, status, version FROM payments WHERE order_id = ?";
const UPDATE: &str =
    "UPDATE payments SET status = ?, version = ?, updated_at = ? WHERE payment_id = ?";

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

    /// Decides many payments in one transaction. A payment the state machine refuses, or an
    /// unknown id, gets its own error and changes nothing; a store error fails them all.
    pub async fn decide_many(
        &self,
        decisions: &[(String, Decision)],
    ) -> Result<Vec<Result<Payment>>> {
        let mut tx = self.db.begin(STORE).await?;
        let mut outcomes = Vec::with_capacity(decisions.len());
        let mut events = Vec::new();
        for (payment_id, decision) in decisions {
            let mut payment = match load(&mut tx, SELECT_BY_ID, payment_id).await {
                Ok(p) => p,
                Err(OrderSystemError::Store(e)) => return Err(e.into()),
                Err(refused) => {
                    outcomes.push(Err(refused));
                    continue;
                }
            };
            let decided = match decision {
                Decision::Approve => payment.approve(),
                Decision::Reject => payment.reject(),
            };
            match decided {
                Ok(event) => {
                    save(&mut tx, &payment).await?;
                    events.push(DomainEvent::Payment(event, payment.clone()));
                    outcomes.push(Ok(payment));
                }
                Err(refused) => outcomes.push(Err(refused)),
            }
        }
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
        load(&mut conn, SELECT_BY_ID, payment_id).await
    }

    /// The payments of orders with ids in (`after`, `upto`], in order id order.
    pub async fn for_orders_in(&self, after: &str, upto: Option<&str>) -> Result<Vec<Payment>> {
        sqlx::query(SELECT_RANGE)
            .bind(after)
            .bind(upto)
            .fetch_all(&self.db.pool)
            .await
            .map_err(SqlError::at(STORE, "read payments"))?
            .iter()
            .map(decode)
            .collect()
    }
}

async fn load(conn: &mut SqliteConnection, select: &'static str, id: &str) -> Result<Payment> {
    let row = sqlx::query(select)
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(SqlError::at(STORE, "load payment"))?
        .ok_or_else(|| OrderSystemError::NotFound {
            entity: "payment",
            id: id.to_owned(),
        })?;
    decode(&row)
}

async fn save(tx: &mut WriteTx, payment: &Payment) -> Result<()> {
    sqlx::query(UPDATE)
        .bind(payment.status.as_str())
        .bind(payment.version)
        .bind(tramline_core::envelope::now_ms())
        .bind(&payment.payment_id)
        .execute(&mut **tx)
        .await
        .map_err(SqlError::at(STORE, "update payment"))?;
    Ok(())
}

fn decode(row: &SqliteRow) -> Result<Payment> {
    let status: String = row.get(3);
    Ok(Payment {
        payment_id: row.get(0),
        order_id: row.get(1),
        amount_cents: row.get(2),
        status: PaymentStatus::parse(&status).ok_or_else(|| {
            OrderSystemError::Malformed(format!("stored payment status {status:?}"))
        })?,
        version: row.get(4),
    })
}

/// How payments follow orders.
#[derive(Debug, Default)]
pub struct PaymentReaction;

impl Reaction for PaymentReaction {
    const STORE: &'static str = STORE;

    async fn react(&self, tx: &mut WriteTx, event: DomainEvent) -> Result<Vec<DomainEvent>> {
        match event {
            DomainEvent::Order(OrderEventType::Created, order) => {
                let existing = load(tx, SELECT_BY_ORDER, &order.order_id).await;
                if !matches!(existing, Err(OrderSystemError::NotFound { .. })) {
                    // Already has its payment (or the lookup failed): nothing new to create.
                    return existing.map(|_| Vec::new());
                }
                let (payment, created) =
                    Payment::for_order(new_id(), order.order_id, order.amount_cents);
                sqlx::query(INSERT)
                    .bind(&payment.payment_id)
                    .bind(&payment.order_id)
                    .bind(payment.amount_cents)
                    .bind(payment.status.as_str())
                    .bind(payment.version)
                    .bind(tramline_core::envelope::now_ms())
                    .execute(&mut **tx)
                    .await
                    .map_err(SqlError::at(STORE, "insert payment"))?;
                Ok(vec![DomainEvent::Payment(created, payment)])
            }
            DomainEvent::Order(OrderEventType::Cancelled, order) => {
                let mut payment = load(tx, SELECT_BY_ORDER, &order.order_id).await?;
                let Some(cancelled) = payment.on_order_cancelled() else {
                    return Ok(Vec::new());
                };
                save(tx, &payment).await?;
                Ok(vec![DomainEvent::Payment(cancelled, payment)])
            }
            _ => Ok(Vec::new()),
        }
    }
}
