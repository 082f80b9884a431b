//! Property: whatever the interleaving, duplication and batching of an order's events, the
//! view row ends up as applying only the newest event of each source would leave it — on
//! every dialect, since each writes its own guarded upsert (MariaDB's most of all, where the
//! guard is per column and the version column must be assigned last).

mod common;

use common::{completed_history, expected_row, records, view_db};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::sync::atomic::{AtomicU64, Ordering};
use tramline_core::ports::Handler;
use tramline_orders::events::DomainEvent;
use tramline_orders::view::projection::OrderStatusProjection;
use tramline_orders::view::OrderStatusQuery;
use tramline_testkit::{on_every_database, shuffled, with_duplicates, Backend, TestDbs};

/// A prefix of each source's history: how far each service got.
fn partial_history(
    order_id: &str,
    order: usize,
    payment: usize,
    delivery: usize,
) -> Vec<DomainEvent> {
    let (mut o, mut p, mut d) = (0, 0, 0);
    completed_history(order_id)
        .into_iter()
        .filter(|e| {
            let (seen, limit) = match e {
                DomainEvent::Order(..) => (&mut o, order),
                DomainEvent::Payment(..) => (&mut p, payment),
                DomainEvent::Delivery(..) => (&mut d, delivery),
            };
            *seen += 1;
            *seen <= limit
        })
        .collect()
}

/// Cases per dialect.
const CASES: u32 = 96;

async fn any_interleaving_and_duplication_yields_the_newest_of_each_source(backend: Backend) {
    let dbs = TestDbs::new(backend, "view-property");
    let db = view_db(&dbs).await;
    // One database for all cases: every case is a new order.
    let handler = OrderStatusProjection::consumer(&db, "view");
    let query = OrderStatusQuery::new(db);
    let case = AtomicU64::new(0);
    let strategy = (
        1usize..=3,
        0usize..=2,
        0usize..=3,
        any::<u64>(),
        0.0f64..0.8,
        1usize..=6,
    );
    let mut runner = TestRunner::new(Config::with_cases(CASES));
    let outcome = runner.run(
        &strategy,
        |(order, payment, delivery, seed, duplicate_fraction, batch)| {
            // The property runs synchronously; each case drives the async stores to the end.
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    let order_id = format!("order-{}", case.fetch_add(1, Ordering::Relaxed));
                    let history = partial_history(&order_id, order, payment, delivery);
                    let expected = expected_row(&order_id, &history);
                    let mut rng = StdRng::seed_from_u64(seed);
                    let delivered = shuffled(
                        with_duplicates(records(&history), duplicate_fraction, &mut rng),
                        &mut rng,
                    );
                    for chunk in delivered.chunks(batch) {
                        handler
                            .apply(chunk)
                            .await
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    }
                    let row = query
                        .get(&order_id)
                        .await
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!(row, Some(expected));
                    Ok(())
                })
            })
        },
    );
    if let Err(e) = outcome {
        panic!("{e}");
    }
}

on_every_database!(any_interleaving_and_duplication_yields_the_newest_of_each_source);
