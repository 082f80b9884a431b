//! The seed's scenario on a real SQLite file: the events of the same orders arrive on three
//! concurrent workers (one per source, as the seed's three consumer threads), with duplicates
//! and shuffling. A barrier makes the three workers hit each order at the same moment.
//! tramline's projection must come out exact; the naive baseline must not.

mod common;

use common::{completed_history, expected_row, records, view_db};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::Barrier;
use tramline_core::ports::Handler;
use tramline_core::Record;
use tramline_orders::events::DomainEvent;
use tramline_orders::services::Subscriber;
use tramline_orders::view::naive::NaiveProjection;
use tramline_orders::view::projection::OrderStatusProjection;
use tramline_orders::view::{OrderStatusQuery, OrderStatusRow};
use tramline_testkit::{rng, shuffled, with_duplicates, TestDir};

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

/// Runs the workload on `handler`; returns how many apply calls failed.
async fn run<H: Handler>(handler: Arc<H>, per_worker: Vec<Vec<Vec<Record>>>) -> usize {
    let barrier = Arc::new(Barrier::new(WORKERS));
    let mut tasks = Vec::new();
    for orders in per_worker {
        let handler = Arc::clone(&handler);
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            let mut failures = 0;
            for records in orders {
                // All three workers start on the same order together.
                barrier.wait().await;
                for r in records {
                    if handler.apply(std::slice::from_ref(&r)).await.is_err() {
                        failures += 1;
                    }
                }
            }
            failures
        }));
    }
    let mut failures = 0;
    for t in tasks {
        failures += t.await.expect("worker panicked");
    }
    failures
}

async fn wrong_rows(query: &OrderStatusQuery, expected: &[OrderStatusRow]) -> usize {
    let rows = query.rows_in("", None).await.expect("view readable");
    let by_id: HashMap<_, _> = rows.into_iter().map(|r| (r.order_id.clone(), r)).collect();
    expected
        .iter()
        .filter(|e| by_id.get(&e.order_id) != Some(*e))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn upsert_projection_is_exact_under_concurrent_duplicated_shuffled_events() {
    let dir = TestDir::new("upsert-concurrency");
    let db = view_db(&dir).await;
    let (expected, per_worker) = workload();
    let handler = Arc::new(Subscriber::new(
        db.clone(),
        "view",
        OrderStatusProjection::default(),
    ));
    let failures = run(Arc::clone(&handler), per_worker).await;
    let stats = handler.reaction().stats();
    assert_eq!(failures, 0, "no apply may fail");
    assert_eq!(stats.duplicate_key_errors.load(Ordering::Relaxed), 0);
    assert_eq!(wrong_rows(&OrderStatusQuery::new(db), &expected).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn naive_projection_shows_the_seeds_bugs_under_the_same_load() {
    let dir = TestDir::new("naive-concurrency");
    let db = view_db(&dir).await;
    let (expected, per_worker) = workload();
    let handler = Arc::new(NaiveProjection::new(db.clone(), "view"));
    let failures = run(Arc::clone(&handler), per_worker).await;
    let duplicate_keys = handler.stats().duplicate_key_errors.load(Ordering::Relaxed);
    let wrong = wrong_rows(&OrderStatusQuery::new(db), &expected).await;
    eprintln!("naive: {failures} failed applies, {duplicate_keys} duplicate-key errors, {wrong}/{ORDERS} wrong rows");
    assert!(duplicate_keys > 0, "the concurrent-insert bug must show");
    assert!(wrong > 0, "lost or stale columns must show");
}
