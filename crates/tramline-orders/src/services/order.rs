//! The order service: places and cancels orders, and follows its payment and delivery.

use super::{command_one, get, load, new_id, not_found, read_sorted, Reaction, ServiceDb, Stored};
use crate::domain::delivery::DeliveryEventType;
use crate::domain::order::{CreateOrder, Order, OrderEventType};
use crate::domain::payment::PaymentEventType;
use crate::error::Result;
use crate::events::DomainEvent;
use sqlx::SqliteConnection;
use tramline_sql::sqlite::{insert_rows, WriteTx};

const STORE: &str = "order service";

/// The stored columns as the camelCase JSON object `Order` deserialises from.
macro_rules! order_json {
    () => {
        "json_group_array(json_object('orderId', order_id, 'customerId', customer_id, \
         'productId', product_id, 'quantity', quantity, 'amountCents', amount_cents, \
         'shippingAddress', shipping_address, 'status', status, 'version', version))"
    };
}
const LOAD: &str = concat!(
    "SELECT ",
    order_json!(),
    " FROM orders WHERE order_id IN (SELECT value FROM json_each(?))"
);
const PAGE: &str = concat!(
    "SELECT ",
    order_json!(),
    " FROM (SELECT * FROM orders WHERE order_id > ? ORDER BY order_id LIMIT ?)"
);
const SAVE: &str =
    "INSERT INTO orders (order_id, customer_id, product_id, quantity, amount_cents, \
     shipping_address, status, version, updated_at) ";
const ON_CONFLICT: &str = " ON CONFLICT (order_id) DO UPDATE SET status = excluded.status, \
     version = excluded.version, updated_at = excluded.updated_at";

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
        Order::save(&mut tx, &placed.iter().collect::<Vec<_>>()).await?;
        self.db.commit(tx, STORE, &events).await?;
        Ok(placed)
    }

    /// Cancels a PENDING order → `OrderCancelled`.
    pub async fn cancel(&self, order_id: &str) -> Result<Order> {
        command_one(&self.db, order_id, (), |order: &mut Order, ()| {
            order.cancel()
        })
        .await
    }

    /// The order with this id.
    pub async fn get(&self, order_id: &str) -> Result<Order> {
        get(&self.db, order_id).await
    }

    /// Up to `limit` orders with ids after `after`, in id order: a keyset page.
    pub async fn page_after(&self, after: &str, limit: u32) -> Result<Vec<Order>> {
        let query = sqlx::query(PAGE).bind(after).bind(limit);
        read_sorted(&self.db, query, Order::id).await
    }
}

impl Stored for Order {
    const ENTITY: &'static str = "order";
    const STORE: &'static str = STORE;
    const LOAD_BY_ID: &'static str = LOAD;
    type EventType = OrderEventType;

    fn id(&self) -> &str {
        &self.order_id
    }

    fn announce(&self, event: OrderEventType) -> DomainEvent {
        DomainEvent::Order(event, self.clone())
    }

    async fn save(conn: &mut SqliteConnection, orders: &[&Order]) -> Result<()> {
        let now = tramline_core::envelope::now_ms();
        insert_rows(
            conn,
            STORE,
            "save orders",
            SAVE,
            ON_CONFLICT,
            orders,
            |row, o| {
                row.push_bind(o.order_id.clone())
                    .push_bind(o.customer_id.clone())
                    .push_bind(o.product_id.clone())
                    .push_bind(o.quantity)
                    .push_bind(o.amount_cents)
                    .push_bind(o.shipping_address.clone())
                    .push_bind(o.status.as_str())
                    .push_bind(o.version)
                    .push_bind(now);
            },
        )
        .await?;
        Ok(())
    }
}

/// How the order follows its payment and delivery.
#[derive(Debug, Default)]
pub struct OrderReaction;

/// The order's reaction to an upstream event, if it has one.
fn step_for(event: &DomainEvent) -> Option<fn(&mut Order) -> Option<OrderEventType>> {
    match event {
        DomainEvent::Payment(PaymentEventType::Approved, _) => Some(Order::on_payment_approved),
        DomainEvent::Payment(PaymentEventType::Rejected, _) => Some(Order::on_payment_rejected),
        DomainEvent::Delivery(DeliveryEventType::Completed, _) => {
            Some(Order::on_delivery_completed)
        }
        _ => None,
    }
}

impl Reaction for OrderReaction {
    const STORE: &'static str = STORE;

    async fn react(&self, tx: &mut WriteTx, events: Vec<DomainEvent>) -> Result<Vec<DomainEvent>> {
        let steps: Vec<_> = events
            .iter()
            .filter_map(|e| step_for(e).map(|step| (e.order_id(), step)))
            .collect();
        if steps.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = steps.iter().map(|(id, _)| *id).collect();
        let mut orders = load::<Order>(tx, LOAD, &ids, Order::id).await?;
        let mut emitted = Vec::new();
        for (order_id, step) in steps {
            let order = orders
                .by_key
                .get_mut(order_id)
                .ok_or_else(|| not_found::<Order>(order_id))?;
            if let Some(changed) = step(order) {
                emitted.push(order.announce(changed));
                orders.touch(order_id);
            }
        }
        Order::save(tx, &orders.changed()).await?;
        Ok(emitted)
    }
}
