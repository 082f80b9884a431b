//! Bad input gets a clear typed error, is never silently dropped, and changes no state.

mod common;

use common::{command, completed_history, records, view_db};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tramline_core::consumer::{ConsumerConfig, ConsumerRuntime};
use tramline_core::envelope::EVENT_TYPE;
use tramline_core::ports::{Handler, Transport};
use tramline_core::{Envelope, Error};
use tramline_orders::events::ALL_TOPICS;
use tramline_orders::services::order::{self, OrderService};
use tramline_orders::services::{ServiceDb, Subscriber};
use tramline_orders::view::projection::OrderStatusProjection;
use tramline_orders::view::OrderStatusQuery;
use tramline_orders::OrderSystemError;
use tramline_sql::{DbOptions, SqlLog};
use tramline_testkit::{on_every_database, Backend, TestDbs};

fn malformed(good: &Envelope) -> Vec<(&'static str, Envelope)> {
    let mut bad_payload = good.clone();
    bad_payload.id = uuid::Uuid::now_v7();
    bad_payload.payload = "{\"orderId\": 42".into();
    let mut unknown_type = good.clone();
    unknown_type.id = uuid::Uuid::now_v7();
    unknown_type
        .headers
        .insert(EVENT_TYPE.into(), "OrderTeleported".into());
    let mut no_type = good.clone();
    no_type.id = uuid::Uuid::now_v7();
    no_type.headers.remove(EVENT_TYPE);
    vec![
        ("malformed payload", bad_payload),
        ("unknown event type", unknown_type),
        ("no event type", no_type),
    ]
}

async fn a_poison_message_is_refused_with_a_typed_error_and_changes_nothing(backend: Backend) {
    let dbs = TestDbs::new(backend, "poison-direct");
    let db = view_db(&dbs).await;
    let handler = OrderStatusProjection::consumer(&db, "view");
    let good = records(&completed_history("order-1")).remove(0);
    for (what, envelope) in malformed(&good.envelope) {
        let record = tramline_core::Record {
            envelope,
            ..good.clone()
        };
        let err = handler
            .apply(std::slice::from_ref(&record))
            .await
            .expect_err(what);
        assert!(matches!(err, Error::Poison { .. }), "{what}: {err}");
        assert!(!err.is_transient(), "{what}");
    }
    assert_eq!(
        OrderStatusQuery::new(db.clone())
            .get("order-1")
            .await
            .expect("readable"),
        None
    );
    // Nothing was claimed: the good message still applies.
    let applied = handler.apply(&[good]).await.expect("good message applies");
    assert_eq!((applied.applied, applied.duplicates), (1, 0));
}

