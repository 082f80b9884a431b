//! The seed's scenario on SQLite, MariaDB (at its default REPEATABLE READ, as in the seed) and
//! PostgreSQL: the events of the same orders arrive on three concurrent workers (one per
//! source, as the seed's three consumer threads), with duplicates and shuffling. A barrier
//! makes the three workers hit each order at the same moment. tramline's projection must come
//! out exact; the naive baseline must show both of the seed's bugs: duplicate primary keys on
//! concurrent inserts, and columns of one source overwritten by another source's whole-row
//! write (e.g. the payment status back to empty).

mod common;

use common::{completed_history, expected_row, records, view_db};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::Barrier;
use tramline_core::ports::Handler;
use tramline_core::Record;
use tramline_orders::events::DomainEvent;
use tramline_orders::view::naive::NaiveProjection;
use tramline_orders::view::projection::OrderStatusProjection;
use tramline_orders::view::{OrderStatusQuery, OrderStatusRow};
use tramline_testkit::{on_every_database, rng, shuffled, with_duplicates, Backend, TestDbs};

const ORDERS: usize = 150;
const WORKERS: usize = 3;

/// Per order: its expected row, and per worker the (duplicated, shuffled) records of one source.
fn workload() -> (Vec<OrderStatusRow>, Vec<Vec<Vec<Record>>>) {
    let mut rng = rng();
    let mut expected = Vec::new();
    let mut per_worker: Vec<Vec<Vec<Record>>> = vec![Vec::new(); WORKERS];
    for i in 0..ORDERS {
        let order_id = format!("order-{i:04}");
        let history = completed_history(&order_id);
        expected.push(expected_row(&order_id, &history));
        let mut by_source: HashMap<usize, Vec<DomainEvent>> = HashMap::new();
        for e in history {
            let source = match e {
                DomainEvent::Order(..) => 0,
                DomainEvent::Payment(..) => 1,
                DomainEvent::Delivery(..) => 2,
            };
            by_source.entry(source).or_default().push(e);
        }
        for (w, stream) in per_worker.iter_mut().enumerate() {
            let recs = records(by_source.remove(&w).as_deref().unwrap_or_default());
            stream.push(shuffled(with_duplicates(recs, 0.3, &mut rng), &mut rng));
        }
    }
    (expected, per_worker)
}

/// (order id, source 0..3) → the newest version whose apply call succeeded.
type Applied = BTreeMap<(String, usize), i64>;

/// Which source an event comes from, for [`Applied`].
fn source_of(event: &DomainEvent) -> usize {
    match event {
        DomainEvent::Order(..) => 0,
        DomainEvent::Payment(..) => 1,
        DomainEvent::Delivery(..) => 2,
    }
}

/// Runs the workload on `handler`; returns how many apply calls failed, and the newest
/// version of each order's source that was applied without error.
async fn run<H: Handler>(handler: Arc<H>, per_worker: Vec<Vec<Vec<Record>>>) -> (usize, Applied) {
    let barrier = Arc::new(Barrier::new(WORKERS));
    let mut tasks = Vec::new();
    for orders in per_worker {
        let handler = Arc::clone(&handler);
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            let mut failures = 0;
            let mut applied = Applied::new();
            for records in orders {
                // All three workers start on the same order together.
                barrier.wait().await;
                for r in records {
                    if handler.apply(std::slice::from_ref(&r)).await.is_err() {
                        failures += 1;
                        continue;
                    }
                    let event = DomainEvent::decode(&r.envelope).expect("valid event");
                    let at = applied
                        .entry((event.order_id().to_owned(), source_of(&event)))
                        .or_insert(0);
                    *at = (*at).max(event.version());
                }
            }
            (failures, applied)
        }));
    }
    let mut failures = 0;
    let mut applied = Applied::new();
    for t in tasks {
        let (f, a) = t.await.expect("worker panicked");
        failures += f;
        applied.extend(a);
    }
    (failures, applied)
}

