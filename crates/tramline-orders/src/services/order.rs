//! The order service: places and cancels orders, and follows its payment and delivery.

use super::{
    command_one, get, load, new_id, not_found, save, Prepared, Reaction, ServiceDb, Stored,
};
use crate::domain::delivery::DeliveryEventType;
use crate::domain::order::{CreateOrder, Order, OrderEventType};
use crate::domain::payment::PaymentEventType;
use crate::error::{OrderSystemError, Result};
use crate::events::{DomainEvent, DELIVERY_EVENTS, PAYMENT_EVENTS};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};
use tramline_sql::db::Tuple;
use tramline_sql::{Dialect, Tx};

const STORE: &str = "order service";

/// The consumer group the order service follows its payments and deliveries as.
pub const GROUP: &str = "order-service";
/// The topics it reacts to.
pub const TOPICS: &[&str] = &[PAYMENT_EVENTS, DELIVERY_EVENTS];

/// Migrations of the order service's own tables.
pub fn migrations(dialect: Dialect) -> sqlx::migrate::Migrator {
    match dialect {
        Dialect::Sqlite => sqlx::migrate!("./migrations/sqlite/order"),
        Dialect::MySql => sqlx::migrate!("./migrations/mysql/order"),
        Dialect::Postgres => sqlx::migrate!("./migrations/postgres/order"),
    }
}

/// The order service.
#[derive(Debug, Clone)]
pub struct OrderService {
    db: ServiceDb,
    group: Option<GroupCommit>,
}

impl OrderService {
    /// The service on its database.
    pub fn new(db: ServiceDb) -> Self {
        OrderService { db, group: None }
    }

    /// The service with [`OrderService::create`] calls made at the same time sharing
    /// transactions: `committers` tasks (spawned now, on the current tokio runtime) each take
    /// every order waiting, up to [`MAX_GROUP`], and commit them together — one commit, one
    /// fsync, for many requests. An order waits for no timer: a lone request commits alone,
    /// at once. If a group's transaction fails, each of its orders is committed on its own,
    /// so one order's failure (an `Idempotency-Key` recorded meanwhile by another request)
    /// is that order's only. The tasks end when the last clone of the service is dropped.
    pub fn with_group_commit(mut self, committers: usize) -> Self {
        let (sender, receiver) = mpsc::channel(MAX_GROUP * committers.max(1) * 2);
        let receiver = Arc::new(Mutex::new(receiver));
        let stats = Arc::new(GroupStats::default());
        for _ in 0..committers.max(1) {
            let committer = Committer {
                db: self.db.clone(),
                receiver: Arc::clone(&receiver),
                stats: Arc::clone(&stats),
            };
            tokio::spawn(committer.run());
        }
        self.group = Some(GroupCommit { sender, stats });
        self
    }

    /// How many group transactions committed how many orders, with group commit on.
    pub fn group_stats(&self) -> Option<(u64, u64)> {
        self.group.as_ref().map(|g| {
            (
                g.stats.groups.load(Ordering::Relaxed),
                g.stats.orders.load(Ordering::Relaxed),
            )
        })
    }

    /// The service's database.
    pub fn db(&self) -> &ServiceDb {
        &self.db
    }

    /// Places an order → `OrderCreated`.
    pub async fn create(&self, cmd: CreateOrder) -> Result<Order> {
        let Some(group) = &self.group else {
            let mut placed = self.create_many(vec![cmd]).await?;
            return Ok(placed.pop().expect("one order per command"));
        };
        let (order, event) = Order::create(new_id(), cmd)?;
        // Read in the request's own task: the committer's knows nothing of the request.
        let prepared = self.db.prepare(&[DomainEvent::Order(event, order.clone())]);
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            order,
            prepared,
            reply,
        };
        group
            .sender
            .send(pending)
            .await
            .map_err(|_| OrderSystemError::Stopped)?;
        answer.await.map_err(|_| OrderSystemError::Stopped)?
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
        save(&mut tx, &placed.iter().collect::<Vec<_>>()).await?;
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
        let db = &self.db.db;
        let (mut stmt, _) = super::select::<Order>(db.dialect(), None);
        stmt.push("(SELECT * FROM orders WHERE order_id > ")
            .bind(after)
            .push(" ORDER BY order_id LIMIT ")
            .bind(limit)
            .push(") AS page");
        let mut orders: Vec<Order> = db.fetch_json(&stmt, STORE, "read page").await?;
        orders.sort_unstable_by(|a, b| a.order_id.cmp(&b.order_id));
        Ok(orders)
    }
}

