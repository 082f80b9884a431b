//! Test-only helpers: fresh databases per test on SQLite, MariaDB and PostgreSQL, and
//! generators that duplicate, shuffle and interleave event streams the way a misbehaving
//! network would.
//!
//! Each test gets its own databases — SQLite files in its own temporary directory, or a
//! database (MariaDB) or schema (PostgreSQL) named after the test with a random suffix — and
//! they are dropped when the test ends, so tests run in parallel and leave nothing behind.
//! [`on_every_database!`] runs one test body on all three. [`kafka`] gives Kafka tests their
//! broker and unique topic and group names. [`recorder`] reads back the metrics a test's
//! relays and consumers emitted.

mod consumer;
mod databases;
pub mod kafka;
pub mod recorder;
pub mod sse;

pub use consumer::{RunningConsumer, SeenIds};
pub use databases::{Backend, TestDbs};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// Every record `sub` can read now: polls until a poll comes back empty.
pub async fn drain<S: tramline_core::ports::Subscription>(
    sub: &mut S,
) -> Vec<tramline_core::Record> {
    let mut all = Vec::new();
    loop {
        let got = sub
            .poll(100, std::time::Duration::from_millis(10))
            .await
            .expect("poll");
        if got.is_empty() {
            return all;
        }
        all.extend(got);
    }
}

/// A seeded random generator; the seed is printed so a failing run can be replayed with
/// `TRAMLINE_TEST_SEED`.
pub fn rng() -> StdRng {
    let seed = std::env::var("TRAMLINE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("TRAMLINE_TEST_SEED={seed}");
    StdRng::seed_from_u64(seed)
}

/// `items` with a random `fraction` of them repeated once, each copy placed at a random later
/// position (a redelivery arrives after the original).
pub fn with_duplicates<T: Clone>(items: Vec<T>, fraction: f64, rng: &mut impl Rng) -> Vec<T> {
    let n = items.len() as f64;
    // Originals sit at their index; a copy at a random point after its original.
    let mut placed: Vec<(f64, T)> = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        if rng.gen_bool(fraction.clamp(0.0, 1.0)) {
            placed.push((rng.gen_range(i as f64 + 0.5..n + 0.5), item.clone()));
        }
        placed.push((i as f64, item));
    }
    placed.sort_by(|a, b| a.0.total_cmp(&b.0));
    placed.into_iter().map(|(_, item)| item).collect()
}

/// Waits until `done` holds, checking every 10 ms; fails the test after `timeout`.
pub async fn wait_until(
    what: &str,
    timeout: std::time::Duration,
    mut done: impl AsyncFnMut() -> bool,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// `items` in random order.
pub fn shuffled<T>(mut items: Vec<T>, rng: &mut impl Rng) -> Vec<T> {
    items.shuffle(rng);
    items
}

/// Deals `items` round-robin onto `n` streams, keeping their relative order in each stream.
pub fn deal<T>(items: Vec<T>, n: usize) -> Vec<Vec<T>> {
    let mut streams: Vec<Vec<T>> = (0..n.max(1)).map(|_| Vec::new()).collect();
    let len = streams.len();
    for (i, item) in items.into_iter().enumerate() {
        streams[i % len].push(item);
    }
    streams
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_keep_every_original_in_order() {
        let mut rng = StdRng::seed_from_u64(1);
        let out = with_duplicates((0..100).collect(), 0.5, &mut rng);
        assert!(out.len() > 100);
        let mut firsts = Vec::new();
        for x in &out {
            if !firsts.contains(x) {
                firsts.push(*x);
            }
        }
        assert_eq!(firsts, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn deal_spreads_round_robin() {
        assert_eq!(
            deal(vec![1, 2, 3, 4, 5], 2),
            vec![vec![1, 3, 5], vec![2, 4]]
        );
    }
}
