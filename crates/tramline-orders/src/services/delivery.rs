//! The delivery service: opens a delivery for every approved payment, and starts and completes
//! it by command.

use super::{load_many, new_id, Loaded, Reaction, ServiceDb};
use crate::domain::delivery::Delivery;
use crate::domain::payment::PaymentEventType;
use crate::error::{OrderSystemError, Result};
use crate::events::DomainEvent;
use sqlx::SqliteConnection;
use tramline_sql::sqlite::{fetch_json_rows, insert_rows, WriteTx};
use tramline_sql::SqlError;

const STORE: &str = "delivery service";

/// The stored columns as the camelCase JSON object `Delivery` deserialises from.
macro_rules! delivery_json {
    () => {
        "SELECT json_group_array(json_object('deliveryId', delivery_id, 'orderId', order_id, \
         'status', status, 'version', version)) FROM "
    };
}
const LOAD_BY_ID: &str = concat!(
    delivery_json!(),
    "deliveries WHERE delivery_id IN (SELECT value FROM json_each(?))"
);
const LOAD_BY_ORDER: &str = concat!(
    delivery_json!(),
    "deliveries WHERE order_id IN (SELECT value FROM json_each(?))"
);
const RANGE: &str = concat!(
    delivery_json!(),
    "deliveries WHERE order_id > ?1 AND (?2 IS NULL OR order_id <= ?2)"
);
const SAVE: &str = "INSERT INTO deliveries (delivery_id, order_id, status, version, updated_at) ";
const ON_CONFLICT: &str = " ON CONFLICT (delivery_id) DO UPDATE SET status = excluded.status, \
     version = excluded.version, updated_at = excluded.updated_at";

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
        let ids: Vec<&str> = steps.iter().map(|(id, _)| id.as_str()).collect();
        let mut deliveries = load(&mut tx, LOAD_BY_ID, &ids, |d| &d.delivery_id).await?;
        let mut outcomes = Vec::with_capacity(steps.len());
        let mut events = Vec::new();
        for (delivery_id, step) in steps {
            let Some(delivery) = deliveries.by_key.get_mut(delivery_id) else {
                outcomes.push(Err(not_found(delivery_id)));
                continue;
            };
            let advanced = match step {
                DeliveryStep::Start => delivery.start(),
                DeliveryStep::Complete => delivery.complete(),
            };
            outcomes.push(advanced.map(|event| {
                events.push(DomainEvent::Delivery(event, delivery.clone()));
                delivery.clone()
            }));
            if outcomes.last().is_some_and(Result::is_ok) {
                deliveries.touch(delivery_id);
            }
        }
        save(&mut tx, &deliveries.changed()).await?;
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
        load(&mut conn, LOAD_BY_ID, &[delivery_id], |d| &d.delivery_id)
            .await?
            .by_key
            .remove(delivery_id)
            .ok_or_else(|| not_found(delivery_id))
    }

    /// The deliveries of orders with ids in (`after`, `upto`], in order id order.
    pub async fn for_orders_in(&self, after: &str, upto: Option<&str>) -> Result<Vec<Delivery>> {
        let mut deliveries: Vec<Delivery> = fetch_json_rows(
            sqlx::query(RANGE).bind(after).bind(upto),
            &self.db.pool,
            STORE,
            "read deliveries",
        )
        .await?;
        deliveries.sort_unstable_by(|a, b| a.order_id.cmp(&b.order_id));
        Ok(deliveries)
    }
}

async fn load(
    conn: &mut SqliteConnection,
    select: &'static str,
    ids: &[&str],
    key: fn(&Delivery) -> &str,
) -> Result<Loaded<Delivery>> {
    Ok(Loaded::new(load_many(conn, STORE, select, ids).await?, key))
}

fn not_found(id: &str) -> OrderSystemError {
    OrderSystemError::NotFound {
        entity: "delivery",
        id: id.to_owned(),
    }
}

async fn save(conn: &mut SqliteConnection, deliveries: &[&Delivery]) -> Result<()> {
    let now = tramline_core::envelope::now_ms();
    insert_rows(
        conn,
        STORE,
        "save deliveries",
        SAVE,
        ON_CONFLICT,
        deliveries,
        |row, d| {
            row.push_bind(d.delivery_id.clone())
                .push_bind(d.order_id.clone())
                .push_bind(d.status.as_str())
                .push_bind(d.version)
                .push_bind(now);
        },
    )
    .await?;
    Ok(())
}

/// How deliveries follow payments.
#[derive(Debug, Default)]
pub struct DeliveryReaction;

impl Reaction for DeliveryReaction {
    const STORE: &'static str = STORE;

    async fn react(&self, tx: &mut WriteTx, events: Vec<DomainEvent>) -> Result<Vec<DomainEvent>> {
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
        let mut deliveries = load(tx, LOAD_BY_ORDER, &ids, |d| &d.order_id).await?;
        let mut emitted = Vec::new();
        for order_id in &approved {
            if deliveries.by_key.contains_key(order_id) {
                continue; // already has its delivery
            }
            let (delivery, created) = Delivery::for_order(new_id(), order_id.clone());
            emitted.push(DomainEvent::Delivery(created, delivery.clone()));
            deliveries.by_key.insert(order_id.clone(), delivery);
            deliveries.touch(order_id);
        }
        save(tx, &deliveries.changed()).await?;
        Ok(emitted)
    }
}