async fn the_runtime_parks_poison_and_applies_everything_around_it(backend: Backend) {
    let dbs = TestDbs::new(backend, "poison-runtime");
    let log = SqlLog::open(&dbs.url("log").await, &DbOptions::default())
        .await
        .expect("log opens");
    for t in ALL_TOPICS {
        log.create_topic(t, 2).await.expect("topic");
    }
    let db = view_db(&dbs).await;
    let first = records(&completed_history("order-1"));
    let second = records(&completed_history("order-2"));
    let poison = malformed(&first[0].envelope).remove(0).1;
    let mut batch: Vec<Envelope> = first.iter().map(|r| r.envelope.clone()).collect();
    batch.push(poison.clone());
    batch.extend(second.iter().map(|r| r.envelope.clone()));
    log.publish(&batch).await.expect("published");

    // Parking only the message (the default holds its key: tests/parking.rs).
    let handler = OrderStatusProjection::consumer(&db, "view")
        .with_parking(tramline_sql::ParkPolicy::Message);
    let handler = Arc::new(handler);
    let runtime = ConsumerRuntime::new(Arc::clone(&handler), ConsumerConfig::default());
    let stats = runtime.stats();
    let topics: Vec<String> = ALL_TOPICS.iter().map(|s| s.to_string()).collect();
    let sub = log.subscribe("view", &topics).await.expect("subscribed");
    let cancel = CancellationToken::new();
    let task = tokio::spawn({
        let cancel = cancel.clone();
        async move { runtime.run(sub, cancel).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while log.lag("view", &topics).await.expect("lag") > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the consumer did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel.cancel();
    task.await.expect("no panic").expect("runtime ends cleanly");

    assert_eq!(handler.inbox().parked(&db.db).await.expect("count"), 1);
    assert_eq!(stats.parked.load(std::sync::atomic::Ordering::Relaxed), 1);
    let query = OrderStatusQuery::new(db);
    for id in ["order-1", "order-2"] {
        let row = query.get(id).await.expect("readable").expect("row exists");
        assert_eq!(row.delivery_status.as_deref(), Some("COMPLETED"), "{id}");
        assert_eq!(row.order_status.as_deref(), Some("COMPLETED"), "{id}");
    }
}

async fn order_service(dbs: &TestDbs) -> OrderService {
    OrderService::new(
        ServiceDb::open(
            &dbs.url("order").await,
            &DbOptions::default(),
            order::migrations,
        )
        .await
        .expect("order db opens"),
    )
}

async fn an_invalid_command_is_refused_and_writes_nothing(backend: Backend) {
    let dbs = TestDbs::new(backend, "invalid-command");
    let orders = order_service(&dbs).await;
    let mut cmd = command(1);
    cmd.amount_cents = -5;
    let err = orders.create(cmd).await.expect_err("negative amount");
    assert!(
        matches!(
            err,
            OrderSystemError::Invalid {
                field: "amountCents",
                ..
            }
        ),
        "{err}"
    );
    let mut bulk = vec![command(2), command(3)];
    bulk[1].shipping_address = "   ".into();
    let err = orders
        .create_many(bulk)
        .await
        .expect_err("one invalid refuses all");
    assert!(
        matches!(
            err,
            OrderSystemError::Invalid {
                field: "shippingAddress",
                ..
            }
        ),
        "{err}"
    );
    assert!(orders
        .page_after("", 10)
        .await
        .expect("readable")
        .is_empty());
    assert_eq!(orders.db().outbox.backlog().await.expect("readable"), 0);
}

/// The longest values the API documents are stored as they are on every database (the
/// columns count characters, four-byte ones too); control characters, which PostgreSQL cannot
/// store (NUL), are refused as invalid rather than failing in the store.
async fn the_documented_text_limits_hold_in_every_store(backend: Backend) {
    let dbs = TestDbs::new(backend, "text-limits");
    let orders = order_service(&dbs).await;
    let mut cmd = command(1);
    cmd.customer_id = "🚋".repeat(255);
    cmd.product_id = "é".repeat(255);
    cmd.shipping_address = format!("{}\r\n\t{}", "街".repeat(200), "街".repeat(308));
    let placed = orders
        .create(cmd.clone())
        .await
        .expect("the longest values are stored");
    let read = orders.get(&placed.order_id).await.expect("readable");
    assert_eq!(
        (read.customer_id, read.product_id, read.shipping_address),
        (cmd.customer_id, cmd.product_id, cmd.shipping_address)
    );
    for (field, value) in [
        ("customerId", "c\u{0}1"),
        ("productId", "p\u{85}"),
        ("shippingAddress", "1 Tram Street\u{7}"),
    ] {
        let mut cmd = command(2);
        match field {
            "customerId" => cmd.customer_id = value.into(),
            "productId" => cmd.product_id = value.into(),
            _ => cmd.shipping_address = value.into(),
        }
        let err = orders.create(cmd).await.expect_err("a control character");
        assert!(
            matches!(err, OrderSystemError::Invalid { field: f, .. } if f == field),
            "{field}: {err}"
        );
    }
    let mut too_long = command(3);
    too_long.customer_id = "c".repeat(256);
    assert!(orders.create(too_long).await.is_err());
}

async fn an_illegal_transition_is_refused_and_emits_nothing(backend: Backend) {
    let dbs = TestDbs::new(backend, "illegal-transition");
    let orders = order_service(&dbs).await;
    let order = orders.create(command(1)).await.expect("created");
    let cancelled = orders.cancel(&order.order_id).await.expect("cancelled");
    let err = orders
        .cancel(&order.order_id)
        .await
        .expect_err("cancel twice");
    assert!(
        matches!(
            err,
            OrderSystemError::IllegalTransition {
                action: "cancel",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        orders.get(&order.order_id).await.expect("readable"),
        cancelled
    );
    assert_eq!(
        orders.db().outbox.backlog().await.expect("readable"),
        2,
        "created + cancelled only"
    );
    let err = orders
        .cancel("no-such-order")
        .await
        .expect_err("unknown id");
    assert!(
        matches!(
            err,
            OrderSystemError::NotFound {
                entity: "order",
                ..
            }
        ),
        "{err}"
    );
}

async fn a_failed_batch_leaves_no_dedupe_record_so_its_redelivery_applies(backend: Backend) {
    use tramline_orders::services::order::OrderReaction;
    let dbs = TestDbs::new(backend, "atomic-batch");
    let orders = order_service(&dbs).await;
    let handler = Subscriber::new(orders.db().clone(), "order-service", OrderReaction);
    // A payment approval for an order the service does not have (yet).
    let order = tramline_orders::domain::order::Order::create("order-x".into(), command(9))
        .expect("valid")
        .0;
    let history = completed_history(&order.order_id);
    let approval = records(&history)
        .into_iter()
        .find(|r| r.envelope.event_type() == Some("PaymentApproved"))
        .expect("history has an approval");
    let err = handler
        .apply(std::slice::from_ref(&approval))
        .await
        .expect_err("no such order");
    assert!(matches!(err, Error::Poison { .. }), "{err}");
    // Once the order exists, the same message applies: its failed attempt claimed nothing.
    let mut tx = orders.db().begin("test").await.expect("begin");
    let mut insert = tx.stmt(
        "INSERT INTO orders (order_id, customer_id, product_id, quantity, amount_cents, \
         shipping_address, status, version, updated_at) VALUES (",
    );
    insert
        .bind(&order.order_id)
        .push(", 'c', 'p', 1, 1, 'a', 'PENDING', 1, 0)");
    tx.execute(&insert, "test", "insert").await.expect("insert");
    tx.commit("test").await.expect("commit");
    let applied = handler.apply(&[approval]).await.expect("applies now");
    assert_eq!((applied.applied, applied.duplicates), (1, 0));
    assert_eq!(
        orders.get(&order.order_id).await.expect("readable").status,
        tramline_orders::domain::order::OrderStatus::Approved
    );
}

on_every_database!(
    a_poison_message_is_refused_with_a_typed_error_and_changes_nothing,
    the_runtime_parks_poison_and_applies_everything_around_it,
    an_invalid_command_is_refused_and_writes_nothing,
    the_documented_text_limits_hold_in_every_store,
    an_illegal_transition_is_refused_and_emits_nothing,
    a_failed_batch_leaves_no_dedupe_record_so_its_redelivery_applies,
);
