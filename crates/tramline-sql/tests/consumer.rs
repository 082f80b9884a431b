//! The consumer runtime on the DB-backed log of every dialect: per-key order across lanes, offsets committed only
//! after the effect, transient retries, and resuming where the group left off.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tramline_core::consumer::{ConsumerConfig, ConsumerRuntime};
use tramline_core::ports::{Applied, Handler, Transport};
use tramline_core::{Envelope, Error, Record};
use tramline_sql::{DbOptions, SqlLog};
use tramline_testkit::{on_every_database, Backend, RunningConsumer, TestDbs};

/// Message ids seen, and the payload numbers applied per key.
type Seen = (HashSet<uuid::Uuid>, HashMap<String, Vec<u64>>);

/// Records what it applied, per key, once per message id.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Seen>,
    /// Calls that fail with a transient error before the handler starts working.
    transient_failures: AtomicU32,
    /// While false, records of key "slow" wait.
    gate: Option<watch::Receiver<bool>>,
}

impl Recorder {
    fn applied(&self) -> HashMap<String, Vec<u64>> {
        self.seen.lock().expect("not poisoned").1.clone()
    }
}

impl Handler for Recorder {
    async fn apply(&self, batch: &[Record]) -> Result<Applied, Error> {
        if self.transient_failures.load(Ordering::SeqCst) > 0 {
            self.transient_failures.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::Store {
                store: "test".into(),
                operation: "apply",
                retry: Some(tramline_core::RetryCause::Busy),
                source: "busy".into(),
            });
        }
        if let Some(gate) = &self.gate {
            if batch.iter().any(|r| r.envelope.key == "slow") {
                let mut gate = gate.clone();
                gate.wait_for(|open| *open)
                    .await
                    .map_err(|_| Error::Stopped)?;
            }
        }
        let mut seen = self.seen.lock().expect("not poisoned");
        let mut out = Applied::default();
        for r in batch {
            if seen.0.insert(r.envelope.id) {
                let n = r
                    .envelope
                    .payload
                    .parse()
                    .map_err(|e| Error::poison(&r.envelope, e))?;
                seen.1.entry(r.envelope.key.clone()).or_default().push(n);
                out.applied += 1;
            } else {
                out.duplicates += 1;
            }
        }
        Ok(out)
    }

    async fn park(&self, record: &Record, reason: &Error) -> Result<(), Error> {
        Err(Error::poison(
            &record.envelope,
            tramline_core::error::sentence(reason),
        ))
    }
}

fn topics() -> Vec<String> {
    vec!["t".to_owned()]
}

async fn log(dbs: &TestDbs, partitions: i32) -> SqlLog {
    let log = SqlLog::open(&dbs.url("log").await, &DbOptions::default())
        .await
        .expect("opens");
    log.create_topic("t", partitions).await.expect("topic");
    log
}

async fn start(log: &SqlLog, handler: Arc<Recorder>, config: ConsumerConfig) -> RunningConsumer {
    let sub = log.subscribe("g", &topics()).await.expect("subscribe");
    RunningConsumer::start(ConsumerRuntime::new(handler, config), sub)
}

async fn wait_until(what: &str, done: impl AsyncFnMut() -> bool) {
    tramline_testkit::wait_until(what, Duration::from_secs(20), done).await
}

fn small() -> ConsumerConfig {
    ConsumerConfig {
        workers: 3,
        batch_max: 7,
        queue_capacity: 16,
        poll_max: 50,
        poll_wait: Duration::from_millis(20),
        commit_interval: Duration::from_millis(10),
        ..ConsumerConfig::default()
    }
}

fn messages(keys: usize, count: u64, from: u64) -> Vec<Envelope> {
    (from..from + count)
        .map(|n| Envelope::new("t", format!("k{}", n as usize % keys), n.to_string()))
        .collect()
}

async fn every_record_is_applied_once_and_each_key_in_order(backend: Backend) {
    let dbs = TestDbs::new(backend, "consumer-order");
    let log = log(&dbs, 4).await;
    let sent = messages(50, 3000, 0);
    for chunk in sent.chunks(100) {
        log.publish(chunk).await.expect("publish");
    }
    let handler = Arc::new(Recorder::default());
    let running = start(&log, Arc::clone(&handler), small()).await;
    wait_until("the group caught up", async || {
        log.lag("g", &topics()).await.expect("lag") == 0
    })
    .await;
    let stats = running.stop().await;
    let applied = handler.applied();
    assert_eq!(applied.values().map(Vec::len).sum::<usize>(), 3000);
    for (key, ns) in applied {
        assert!(
            ns.windows(2).all(|w| w[0] < w[1]),
            "{key} applied out of order"
        );
    }
    assert_eq!(stats.applied.load(Ordering::Relaxed), 3000);
}

