//! Retention while the whole order system runs: with ages of a second, the sweeps cycle many
//! times during the run, every table stays below a bound a run without retention exceeds,
//! nothing is lost (every order's row is exact, nothing parked) and, once the run is over,
//! the outboxes and inboxes empty and the log keeps only the newest record of each key.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tramline_core::topics::TopicNames;
use tramline_orders::domain::order::CreateOrder;
use tramline_orders::scenario::{Fate, Scenario};
use tramline_orders::services::order::OrderService;
use tramline_orders::system::{OrderStatusView, OrderSystem, Stores};
use tramline_sql::retention::{Retention, RetentionPolicy, Table};
use tramline_sql::{DbOptions, OutboxLayout, SqlLog};
use tramline_testkit::{on_every_database, wait_until, Backend, TestDbs};

const WAVES: u64 = 12;
const PER_WAVE: u64 = 100;

fn command(i: u64) -> CreateOrder {
    CreateOrder {
        customer_id: format!("customer-{}", i % 7),
        product_id: format!("product-{}", i % 3),
        quantity: (i % 4 + 1) as i64,
        amount_cents: 1999,
        shipping_address: format!("{i} Tram Street"),
    }
}

/// The largest size seen of each (store, table).
type Peaks = Arc<Mutex<BTreeMap<(String, &'static str), i64>>>;

async fn sample(tables: &[Retention], peaks: &Peaks) -> BTreeMap<(String, &'static str), i64> {
    let mut now = BTreeMap::new();
    for r in tables {
        for size in r.sizes().await.expect("sizes can be read") {
            now.insert((r.store().to_owned(), size.table.name()), size.rows);
        }
    }
    let mut peaks = peaks.lock().unwrap_or_else(|p| p.into_inner());
    for (k, v) in &now {
        let peak = peaks.entry(k.clone()).or_insert(0);
        *peak = (*peak).max(*v);
    }
    now
}

async fn tables_stay_bounded_and_the_view_exact_while_retention_cycles(backend: Backend) {
    let dbs = TestDbs::new(backend, "system-retention");
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
    let policy = RetentionPolicy {
        outbox: Some(Duration::from_secs(1)),
        inbox: Some(Duration::from_secs(1)),
        log: Some(Duration::from_secs(1)),
        compact_log: true,
        batch_size: 200,
        interval: Duration::from_millis(250),
    };
    let log_db = log.db().clone();
    let system = OrderSystem::builder(Arc::clone(&log))
        .create_topics(4)
        .order(stores.orders.clone(), None)
        .payment(stores.payments.clone(), None)
        .delivery(stores.deliveries.clone(), None)
        .operator(Scenario::default())
        .relays(stores.outboxes(), None)
        .view(OrderStatusView::new(stores.view.clone()))
        .retention(policy.clone())
        .sweep(Retention::new(
            log_db.clone(),
            "log",
            [Table::Log],
            policy.clone(),
        ))
        .start()
        .await
        .expect("the system starts");
    let monitor = system.monitor();

    // What the test watches: every swept table, through handles of its own.
    let outbox = Table::Outbox(OutboxLayout::Tramline);
    let watched = vec![
        Retention::new(
            stores.orders.db.clone(),
            "order",
            [outbox, Table::Inbox],
            policy.clone(),
        ),
        Retention::new(
            stores.payments.db.clone(),
            "payment",
            [outbox, Table::Inbox],
            policy.clone(),
        ),
        Retention::new(
            stores.deliveries.db.clone(),
            "delivery",
            [outbox, Table::Inbox],
            policy.clone(),
        ),
        Retention::new(
            stores.view.db.clone(),
            "view",
            [Table::Inbox],
            policy.clone(),
        ),
        Retention::new(log_db.clone(), "log", [Table::Log], policy.clone()),
    ];
    let peaks: Peaks = Arc::default();
    let running = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn({
        let (watched, peaks, running) = (watched.clone(), Arc::clone(&peaks), Arc::clone(&running));
        async move {
            while running.load(Ordering::Relaxed) {
                sample(&watched, &peaks).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });

    let orders = OrderService::new(stores.orders.clone());
    let scenario = Scenario::default();
    let work = async {
        let started = Instant::now();
        for wave in 0..WAVES {
            let ids: Vec<u64> = (wave * PER_WAVE..(wave + 1) * PER_WAVE).collect();
            let placed = orders
                .create_many(ids.iter().map(|&i| command(i)).collect())
                .await
                .expect("orders are placed");
            for o in placed {
                if scenario.fate(&o.order_id) == Fate::Cancel {
                    orders.cancel(&o.order_id).await.expect("cancelled");
                }
            }
            // Paced so that the run lasts several retention ages.
            tokio::time::sleep_until(started + Duration::from_millis(600) * (wave as u32 + 1))
                .await;
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while !monitor.settled().await.expect("the system can be checked") {
            assert!(Instant::now() < deadline, "the system did not settle");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Once every row is older than the age, the sweeps leave only what must stay: no
        // outbox row or dedupe record, and one log record per key of each topic at most.
        let most = 3 * (WAVES * PER_WAVE) as i64;
        let what = "retention empties the outboxes and inboxes and compacts the log";
        wait_until(what, Duration::from_secs(30), async || {
            let now = sample(&watched, &peaks).await;
            now.iter().all(|((_, table), rows)| match *table {
                "tramline_log" => *rows <= most,
                _ => *rows == 0,
            })
        })
        .await;
        sample(&watched, &peaks).await
    };
    let last = system
        .run(work, Duration::from_secs(30))
        .await
        .expect("the system ran and stopped cleanly");
    running.store(false, Ordering::Relaxed);
    sampler.await.expect("the sampler ran");

    let total = WAVES * PER_WAVE;
    let verification = stores.verify().await.expect("the stores can be read");
    assert!(verification.is_correct(), "{verification:?}");
    assert_eq!(verification.view_rows as u64, total);
    assert_eq!(monitor.parked().await.expect("parked counted"), 0);

    // Without retention the view's inbox alone would end with every event published, and
    // the log with all of them too.
    let published = monitor.published() as i64;
    let peaks = peaks.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for ((store, table), peak) in &peaks {
        let bound = match *table {
            // Compaction keeps one record per key of each of the three topics.
            "tramline_log" => 3 * total as i64 + published / 3,
            _ => published / 3,
        };
        assert!(
            *peak <= bound,
            "{store}.{table} held {peak} rows, more than {bound} (of {published} published)"
        );
    }
    let log_rows = last[&("log".to_owned(), "tramline_log")];
    assert!(
        log_rows <= 3 * total as i64,
        "the compacted log holds {log_rows} records for {total} orders"
    );
    assert!(
        log_rows >= total as i64,
        "every order's newest record stays"
    );
    assert!(
        published >= 6 * total as i64,
        "the run published {published} events"
    );
}

on_every_database!(tables_stay_bounded_and_the_view_exact_while_retention_cycles);
