//! Poison parks its key, not the consumer: one order the view's database refuses among
//! 10,000 leaves 9,999 exact rows and one parked key with its later events held behind the
//! refused one; once the cause is fixed, a retry applies them in order and the view is exact,
//! every event applied once. A foreign producer's undecodable message is skipped the same way.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tramline_core::ports::Transport;
use tramline_core::topics::TopicNames;
use tramline_core::Envelope;
use tramline_orders::domain::order::CreateOrder;
use tramline_orders::events::ORDER_EVENTS;
use tramline_orders::scenario::{Fate, Scenario};
use tramline_orders::services::order::OrderService;
use tramline_orders::system::{parked_ops, Monitor, OrderStatusView, OrderSystem, Stores};
use tramline_orders::view;
use tramline_sql::parked::{self, ParkPolicy, ParkedFilter, ParkedMessage};
use tramline_sql::{Db, DbOptions, Dialect, OutboxLayout, SqlLog};
use tramline_testkit::{on_every_database, wait_until, Backend, TestDbs};

const POISON: &str = "poison";

fn command(i: u64, address: &str) -> CreateOrder {
    CreateOrder {
        customer_id: format!("customer-{}", i % 7),
        product_id: format!("product-{}", i % 3),
        quantity: (i % 4 + 1) as i64,
        amount_cents: 1999,
        shipping_address: address.to_owned(),
    }
}

/// Makes the view's database refuse a row whose shipping address is [`POISON`]: a check
/// constraint (a trigger on SQLite, which cannot add one to a table).
const REFUSE: [(Dialect, &[&str]); 3] = [
    (
        Dialect::Sqlite,
        &[
            "CREATE TRIGGER test_poison_insert BEFORE INSERT ON order_status_view \
             WHEN NEW.shipping_address = 'poison' BEGIN SELECT RAISE(ABORT, 'refused'); END",
            "CREATE TRIGGER test_poison_update BEFORE UPDATE ON order_status_view \
             WHEN NEW.shipping_address = 'poison' BEGIN SELECT RAISE(ABORT, 'refused'); END",
        ],
    ),
    (
        Dialect::MySql,
        &["ALTER TABLE order_status_view ADD CONSTRAINT test_poison \
           CHECK (shipping_address IS NULL OR shipping_address <> 'poison')"],
    ),
    (
        Dialect::Postgres,
        &["ALTER TABLE order_status_view ADD CONSTRAINT test_poison \
           CHECK (shipping_address IS NULL OR shipping_address <> 'poison')"],
    ),
];

const FIX: [(Dialect, &[&str]); 3] = [
    (
        Dialect::Sqlite,
        &[
            "DROP TRIGGER test_poison_insert",
            "DROP TRIGGER test_poison_update",
        ],
    ),
    (
        Dialect::MySql,
        &["ALTER TABLE order_status_view DROP CONSTRAINT test_poison"],
    ),
    (
        Dialect::Postgres,
        &["ALTER TABLE order_status_view DROP CONSTRAINT test_poison"],
    ),
];

async fn run_sql(db: &Db, script: &[(Dialect, &[&str])]) {
    let (_, statements) = script
        .iter()
        .find(|(d, _)| *d == db.dialect())
        .expect("every dialect has its statements");
    for sql in *statements {
        db.execute(&db.stmt(sql), "test", "change the view's table")
            .await
            .expect("the view's table changes");
    }
}

