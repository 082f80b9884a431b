//! The delivery service: opens a delivery for every approved payment, and starts and completes
//! it by command.

use super::{new_id, Reaction, ServiceDb};
use crate::domain::delivery::{Delivery, DeliveryStatus};
use crate::domain::payment::PaymentEventType;
use crate::error::{OrderSystemError, Result};
use crate::events::DomainEvent;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use tramline_sql::sqlite::WriteTx;
use tramline_sql::SqlError;

const STORE: &str = "delivery service";

const INSERT: &str = "INSERT INTO deliveries (delivery_id, order_id, status, version, updated_at) \
     VALUES (?, ?, ?, ?, ?)";
const SELECT_RANGE: &str = "SELECT delivery_id, order_id, status, version FROM deliveries \
     WHERE order_id > ?1 AND (?2 IS NULL OR order_id <= ?2) ORDER BY order_id";
const SELECT_BY_ID: &str =
    "SELECT delivery_id, order_id, status, version FROM deliveries WHERE delivery_id = ?";
const SELECT_BY_ORDER: &str =
    "SELECT delivery_id, order_id, status, version FROM deliveries WHERE order_id = ?";
const UPDATE: &str =
    "UPDATE deliveries SET status = ?, version = ?, updated_at = ? WHERE delivery_id = ?";

/// A step of a delivery's lifecycle, by command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStep {
    /// Pick it up.
    Start,
    /// Deliver it.
    Complete,
}

/// Migrations of the delivery service's own tables.
pub fn migrations() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations/sqlite/delivery")
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
        self.advance_one(delivery_id, DeliveryStep::Start).await
    }

    /// Completes a STARTED delivery → `DeliveryCompleted`.
    pub async fn complete(&self, delivery_id: &str) -> Result<Delivery> {
        self.advance_one(delivery_id, DeliveryStep::Complete).await
    }

    async fn advance_one(&self, delivery_id: &str, step: DeliveryStep) -> Result<Delivery> {
        let mut outcomes = self.advance_many(&[(delivery_id.to_owned(), step)]).await?;
        outcomes.pop().expect("one outcome per step")
    }

    /// Moves many deliveries along in one transaction, in the given order (one delivery may
    /// appear twice, to start and then complete it). A step the state machine refuses, or an
    /// unknown id, gets its own error and changes nothing; a store error fails them all.
    pub async fn advance_many(
        &self,
        steps: &[(String, DeliveryStep)],
    ) -> Result<Vec<Result<Delivery>>> {
        let mut tx = self.db.begin(STORE).await?;
        let mut outcomes = Vec::with_capacity(steps.len());
        let mut events = Vec::new();
        for (delivery_id, step) in steps {
            let mut delivery = match load(&mut tx, SELECT_BY_ID, delivery_id).await {
                Ok(d) => d,
                Err(OrderSystemError::Store(e)) => return Err(e.into()),
                Err(refused) => {
                    outcomes.push(Err(refused));
                    continue;
                }
            };
            let advanced = match step {
                DeliveryStep::Start => delivery.start(),
                DeliveryStep::Complete => delivery.complete(),
            };
            match advanced {
                Ok(event) => {
                    save(&mut tx, &delivery).await?;
                    events.push(DomainEvent::Delivery(event, delivery.clone()));
                    outcomes.push(Ok(delivery));
                }
                Err(refused) => outcomes.push(Err(refused)),
            }
        }
        self.db.commit(tx, STORE, &events).await?;
        Ok(outcomes)
    }

    /// The delivery with this id.
    pub async fn get(&self, delivery_id: &str) -> Result<Delivery> {
        let mut conn = self
            .db
            .pool
            .acquire()
            .await
            .map_err(SqlError::at(STORE, "acquire"))?;
        load(&mut conn, SELECT_BY_ID, delivery_id).await
    }

    /// The deliveries of orders with ids in (`after`, `upto`], in order id order.
    pub async fn for_orders_in(&self, after: &str, upto: Option<&str>) -> Result<Vec<Delivery>> {
        sqlx::query(SELECT_RANGE)
            .bind(after)
            .bind(upto)
            .fetch_all(&self.db.pool)
            .await
            .map_err(SqlError::at(STORE, "read deliveries"))?
            .iter()
            .map(decode)
            .collect()
    }
}

async fn load(conn: &mut SqliteConnection, select: &'static str, id: &str) -> Result<Delivery> {
    let row = sqlx::query(select)
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(SqlError::at(STORE, "load delivery"))?
        .ok_or_else(|| OrderSystemError::NotFound {
            entity: "delivery",
            id: id.to_owned(),
        })?;
    decode(&row)
}

async fn save(tx: &mut WriteTx, delivery: &Delivery) -> Result<()> {
    sqlx::query(UPDATE)
        .bind(delivery.status.as_str())
        .bind(delivery.version)
        .bind(tramline_core::envelope::now_ms())
        .bind(&delivery.delivery_id)
        .execute(&mut **tx)
        .await
        .map_err(SqlError::at(STORE, "update delivery"))?;
    Ok(())
}

fn decode(row: &SqliteRow) -> Result<Delivery> {
    let status: String = row.get(2);
    Ok(Delivery {
        delivery_id: row.get(0),
        order_id: row.get(1),
        status: DeliveryStatus::parse(&status).ok_or_else(|| {
            OrderSystemError::Malformed(format!("stored delivery status {status:?}"))
        })?,
        version: row.get(3),
    })
}

/// How deliveries follow payments.
#[derive(Debug, Default)]
pub struct DeliveryReaction;

impl Reaction for DeliveryReaction {
    const STORE: &'static str = STORE;

    async fn react(&self, tx: &mut WriteTx, event: DomainEvent) -> Result<Vec<DomainEvent>> {
        let DomainEvent::Payment(PaymentEventType::Approved, payment) = event else {
            return Ok(Vec::new());
        };
        let existing = load(tx, SELECT_BY_ORDER, &payment.order_id).await;
        if !matches!(existing, Err(OrderSystemError::NotFound { .. })) {
            return existing.map(|_| Vec::new());
        }
        let (delivery, created) = Delivery::for_order(new_id(), payment.order_id);
        sqlx::query(INSERT)
            .bind(&delivery.delivery_id)
            .bind(&delivery.order_id)
            .bind(delivery.status.as_str())
            .bind(delivery.version)
            .bind(tramline_core::envelope::now_ms())
            .execute(&mut **tx)
            .await
            .map_err(SqlError::at(STORE, "insert delivery"))?;
        Ok(vec![DomainEvent::Delivery(created, delivery)])
    }
}
