//! The metrics a relay and a consumer emit, read back from a real recorder while they run on
//! a SQLite outbox and log: every count adds up to what was written, the latency histograms
//! hold one observation per record, and the backlog and lag gauges return to 0.
//!
//! The recorder (`tramline_testkit::recorder`) is read without resetting anything; it is
//! installed once per process, and each test uses outbox and group names of its own.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tramline_core::consumer::{ConsumerConfig, ConsumerRuntime};
use tramline_core::envelope::now_ms;
use tramline_core::fault::Duplicating;
use tramline_core::offsets::CommitPosition;
use tramline_core::ports::{Applied, Handler, Subscription, Transport};
use tramline_core::relay::{OutboxRelay, RelayConfig};
use tramline_core::telemetry as names;
use tramline_core::{Envelope, Error, Record, RetryCause};
use tramline_sql::{migrate, Db, DbOptions, Schema, SqlLog, SqlOutbox};
use tramline_testkit::recorder::{counter, gauge, histogram};
use tramline_testkit::{on_every_database, Backend, RunningConsumer, SeenIds, TestDbs};

async fn wait_until(what: &str, done: impl AsyncFnMut() -> bool) {
    tramline_testkit::wait_until(what, Duration::from_secs(30), done).await
}

/// Applies each message id once; fails `transient` times first; refuses payloads that are
/// not numbers (poison), and parks them.
#[derive(Default)]
struct Applier {
    seen: SeenIds,
    transient: AtomicU32,
    parked: Mutex<Vec<uuid::Uuid>>,
}

impl Handler for Applier {
    async fn apply(&self, batch: &[Record]) -> Result<Applied, Error> {
        if self
            .transient
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Error::Store {
                store: "test".into(),
                operation: "apply",
                retry: Some(RetryCause::Busy),
                source: "busy".into(),
            });
        }
        for r in batch {
            r.envelope
                .payload
                .parse::<u64>()
                .map_err(|e| Error::poison(&r.envelope, e))?;
        }
        Ok(self.seen.count(batch))
    }

    async fn park(&self, record: &Record, _reason: &Error) -> Result<(), Error> {
        self.parked
            .lock()
            .expect("not poisoned")
            .push(record.envelope.id);
        Ok(())
    }
}

const PARTITIONS: i32 = 4;

/// A service database with an outbox, and a log with topic `t`.
async fn outbox_and_log(dbs: &TestDbs) -> (Arc<SqlOutbox>, Db, SqlLog) {
    let db = Db::connect(&dbs.url("service").await, &DbOptions::default())
        .await
        .expect("opens");
    migrate(&db, &[Schema::Outbox]).await.expect("migrates");
    let log = SqlLog::open(&dbs.url("log").await, &DbOptions::default())
        .await
        .expect("opens")
        .with_lag_interval(Duration::from_millis(20));
    log.create_topic("t", PARTITIONS).await.expect("topic");
    (Arc::new(SqlOutbox::new(db.clone())), db, log)
}

/// Writes `messages` to the outbox, 50 per transaction.
async fn write(outbox: &SqlOutbox, db: &Db, messages: &[Envelope]) {
    for chunk in messages.chunks(50) {
        let mut tx = db.begin("test").await.expect("begin");
        outbox.append(&mut tx, chunk).await.expect("append");
        tx.commit("test").await.expect("commit");
    }
}

/// `count` messages over 30 keys, created `age_ms` ago; payloads are their numbers.
fn messages(count: u64, age_ms: i64) -> Vec<Envelope> {
    let created = now_ms() - age_ms;
    (0..count)
        .map(|n| Envelope {
            created_at_ms: created,
            ..Envelope::new("t", format!("k{}", n % 30), n.to_string())
        })
        .collect()
}

fn relay_config(name: &str) -> RelayConfig {
    RelayConfig {
        name: name.to_owned(),
        batch_size: 64,
        sample_interval: Duration::from_millis(20),
        ..RelayConfig::default()
    }
}

fn consumer_config(name: &str) -> ConsumerConfig {
    ConsumerConfig {
        name: name.to_owned(),
        batch_max: 20,
        poll_wait: Duration::from_millis(20),
        commit_interval: Duration::from_millis(10),
        ..ConsumerConfig::default()
    }
}

