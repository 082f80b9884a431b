//! Property: whatever the interleaving, duplication and batching of an order's events, the
//! view row ends up as applying only the newest event of each source would leave it.

mod common;

use common::{completed_history, expected_row, records, view_db};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::sync::atomic::{AtomicU64, Ordering};
use tramline_core::ports::Handler;
use tramline_orders::events::DomainEvent;
use tramline_orders::services::Subscriber;
use tramline_orders::view::projection::OrderStatusProjection;
use tramline_orders::view::OrderStatusQuery;
use tramline_testkit::{shuffled, with_duplicates, TestDir};

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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn any_interleaving_and_duplication_yields_the_newest_of_each_source(
        order in 1usize..=3,
        payment in 0usize..=2,
        delivery in 0usize..=3,
        seed in any::<u64>(),
        duplicate_fraction in 0.0f64..0.8,
        batch in 1usize..=6,
    ) {
        static CASE: AtomicU64 = AtomicU64::new(0);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async {
            let dir = TestDir::new("view-property");
            let db = view_db(&dir).await;
            let handler = Subscriber::new(db.clone(), "view", OrderStatusProjection::default());
            let order_id = format!("order-{}", CASE.fetch_add(1, Ordering::Relaxed));
            let history = partial_history(&order_id, order, payment, delivery);
            let expected = expected_row(&order_id, &history);
            let mut rng = StdRng::seed_from_u64(seed);
            let delivered = shuffled(with_duplicates(records(&history), duplicate_fraction, &mut rng), &mut rng);
            for chunk in delivered.chunks(batch) {
                handler.apply(chunk).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            let row = OrderStatusQuery::new(db).get(&order_id).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(row, Some(expected));
            Ok(())
        })?;
    }
}
