//! Shared fixtures of the order system's integration tests: event histories and a view.
#![allow(dead_code)]

pub mod http;

use tramline_core::Record;
use tramline_orders::domain::delivery::Delivery;
use tramline_orders::domain::order::{CreateOrder, Order};
use tramline_orders::domain::payment::Payment;
use tramline_orders::events::DomainEvent;
use tramline_orders::services::ServiceDb;
use tramline_orders::view::{self, OrderStatusDetail, OrderStatusRow};
use tramline_sql::DbOptions;
use tramline_testkit::TestDbs;

/// A valid order command.
pub fn command(n: u64) -> CreateOrder {
    CreateOrder {
        customer_id: format!("customer-{n}"),
        product_id: "product-1".into(),
        quantity: 2,
        amount_cents: 4200,
        shipping_address: format!("{n} Tram Street"),
    }
}

/// The full event history of one completed order, as the three services produce it:
/// order v1..v3, payment v1..v2, delivery v1..v3.
pub fn completed_history(order_id: &str) -> Vec<DomainEvent> {
    let mut events = Vec::new();
    let (mut order, t) = Order::create(order_id.into(), command(1)).expect("valid command");
    events.push(DomainEvent::Order(t, order.clone()));
    let (mut payment, t) = Payment::for_order(format!("pay-{order_id}"), order_id.into(), 4200);
    events.push(DomainEvent::Payment(t, payment.clone()));
    let t = payment.approve().expect("pending payment");
    events.push(DomainEvent::Payment(t, payment.clone()));
    let t = order.on_payment_approved().expect("pending order");
    events.push(DomainEvent::Order(t, order.clone()));
    let (mut delivery, t) = Delivery::for_order(format!("del-{order_id}"), order_id.into());
    events.push(DomainEvent::Delivery(t, delivery.clone()));
    let t = delivery.start().expect("ready delivery");
    events.push(DomainEvent::Delivery(t, delivery.clone()));
    let t = delivery.complete().expect("started delivery");
    events.push(DomainEvent::Delivery(t, delivery.clone()));
    let t = order.on_delivery_completed().expect("approved order");
    events.push(DomainEvent::Order(t, order.clone()));
    events
}

/// Events as a consumer receives them; each gets its own message id and offset.
pub fn records(events: &[DomainEvent]) -> Vec<Record> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| Record {
            envelope: e.to_envelope(),
            partition: 0,
            offset: i as i64,
        })
        .collect()
}

/// The row the view must hold after `events`: the newest version of each source.
pub fn expected_row(order_id: &str, events: &[DomainEvent]) -> OrderStatusRow {
    let mut row = OrderStatusRow {
        order_id: order_id.into(),
        ..OrderStatusRow::default()
    };
    let mut latest: Vec<&DomainEvent> = Vec::new();
    for e in events {
        let same_source =
            |l: &&DomainEvent| std::mem::discriminant(*l) == std::mem::discriminant(e);
        match latest.iter().position(same_source) {
            Some(i) if latest[i].version() < e.version() => latest[i] = e,
            Some(_) => {}
            None => latest.push(e),
        }
    }
    for e in latest {
        row.set_from(e);
    }
    row
}

/// The detail `GET /order-status/{id}` must show after `records` of `events`: the row, and
/// each source's change time, the creation time of its newest record.
pub fn expected_detail(
    order_id: &str,
    events: &[DomainEvent],
    records: &[Record],
) -> OrderStatusDetail {
    use tramline_orders::events::{DELIVERY_EVENTS, ORDER_EVENTS, PAYMENT_EVENTS};
    let newest = |topic: &str| {
        events
            .iter()
            .zip(records)
            .filter(|(_, r)| r.envelope.topic == topic)
            .max_by_key(|(e, _)| e.version())
            .map(|(_, r)| r.envelope.created_at_ms)
    };
    OrderStatusDetail {
        row: expected_row(order_id, events),
        order_changed_at: newest(ORDER_EVENTS),
        payment_changed_at: newest(PAYMENT_EVENTS),
        delivery_changed_at: newest(DELIVERY_EVENTS),
    }
}

/// A fresh view database of the test.
pub async fn view_db(dbs: &TestDbs) -> ServiceDb {
    view::open(&dbs.url("view").await, &DbOptions::default())
        .await
        .expect("the view database opens")
}

/// The four service databases of a system, opened on `dbs`.
pub async fn stores(dbs: &TestDbs) -> tramline_orders::system::Stores {
    let url_of = async |store| dbs.url(store).await;
    tramline_orders::system::Stores::open(
        url_of,
        &DbOptions::default(),
        tramline_sql::OutboxLayout::Tramline,
        &tramline_core::topics::TopicNames::default(),
    )
    .await
    .expect("the stores open")
}

/// The embedded log of a system, on `dbs`.
pub async fn log(dbs: &TestDbs) -> std::sync::Arc<tramline_sql::SqlLog> {
    let log = tramline_sql::SqlLog::open(&dbs.url("log").await, &DbOptions::default())
        .await
        .expect("the log opens");
    std::sync::Arc::new(log)
}
