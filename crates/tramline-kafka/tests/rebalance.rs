//! Rebalances on a real broker: when a second member joins, the first finishes and commits
//! what it holds of the partitions it gives up before they move, so the newcomer starts where
//! it stopped (nothing applied twice); when a member is dropped mid-run, its partitions move
//! to the survivor, which redelivers from the last commit (duplicates, nothing lost).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tramline_core::consumer::{ConsumerConfig, ConsumerRuntime};
use tramline_core::ports::{Applied, Handler, Transport};
use tramline_core::{Envelope, Error, Record};
use tramline_testkit::{wait_until, RunningConsumer};

/// Records how often each message was applied; slow enough that records are in flight when
/// a rebalance comes. (The transport and runtime are under test; the effect is only counted.)
#[derive(Default)]
struct Probe {
    applied: Mutex<HashMap<uuid::Uuid, usize>>,
    slow: AtomicBool,
}

impl Probe {
    fn distinct(&self) -> usize {
        self.applied.lock().expect("not poisoned").len()
    }
    fn applied_all(&self, ids: &[uuid::Uuid]) -> bool {
        let applied = self.applied.lock().expect("not poisoned");
        ids.iter().all(|id| applied.contains_key(id))
    }
    fn applied_twice(&self) -> usize {
        self.applied
            .lock()
            .expect("not poisoned")
            .values()
            .filter(|&&n| n > 1)
            .count()
    }
}

impl Handler for Probe {
    async fn apply(&self, batch: &[Record]) -> Result<Applied, Error> {
        if self.slow.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut applied = self.applied.lock().expect("not poisoned");
        for r in batch {
            *applied.entry(r.envelope.id).or_insert(0) += 1;
        }
        Ok(Applied {
            applied: batch.len(),
            ..Applied::default()
        })
    }

    async fn park(&self, record: &Record, reason: &Error) -> Result<(), Error> {
        panic!("nothing here is poison: {record:?}: {reason}")
    }
}

fn config() -> ConsumerConfig {
    ConsumerConfig {
        workers: 3,
        batch_max: 20,
        // Rare periodic commits, so that what a member holds at a rebalance is uncommitted
        // unless the revocation commits it.
        commit_interval: Duration::from_secs(3600),
        ..ConsumerConfig::default()
    }
}

async fn join<T: Transport>(t: &T, probe: &Arc<Probe>) -> RunningConsumer {
    let s = t
        .subscribe("view", &["orders".to_owned()])
        .await
        .expect("subscribed");
    RunningConsumer::start(ConsumerRuntime::new(Arc::clone(probe), config()), s)
}

fn events(n: usize) -> Vec<Envelope> {
    (0..n)
        .map(|i| Envelope::new("orders", format!("order-{}", i % 97), "{}".into()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_joining_member_starts_where_the_leaving_owner_stopped() {
    let t = common::transport("join", &["orders"], 4).await;
    let probe = Arc::new(Probe::default());
    probe.slow.store(true, Ordering::Relaxed);
    t.publish(&events(3000)).await.expect("published");

    let first = join(&t, &probe).await;
    wait_until(
        "the first member applies something",
        Duration::from_secs(60),
        async || probe.distinct() > 100,
    )
    .await;
    assert!(
        probe.distinct() < 3000,
        "the first member must still be busy when the second joins"
    );
    let second = join(&t, &probe).await;
    wait_until(
        "the first member handed partitions over",
        Duration::from_secs(60),
        async || first.stats.revocations.load(Ordering::Relaxed) > 0,
    )
    .await;
    // The first member fetched everything ahead, so it finished all of it; new records go to
    // both members, each on its own partitions.
    t.publish(&events(3000)).await.expect("published");
    probe.slow.store(false, Ordering::Relaxed);
    wait_until(
        "every record is applied",
        Duration::from_secs(120),
        async || probe.distinct() == 6000,
    )
    .await;
    assert!(
        second.stats.received.load(Ordering::Relaxed) > 0,
        "the second member got partitions with records left"
    );
    assert_eq!(
        probe.applied_twice(),
        0,
        "a revoked partition's records were committed before it moved, so none is redelivered"
    );
    for m in [first, second] {
        m.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dropped_members_partitions_move_to_the_survivor() {
    let t = common::transport("drop", &["orders"], 4).await;
    let probe = Arc::new(Probe::default());
    let survivor = join(&t, &probe).await;
    let doomed = join(&t, &probe).await;
    // Every id published; each must be applied at least once in the end.
    let mut published: Vec<uuid::Uuid> = Vec::new();
    wait_until(
        "both members own partitions",
        Duration::from_secs(60),
        async || {
            let batch = events(20);
            t.publish(&batch).await.expect("published");
            published.extend(batch.iter().map(|e| e.id));
            tokio::time::sleep(Duration::from_millis(200)).await;
            survivor.stats.received.load(Ordering::Relaxed) > 0
                && doomed.stats.received.load(Ordering::Relaxed) > 0
        },
    )
    .await;
    // Killed: no drain, no final commit. What it held unapplied or uncommitted comes again.
    doomed.kill().await;
    let batch = events(1000);
    t.publish(&batch).await.expect("published");
    published.extend(batch.iter().map(|e| e.id));
    wait_until(
        "the survivor applies everything",
        Duration::from_secs(120),
        async || probe.applied_all(&published),
    )
    .await;
    assert!(
        survivor.stats.received.load(Ordering::Relaxed) as usize >= 1000,
        "the survivor took the dropped member's partitions"
    );
    survivor.stop().await;
}