/// Sources whose columns in the view are older than a version that was applied without
/// error: another handler's write overwrote them (the concurrent-update bug).
async fn overwritten(query: &OrderStatusQuery, applied: &Applied) -> usize {
    let rows = query.rows_in("", None).await.expect("view readable");
    let by_id: HashMap<_, _> = rows.into_iter().map(|r| (r.order_id.clone(), r)).collect();
    applied
        .iter()
        .filter(|((order_id, source), version)| {
            let row = by_id.get(order_id);
            let held = row.and_then(|r| match source {
                0 => r.order_version,
                1 => r.payment_version,
                _ => r.delivery_version,
            });
            held.is_none_or(|held| held < **version)
        })
        .count()
}

async fn wrong_rows(query: &OrderStatusQuery, expected: &[OrderStatusRow]) -> usize {
    let rows = query.rows_in("", None).await.expect("view readable");
    let by_id: HashMap<_, _> = rows.into_iter().map(|r| (r.order_id.clone(), r)).collect();
    expected
        .iter()
        .filter(|e| by_id.get(&e.order_id) != Some(*e))
        .count()
}

/// The view database of a test; on MariaDB, checks that it runs at the seed's isolation.
async fn view(backend: Backend, dbs: &TestDbs) -> tramline_orders::services::ServiceDb {
    let db = view_db(dbs).await;
    if backend == Backend::MariaDb {
        let stmt = db.db.stmt("SELECT JSON_ARRAY(@@tx_isolation)");
        let level: Vec<String> = db
            .db
            .fetch_json(&stmt, "test", "read isolation")
            .await
            .expect("isolation readable");
        assert_eq!(level, ["REPEATABLE-READ"], "the seed's isolation level");
    }
    db
}

async fn upsert_projection_is_exact_under_concurrent_duplicated_shuffled_events(backend: Backend) {
    let dbs = TestDbs::new(backend, "upsert-concurrency");
    let db = view(backend, &dbs).await;
    let (expected, per_worker) = workload();
    let handler = Arc::new(OrderStatusProjection::consumer(&db, "view"));
    let (failures, applied) = run(Arc::clone(&handler), per_worker).await;
    let stats = handler.applier().stats();
    let query = OrderStatusQuery::new(db);
    assert_eq!(failures, 0, "no apply may fail");
    assert_eq!(stats.duplicate_key_errors.load(Ordering::Relaxed), 0);
    assert_eq!(overwritten(&query, &applied).await, 0, "no lost update");
    assert_eq!(wrong_rows(&query, &expected).await, 0);
}

async fn naive_projection_shows_the_seeds_bugs_under_the_same_load(backend: Backend) {
    let dbs = TestDbs::new(backend, "naive-concurrency");
    let db = view(backend, &dbs).await;
    let (expected, per_worker) = workload();
    let handler = Arc::new(NaiveProjection::new(db.clone(), "view"));
    let (failures, applied) = run(Arc::clone(&handler), per_worker).await;
    let duplicate_keys = handler.stats().duplicate_key_errors.load(Ordering::Relaxed);
    let query = OrderStatusQuery::new(db);
    let lost = overwritten(&query, &applied).await;
    let wrong = wrong_rows(&query, &expected).await;
    eprintln!(
        "naive on {}: {failures} failed applies, {duplicate_keys} duplicate-key errors, \
         {lost} overwritten source columns, {wrong}/{ORDERS} wrong rows",
        backend.name()
    );
    assert!(duplicate_keys > 0, "the concurrent-insert bug must show");
    assert!(lost > 0, "the concurrent-update bug must show");
    assert!(wrong > 0, "wrong rows must show");
}

on_every_database!(
    upsert_projection_is_exact_under_concurrent_duplicated_shuffled_events,
    naive_projection_shows_the_seeds_bugs_under_the_same_load,
);