async fn settle<T: Transport>(monitor: &Monitor<T>) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !monitor.settled().await.expect("the system can be checked") {
        assert!(Instant::now() < deadline, "the system did not settle");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn parked_of(db: &Db, consumer: &str) -> Vec<ParkedMessage> {
    let filter = ParkedFilter {
        consumer: Some(consumer.to_owned()),
        ..ParkedFilter::default()
    };
    parked::list(db, &filter).await.expect("parked listed")
}

async fn start(dbs: &TestDbs) -> (Stores, Arc<SqlLog>, tramline_orders::system::System<SqlLog>) {
    let url_of = async |store| dbs.url(store).await;
    let options = DbOptions::default();
    let stores = Stores::open(
        url_of,
        &options,
        OutboxLayout::Tramline,
        &TopicNames::default(),
    )
    .await
    .expect("the stores open");
    let log = Arc::new(
        SqlLog::open(&dbs.url("log").await, &options)
            .await
            .expect("the log opens"),
    );
    let system = OrderSystem::builder(Arc::clone(&log))
        .create_topics(4)
        .order(stores.orders.clone(), None)
        .payment(stores.payments.clone(), None)
        .delivery(stores.deliveries.clone(), None)
        .operator(Scenario::default())
        .relays(stores.outboxes(), None)
        .view(OrderStatusView::new(stores.view.clone()))
        .start()
        .await
        .expect("the system starts");
    (stores, log, system)
}

async fn a_refused_order_parks_its_key_and_a_retry_after_the_fix_applies_it_once(backend: Backend) {
    const ORDERS: u64 = 10_000;
    let dbs = TestDbs::new(backend, "system-parking");
    let (stores, _log, system) = start(&dbs).await;
    run_sql(&stores.view.db, &REFUSE).await;
    let monitor = system.monitor();
    let orders = OrderService::new(stores.orders.clone());
    let scenario = Scenario::default();
    let view_db = stores.view.db.clone();
    let work = async {
        let mut poisoned = None;
        for chunk in (0..ORDERS).collect::<Vec<u64>>().chunks(500) {
            let commands = chunk
                .iter()
                .map(|&i| command(i, if i == 1234 { POISON } else { "1 Tram Street" }))
                .collect();
            let placed = orders.create_many(commands).await.expect("orders placed");
            for o in placed {
                if o.shipping_address == POISON {
                    poisoned = Some(o.order_id.clone());
                }
                if scenario.fate(&o.order_id) == Fate::Cancel {
                    orders.cancel(&o.order_id).await.expect("cancelled");
                }
            }
        }
        settle(&monitor).await;
        poisoned.expect("the poisoned order was placed")
    };
    let poisoned = system
        .run(work, Duration::from_secs(30))
        .await
        .expect("the system ran: poison did not stop it");

    let verification = stores.verify().await.expect("the stores can be read");
    assert_eq!(verification.orders as u64, ORDERS);
    assert_eq!(verification.mismatched_rows, 1, "{verification:?}");
    assert_eq!(verification.examples, vec![poisoned.clone()]);
    let parked = parked_of(&view_db, view::GROUP).await;
    assert!(
        parked.iter().all(|m| m.key == poisoned),
        "only its key: {parked:?}"
    );
    assert!(!parked[0].held, "the refused event comes first");
    assert!(parked[0].reason.contains("refused") || parked[0].reason.contains("test_poison"));
    assert!(
        parked.len() >= 2 && parked[1..].iter().all(|m| m.held),
        "{parked:?}"
    );
    let applied_by_view = monitor
        .view()
        .expect("view")
        .applied
        .load(Ordering::Relaxed);
    assert_eq!(
        monitor.view().expect("view").held.load(Ordering::Relaxed),
        parked.len() as u64 - 1
    );

    let ops = parked_ops(view::GROUP, &stores.view, view::GROUP, ParkPolicy::HoldKey)
        .expect("the view's operations");
    // Retried before the fix, it fails again and keeps holding the key.
    let again = ops.retry(parked[0].id).await.expect("retried");
    assert!(
        again.applied.is_empty() && again.still_parked.is_some(),
        "{again:?}"
    );
    assert_eq!(parked_of(&view_db, view::GROUP).await.len(), parked.len());

    run_sql(&view_db, &FIX).await;
    let released = ops
        .retry(parked[parked.len() - 1].id)
        .await
        .expect("retried");
    assert_eq!(released.applied.len(), parked.len(), "{released:?}");
    assert!(released.still_parked.is_none() && released.duplicates.is_empty());
    assert!(parked_of(&view_db, view::GROUP).await.is_empty());

    let verification = stores.verify().await.expect("the stores can be read");
    assert!(verification.is_correct(), "{verification:?}");
    // Every event published was applied by the view exactly once: by its consumer, or by
    // the retry.
    assert_eq!(
        applied_by_view + released.applied.len() as u64,
        monitor.published()
    );
}

async fn an_undecodable_message_is_skipped_and_the_key_flows_on(backend: Backend) {
    let dbs = TestDbs::new(backend, "system-skip");
    let (stores, log, system) = start(&dbs).await;
    let monitor = system.monitor();
    let orders = OrderService::new(stores.orders.clone());
    let work = async {
        let commands = (0..200).map(|i| command(i, "1 Tram Street")).collect();
        let placed = orders.create_many(commands).await.expect("orders placed");
        let victim = placed[7].order_id.clone();
        // A foreign producer's garbage on the victim's key, after its creation was applied.
        let query = view::OrderStatusQuery::new(stores.view.clone());
        wait_until(
            "the victim shows in the view",
            Duration::from_secs(60),
            async || query.get(&victim).await.expect("view readable").is_some(),
        )
        .await;
        let garbage = Envelope::new(ORDER_EVENTS, victim.as_str(), "{not json".into());
        log.publish(&[garbage]).await.expect("published");
        settle(&monitor).await;
        victim
    };
    let victim = system
        .run(work, Duration::from_secs(30))
        .await
        .expect("the system ran");

    // Every consumer of order events parked the garbage; skipping it there releases the key.
    let mut skipped = 0;
    for (group, db) in [
        (view::GROUP, &stores.view),
        (tramline_orders::services::payment::GROUP, &stores.payments),
    ] {
        let parked = parked_of(&db.db, group).await;
        if parked.is_empty() {
            continue;
        }
        assert!(parked.iter().all(|m| m.key == victim), "{parked:?}");
        assert_eq!(parked[0].payload, "{not json");
        let ops = parked_ops(group, db, view::GROUP, ParkPolicy::HoldKey).expect("operations");
        if parked.len() > 1 {
            // Only the key's first can be skipped.
            assert!(ops.skip(parked[1].id).await.is_err());
        }
        let released = ops.skip(parked[0].id).await.expect("skipped");
        assert_eq!(released.skipped, Some(parked[0].id));
        assert_eq!(released.applied.len(), parked.len() - 1, "{released:?}");
        assert!(parked_of(&db.db, group).await.is_empty());
        skipped += 1;
    }
    assert!(skipped >= 1, "the view parked the garbage");
    let verification = stores.verify().await.expect("the stores can be read");
    assert!(verification.is_correct(), "{verification:?}");
    assert_eq!(verification.view_rows, 200);
}

on_every_database!(
    a_refused_order_parks_its_key_and_a_retry_after_the_fix_applies_it_once,
    an_undecodable_message_is_skipped_and_the_key_flows_on,
);