impl Stored for Order {
    const ENTITY: &'static str = "order";
    const STORE: &'static str = STORE;
    const TABLE: &'static str = "orders";
    const FIELDS: &'static [(&'static str, &'static str)] = &[
        ("orderId", "order_id"),
        ("customerId", "customer_id"),
        ("productId", "product_id"),
        ("quantity", "quantity"),
        ("amountCents", "amount_cents"),
        ("shippingAddress", "shipping_address"),
        ("status", "status"),
        ("version", "version"),
    ];
    const MUTABLE: &'static [&'static str] = &["status", "version"];
    type EventType = OrderEventType;

    fn id(&self) -> &str {
        &self.order_id
    }

    fn announce(&self, event: OrderEventType) -> DomainEvent {
        DomainEvent::Order(event, self.clone())
    }

    fn bind(&self, row: &mut Tuple<'_>) {
        row.bind(&self.order_id)
            .bind(&self.customer_id)
            .bind(&self.product_id)
            .bind(self.quantity)
            .bind(self.amount_cents)
            .bind(&self.shipping_address)
            .bind(self.status.as_str())
            .bind(self.version);
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

    async fn react(&self, tx: &mut Tx, events: Vec<DomainEvent>) -> Result<Vec<DomainEvent>> {
        let steps: Vec<_> = events
            .iter()
            .filter_map(|e| step_for(e).map(|step| (e.order_id(), step)))
            .collect();
        if steps.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = steps.iter().map(|(id, _)| *id).collect();
        let mut orders = load::<Order>(tx, "order_id", &ids, Order::id).await?;
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
        save(tx, &orders.changed()).await?;
        Ok(emitted)
    }
}

/// The most orders one group transaction commits.
pub const MAX_GROUP: usize = 256;

/// The sending side of a service's group commit.
#[derive(Debug, Clone)]
struct GroupCommit {
    sender: mpsc::Sender<Pending>,
    stats: Arc<GroupStats>,
}

/// Group transactions and the orders they committed.
#[derive(Debug, Default)]
struct GroupStats {
    groups: AtomicU64,
    orders: AtomicU64,
}

/// An order waiting for its group's commit.
#[derive(Debug)]
struct Pending {
    order: Order,
    prepared: Prepared,
    reply: oneshot::Sender<Result<Order>>,
}

/// One of the tasks committing groups.
struct Committer {
    db: ServiceDb,
    receiver: Arc<Mutex<mpsc::Receiver<Pending>>>,
    stats: Arc<GroupStats>,
}

impl Committer {
    async fn run(self) {
        loop {
            let group = {
                let mut receiver = self.receiver.lock().await;
                let Some(first) = receiver.recv().await else {
                    return; // every sender dropped: the service is gone
                };
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match receiver.try_recv() {
                        Ok(next) => group.push(next),
                        Err(_) => break,
                    }
                }
                group
            };
            match self.commit(&group).await {
                Ok(()) => {
                    for p in group {
                        let _ = p.reply.send(Ok(p.order));
                    }
                }
                Err(e) if group.len() == 1 => {
                    if let Some(p) = group.into_iter().next() {
                        let _ = p.reply.send(Err(e));
                    }
                }
                Err(_) => {
                    // Someone's order spoiled the group: each commits on its own.
                    for p in group {
                        let outcome = self.commit(std::slice::from_ref(&p)).await;
                        let _ = p.reply.send(outcome.map(|()| p.order));
                    }
                }
            }
        }
    }

    /// Commits `group`'s orders, their messages and idempotency records in one transaction.
    async fn commit(&self, group: &[Pending]) -> Result<()> {
        let mut tx = self.db.begin(STORE).await?;
        let orders: Vec<&Order> = group.iter().map(|p| &p.order).collect();
        save(&mut tx, &orders).await?;
        for p in group {
            self.db.write(&mut tx, &p.prepared).await?;
        }
        tx.commit(STORE).await?;
        self.db.outbox.notify();
        self.stats.groups.fetch_add(1, Ordering::Relaxed);
        self.stats
            .orders
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}