fn topics() -> Vec<String> {
    vec!["t".to_owned()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relay_and_consumer_metrics_add_up_to_what_was_written() {
    const WRITTEN: u64 = 300;
    const AGE_MS: i64 = 2_000;
    tramline_testkit::recorder::install();
    let dbs = TestDbs::new(Backend::Sqlite, "metrics-add-up");
    let (outbox, db, log) = outbox_and_log(&dbs).await;
    let relay_labels = [("outbox", "order")];
    let mut sent = messages(WRITTEN, AGE_MS);
    // One message no handler can apply: parked, not applied.
    sent.push(Envelope {
        created_at_ms: now_ms() - AGE_MS,
        ..Envelope::new("t", "k0", "not a number".to_owned())
    });
    write(&outbox, &db, &sent).await;

    // Given the backlog, a sample reports it and the oldest message's age.
    let relay = Arc::new(OutboxRelay::new(
        Arc::clone(&outbox),
        Arc::new(log.clone()),
        relay_config("order"),
    ));
    relay.sample().await.expect("sample");
    assert_eq!(
        gauge(names::OUTBOX_BACKLOG, &relay_labels),
        Some(sent.len() as f64)
    );
    let oldest = gauge(names::OUTBOX_OLDEST_AGE, &relay_labels).expect("sampled");
    assert!((2.0..60.0).contains(&oldest), "oldest age {oldest} s");

    // When the relay runs, it publishes everything, in rounds of at most its batch size, and
    // its next samples see the outbox empty.
    let cancel = CancellationToken::new();
    let relaying = tokio::spawn({
        let (relay, cancel) = (Arc::clone(&relay), cancel.clone());
        async move { relay.run(cancel).await }
    });
    wait_until("the relay sampled an empty outbox", async || {
        gauge(names::OUTBOX_BACKLOG, &relay_labels) == Some(0.0)
            && gauge(names::OUTBOX_OLDEST_AGE, &relay_labels) == Some(0.0)
    })
    .await;
    assert_eq!(outbox.backlog().await.expect("backlog"), 0);
    assert_eq!(
        counter(names::RELAY_PUBLISHED, &relay_labels),
        sent.len() as u64
    );
    let rounds = histogram(names::RELAY_BATCH_SIZE, &relay_labels);
    assert_eq!(rounds.iter().sum::<f64>(), sent.len() as f64);
    assert!(
        rounds.iter().all(|&n| (1.0..=64.0).contains(&n)),
        "{rounds:?}"
    );
    assert!(rounds.len() >= sent.len().div_ceil(64), "{rounds:?}");

    // When a consumer applies the log, failing twice with a transient error first, …
    let group = [("group", "view")];
    let applier = Arc::new(Applier {
        transient: AtomicU32::new(2),
        ..Applier::default()
    });
    let running = RunningConsumer::start(
        ConsumerRuntime::new(Arc::clone(&applier), consumer_config("view")),
        log.subscribe("view", &topics()).await.expect("subscribe"),
    );
    wait_until(
        "the consumer applied and committed everything",
        async || {
            counter(names::CONSUMER_APPLIED, &group) == WRITTEN
                && counter(names::CONSUMER_PARKED, &group) == 1
                && log.lag("view", &topics()).await.expect("lag") == 0
        },
    )
    .await;
    // … every partition's lag gauge comes down to 0 …
    wait_until("every partition's lag gauge is 0", async || {
        (0..PARTITIONS).all(|p| {
            let p = p.to_string();
            let labels = [("group", "view"), ("topic", "t"), ("partition", p.as_str())];
            gauge(names::CONSUMER_LAG, &labels) == Some(0.0)
        })
    })
    .await;
    let stats = running.stop().await;
    cancel.cancel();
    relaying.await.expect("no panic").expect("the relay stops");

    // … and the counters agree with the runtime's own.
    assert_eq!(counter(names::CONSUMER_APPLIED, &group), WRITTEN);
    assert_eq!(counter(names::CONSUMER_DUPLICATES, &group), 0);
    assert_eq!(counter(names::CONSUMER_PARKED, &group), 1);
    assert_eq!(counter(names::CONSUMER_FAILED, &group), 0);
    assert_eq!(applier.parked.lock().expect("not poisoned").len(), 1);
    assert_eq!(stats.applied.load(Ordering::SeqCst), WRITTEN);
    let retries = [("component", "consumer:view"), ("cause", "busy")];
    assert_eq!(counter(names::RETRIES, &retries), 2);
    assert_eq!(stats.retries.get(RetryCause::Busy), 2);
    assert_eq!(counter(names::RETRIES, &[("component", "relay:order")]), 0);
    // The age at the start of apply is observed for every record delivered; the latency to
    // commit for every record whose transaction committed (the parked one never did).
    let ages = histogram(names::CONSUMER_EVENT_AGE, &group);
    assert_eq!(ages.len(), sent.len());
    let latencies = histogram(names::CONSUMER_COMMIT_LATENCY, &group);
    assert_eq!(latencies.len() as u64, WRITTEN);
    for seconds in ages.iter().chain(&latencies) {
        assert!((2.0..60.0).contains(seconds), "{seconds} s");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_record_delivered_twice_counts_as_a_duplicate() {
    const WRITTEN: u64 = 60;
    tramline_testkit::recorder::install();
    let dbs = TestDbs::new(Backend::Sqlite, "metrics-duplicates");
    let (outbox, db, log) = outbox_and_log(&dbs).await;
    write(&outbox, &db, &messages(WRITTEN, 0)).await;
    // Every message is published twice, as by a relay killed between publish and mark.
    let twice = Arc::new(Duplicating::new(log.clone(), 1.0).expect("a fraction"));
    let relay = OutboxRelay::new(Arc::clone(&outbox), twice, relay_config("twice"));
    while relay.publish_once().await.expect("publish") > 0 {}
    assert_eq!(
        counter(names::RELAY_PUBLISHED, &[("outbox", "twice")]),
        WRITTEN,
        "the relay counts what it published, not the transport's copies"
    );

    let group = [("group", "dedupe")];
    let running = RunningConsumer::start(
        ConsumerRuntime::new(Arc::new(Applier::default()), consumer_config("dedupe")),
        log.subscribe("dedupe", &topics()).await.expect("subscribe"),
    );
    wait_until("the consumer caught up", async || {
        log.lag("dedupe", &topics()).await.expect("lag") == 0
    })
    .await;
    let stats = running.stop().await;
    assert_eq!(counter(names::CONSUMER_APPLIED, &group), WRITTEN);
    assert_eq!(counter(names::CONSUMER_DUPLICATES, &group), WRITTEN);
    assert_eq!(stats.duplicates.load(Ordering::SeqCst), WRITTEN);
    // One observation per record of a committed batch: the handler does not say which of
    // them were the duplicates.
    let latencies = histogram(names::CONSUMER_COMMIT_LATENCY, &group);
    assert_eq!(latencies.len() as u64, 2 * WRITTEN);
    assert_eq!(
        histogram(names::CONSUMER_EVENT_AGE, &group).len() as u64,
        2 * WRITTEN
    );
}

/// The lag gauges of a subscription of the DB-backed log: each partition's end less the
/// group's last commit, set on a poll.
async fn lag_gauges_count_what_the_group_has_not_committed(backend: Backend) {
    tramline_testkit::recorder::install();
    let dbs = TestDbs::new(backend, "metrics-lag");
    let log = SqlLog::open(&dbs.url("log").await, &DbOptions::default())
        .await
        .expect("opens")
        .with_lag_interval(Duration::ZERO);
    log.create_topic("t", 2).await.expect("topic");
    log.publish(&messages(10, 0)).await.expect("publish");
    let ends = log.partitions("t").await.expect("partitions");
    assert_eq!(ends.iter().sum::<i64>(), 10);
    let group = format!("lag-{}", backend.name());
    let lag = |p: i32| {
        let p = p.to_string();
        let labels = [
            ("group", group.as_str()),
            ("topic", "t"),
            ("partition", p.as_str()),
        ];
        gauge(names::CONSUMER_LAG, &labels)
    };

    let mut sub = log.subscribe(&group, &topics()).await.expect("subscribe");
    let records = sub.poll(100, Duration::ZERO).await.expect("poll");
    assert_eq!(records.len(), 10);
    for (p, end) in ends.iter().enumerate() {
        assert_eq!(lag(p as i32), Some(*end as f64), "partition {p}");
    }

    // Read is not committed: still lagging. Committed: no lag.
    sub.poll(100, Duration::ZERO).await.expect("poll");
    assert_eq!(lag(0), Some(ends[0] as f64));
    let positions: Vec<CommitPosition> = (0..2)
        .map(|p| CommitPosition {
            topic: "t".to_owned(),
            partition: p,
            next_offset: ends[p as usize],
        })
        .collect();
    sub.commit(&positions).await.expect("commit");
    sub.poll(100, Duration::ZERO).await.expect("poll");
    assert_eq!((lag(0), lag(1)), (Some(0.0), Some(0.0)));

    // A later append shows on the next poll.
    log.publish(&messages(3, 0)).await.expect("publish");
    sub.poll(100, Duration::ZERO).await.expect("poll");
    let after = log.partitions("t").await.expect("partitions");
    let expected: Vec<Option<f64>> = (0..2).map(|p| Some((after[p] - ends[p]) as f64)).collect();
    assert_eq!(vec![lag(0), lag(1)], expected);
}

on_every_database!(lag_gauges_count_what_the_group_has_not_committed);
