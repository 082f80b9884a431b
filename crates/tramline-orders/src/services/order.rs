//! The order service: places and cancels orders, and follows its payment and delivery.

use super::{new_id, Reaction, ServiceDb};
use crate::domain::delivery::DeliveryEventType;
use crate::domain::order::{CreateOrder, Order, OrderEventType, OrderStatus};
use crate::domain::payment::PaymentEventType;
use crate::error::{OrderSystemError, Result};
use crate::events::DomainEvent;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use tramline_sql::sqlite::WriteTx;
use tramline_sql::SqlError;

const STORE: &str = "order service";

const INSERT: &str =
    "INSERT INTO orders (order_id, customer_id, product_id, quantity, amount_cents, \
     shipping_address, status, version, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
const SELECT_PAGE: &str = "SELECT order_id, customer_id, product_id, quantity, amount_cents, \
     shipping_address, status, version FROM orders WHERE order_id > ? ORDER BY order_id LIMIT ?";
const SELECT_ONE: &str = "SELECT order_id, customer_id, product_id, quantity, amount_cents, \
     shipping_address, status, version FROM orders WHERE order_id = ?";
const UPDATE: &str = "UPDATE orders SET status = ?, version = ?, updated_at = ? WHERE order_id = ?";

/// Migrations of the order service's own tables.
pub fn migrations() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations/sqlite/order")
}

/// The order service.
#[derive(Debug, Clone)]
pub struct OrderService {
    db: ServiceDb,
}

impl OrderService {
    /// The service on its database.
    pub fn new(db: ServiceDb) -> Self {
        OrderService { db }
    }

    /// The service's database.
    pub fn db(&self) -> &ServiceDb {
        &self.db
    }

    /// Places an order → `OrderCreated`.
    pub async fn create(&self, cmd: CreateOrder) -> Result<Order> {
        let mut placed = self.create_many(vec![cmd]).await?;
        Ok(placed.pop().expect("one order per command"))
    }

    /// Places many orders in one transaction (a bulk import): every command is validated
    /// first, and one invalid command refuses them all. Each order gets its own event.
    pub async fn create_many(&self, cmds: Vec<CreateOrder>) -> Result<Vec<Order>> {
        let mut placed = Vec::with_capacity(cmds.len());
        let mut events = Vec::with_capacity(cmds.len());
        for cmd in cmds {
            let (order, event) = Order::create(new_id(), cmd)?;
            events.push(DomainEvent::Order(event, order.clone()));
            placed.push(order);
        }
        let mut tx = self.db.begin(STORE).await?;
        let now = tramline_core::envelope::now_ms();
        for order in &placed {
            sqlx::query(INSERT)
                .bind(&order.order_id)
                .bind(&order.customer_id)
                .bind(&order.product_id)
                .bind(order.quantity)
                .bind(order.amount_cents)
                .bind(&order.shipping_address)
                .bind(order.status.as_str())
                .bind(order.version)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(SqlError::at(STORE, "insert order"))?;
        }
        self.db.commit(tx, STORE, &events).await?;
        Ok(placed)
    }

    /// Cancels a PENDING order → `OrderCancelled`.
    pub async fn cancel(&self, order_id: &str) -> Result<Order> {
        let mut tx = self.db.begin(STORE).await?;
        let mut order = load(&mut tx, order_id).await?;
        let event = order.cancel()?;
        save(&mut tx, &order).await?;
        self.db
            .commit(tx, STORE, &[DomainEvent::Order(event, order.clone())])
            .await?;
        Ok(order)
    }

    /// The order with this id.
    pub async fn get(&self, order_id: &str) -> Result<Order> {
        let mut conn = self
            .db
            .pool
            .acquire()
            .await
            .map_err(SqlError::at(STORE, "acquire"))?;
        load(&mut conn, order_id).await
    }

    /// Up to `limit` orders with ids after `after`, in id order: a keyset page.
    pub async fn page_after(&self, after: &str, limit: u32) -> Result<Vec<Order>> {
        sqlx::query(SELECT_PAGE)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.db.pool)
            .await
            .map_err(SqlError::at(STORE, "read orders"))?
            .iter()
            .map(decode)
            .collect()
    }
}

async fn load(conn: &mut SqliteConnection, order_id: &str) -> Result<Order> {
    let row = sqlx::query(SELECT_ONE)
        .bind(order_id)
        .fetch_optional(conn)
        .await
        .map_err(SqlError::at(STORE, "load order"))?
        .ok_or_else(|| OrderSystemError::NotFound {
            entity: "order",
            id: order_id.to_owned(),
        })?;
    decode(&row)
}

async fn save(tx: &mut WriteTx, order: &Order) -> Result<()> {
    sqlx::query(UPDATE)
        .bind(order.status.as_str())
        .bind(order.version)
        .bind(tramline_core::envelope::now_ms())
        .bind(&order.order_id)
        .execute(&mut **tx)
        .await
        .map_err(SqlError::at(STORE, "update order"))?;
    Ok(())
}

fn decode(row: &SqliteRow) -> Result<Order> {
    let status: String = row.get(6);
    Ok(Order {
        order_id: row.get(0),
        customer_id: row.get(1),
        product_id: row.get(2),
        quantity: row.get(3),
        amount_cents: row.get(4),
        shipping_address: row.get(5),
        status: OrderStatus::parse(&status).ok_or_else(|| {
            OrderSystemError::Malformed(format!("stored order status {status:?}"))
        })?,
        version: row.get(7),
    })
}

/// How the order follows its payment and delivery.
#[derive(Debug, Default)]
pub struct OrderReaction;

impl Reaction for OrderReaction {
    const STORE: &'static str = STORE;

    async fn react(&self, tx: &mut WriteTx, event: DomainEvent) -> Result<Vec<DomainEvent>> {
        let step: fn(&mut Order) -> Option<OrderEventType> = match &event {
            DomainEvent::Payment(PaymentEventType::Approved, _) => Order::on_payment_approved,
            DomainEvent::Payment(PaymentEventType::Rejected, _) => Order::on_payment_rejected,
            DomainEvent::Delivery(DeliveryEventType::Completed, _) => Order::on_delivery_completed,
            _ => return Ok(Vec::new()),
        };
        let mut order = load(tx, event.order_id()).await?;
        let Some(changed) = step(&mut order) else {
            return Ok(Vec::new());
        };
        save(tx, &order).await?;
        Ok(vec![DomainEvent::Order(changed, order)])
    }
}