async fn an_offset_is_committed_only_after_its_effect(backend: Backend) {
    let dbs = TestDbs::new(backend, "consumer-commit");
    let log = log(&dbs, 1).await;
    let (open, gate) = watch::channel(false);
    let handler = Arc::new(Recorder {
        gate: Some(gate),
        ..Recorder::default()
    });
    let running = start(&log, Arc::clone(&handler), small()).await;
    log.publish(&messages(5, 1, 0)).await.expect("publish");
    wait_until("offset 0 is committed", async || {
        log.lag("g", &topics()).await.expect("lag") == 0
    })
    .await;
    let mut rest = vec![Envelope::new("t", "slow", "1".into())];
    rest.extend(messages(5, 40, 2));
    log.publish(&rest).await.expect("publish");
    // Keys in the slow key's lane wait behind it; the other lanes go on.
    wait_until("records after the slow one are applied", async || {
        handler.applied().into_values().flatten().any(|n| n >= 2)
    })
    .await;
    // Offset 1 ("slow") is not applied: the group must not commit past it.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(
            log.lag("g", &topics()).await.expect("lag"),
            41,
            "committed past an unapplied record"
        );
    }
    open.send(true).expect("gate open");
    wait_until("everything is committed", async || {
        log.lag("g", &topics()).await.expect("lag") == 0
    })
    .await;
    running.stop().await;
}

async fn transient_failures_are_retried_and_counted(backend: Backend) {
    let dbs = TestDbs::new(backend, "consumer-retry");
    let log = log(&dbs, 2).await;
    log.publish(&messages(3, 20, 0)).await.expect("publish");
    let handler = Arc::new(Recorder {
        transient_failures: AtomicU32::new(3),
        ..Recorder::default()
    });
    let running = start(&log, Arc::clone(&handler), small()).await;
    wait_until("the group caught up", async || {
        log.lag("g", &topics()).await.expect("lag") == 0
    })
    .await;
    let stats = running.stop().await;
    assert_eq!(handler.applied().values().map(Vec::len).sum::<usize>(), 20);
    assert!(stats.retries.total() >= 3);
}

async fn a_restarted_consumer_resumes_after_its_last_commit(backend: Backend) {
    let dbs = TestDbs::new(backend, "consumer-restart");
    let log = log(&dbs, 3).await;
    log.publish(&messages(7, 100, 0)).await.expect("publish");
    let first = Arc::new(Recorder::default());
    let running = start(&log, Arc::clone(&first), small()).await;
    wait_until("the group caught up", async || {
        log.lag("g", &topics()).await.expect("lag") == 0
    })
    .await;
    running.stop().await;
    log.publish(&messages(7, 50, 100)).await.expect("publish");
    let second = Arc::new(Recorder::default());
    let running = start(&log, Arc::clone(&second), small()).await;
    wait_until("the group caught up again", async || {
        log.lag("g", &topics()).await.expect("lag") == 0
    })
    .await;
    running.stop().await;
    let mut got: Vec<u64> = second.applied().into_values().flatten().collect();
    got.sort_unstable();
    assert_eq!(
        got,
        (100..150).collect::<Vec<_>>(),
        "only what came after the stop"
    );
}

async fn a_stalled_handler_bounds_what_is_fetched(backend: Backend) {
    let dbs = TestDbs::new(backend, "consumer-bounded");
    let log = log(&dbs, 1).await;
    let mut sent = vec![Envelope::new("t", "slow", "0".into())];
    sent.extend(messages(1, 500, 1).into_iter().map(|mut m| {
        m.key = "slow".into();
        m
    }));
    log.publish(&sent).await.expect("publish");
    let (open, gate) = watch::channel(false);
    let handler = Arc::new(Recorder {
        gate: Some(gate),
        ..Recorder::default()
    });
    let config = ConsumerConfig {
        workers: 1,
        batch_max: 2,
        queue_capacity: 4,
        poll_max: 3,
        ..small()
    };
    // In the lane's batch, in its queue, and the rest of one poll.
    let bound = (config.batch_max + config.queue_capacity + config.poll_max) as u64;
    let running = start(&log, Arc::clone(&handler), config).await;
    wait_until("the lane is full", async || {
        running.stats.received.load(Ordering::Relaxed) >= bound - 2
    })
    .await;
    // Give an unbounded fetcher every chance to run ahead; a bounded one stays put.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let received = running.stats.received.load(Ordering::Relaxed);
        assert!(
            received <= bound,
            "fetched {received} records with the handler stalled"
        );
    }
    open.send(true).expect("gate open");
    wait_until("everything is applied", async || {
        log.lag("g", &topics()).await.expect("lag") == 0
    })
    .await;
    running.stop().await;
    assert_eq!(handler.applied().values().map(Vec::len).sum::<usize>(), 501);
}

on_every_database!(
    every_record_is_applied_once_and_each_key_in_order,
    an_offset_is_committed_only_after_its_effect,
    transient_failures_are_retried_and_counted,
    a_restarted_consumer_resumes_after_its_last_commit,
    a_stalled_handler_bounds_what_is_fetched,
);
