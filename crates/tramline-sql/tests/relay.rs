//! The relay on the real outbox and log: order per key, prompt wake-up, and a crash between
//! publish and mark that yields duplicates, never gaps.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tramline_core::ports::{Outbox, OutboxBatch, Pending, Subscription, Transport};
use tramline_core::relay::{OutboxRelay, RelayConfig};
use tramline_core::{Envelope, Error};
use tramline_sql::{migrate, Db, DbOptions, Schema, SqlLog, SqlOutbox};
use tramline_testkit::{on_every_database, Backend, TestDbs};

struct Setup {
    db: Db,
    outbox: Arc<SqlOutbox>,
    log: SqlLog,
}

async fn setup(dbs: &TestDbs) -> Setup {
    let opts = DbOptions::default();
    let db = Db::connect(&dbs.url("service").await, &opts)
        .await
        .expect("opens");
    migrate(&db, &[Schema::Outbox]).await.expect("migrates");
    let log = SqlLog::open(&dbs.url("log").await, &opts)
        .await
        .expect("log opens");
    log.create_topic("t", 3).await.expect("topic");
    Setup {
        outbox: Arc::new(SqlOutbox::new(db.clone())),
        db,
        log,
    }
}

async fn write(s: &Setup, messages: &[Envelope]) {
    let mut tx = s.db.begin("test").await.expect("begin");
    s.outbox.append(&mut tx, messages).await.expect("append");
    tx.commit("test").await.expect("commit");
    s.outbox.notify();
}

async fn read_all(log: &SqlLog) -> Vec<Envelope> {
    let mut sub = log
        .subscribe(&uuid::Uuid::now_v7().to_string(), &["t".to_owned()])
        .await
        .expect("subscribe");
    let mut all = Vec::new();
    loop {
        let got = sub
            .poll(1000, Duration::from_millis(10))
            .await
            .expect("poll");
        if got.is_empty() {
            return all;
        }
        all.extend(got.into_iter().map(|r| r.envelope));
    }
}

fn per_key(messages: &[Envelope], key: &str) -> Vec<String> {
    messages
        .iter()
        .filter(|m| m.key == key)
        .map(|m| m.payload.clone())
        .collect()
}

async fn publishes_everything_in_commit_order_per_key(backend: Backend) {
    let dbs = TestDbs::new(backend, "relay-order");
    let s = setup(&dbs).await;
    let sent: Vec<Envelope> = (0..250)
        .map(|n| Envelope::new("t", format!("k{}", n % 5), n.to_string()))
        .collect();
    for chunk in sent.chunks(10) {
        write(&s, chunk).await;
    }
    let relay = OutboxRelay::new(
        Arc::clone(&s.outbox),
        Arc::new(s.log.clone()),
        RelayConfig {
            batch_size: 64,
            ..RelayConfig::default()
        },
    );
    while relay.publish_once().await.expect("publish") > 0 {}
    let got = read_all(&s.log).await;
    assert_eq!(got.len(), 250);
    for k in 0..5 {
        let key = format!("k{k}");
        assert_eq!(per_key(&got, &key), per_key(&sent, &key), "{key} in order");
    }
    assert_eq!(s.outbox.backlog().await.expect("backlog"), 0);
}

async fn wakes_on_a_commit_without_waiting_for_its_poll_interval(backend: Backend) {
    let dbs = TestDbs::new(backend, "relay-wakeup");
    let s = setup(&dbs).await;
    let relay = OutboxRelay::new(
        Arc::clone(&s.outbox),
        Arc::new(s.log.clone()),
        RelayConfig {
            idle_poll: Duration::from_secs(600),
            ..RelayConfig::default()
        },
    );
    let stats = relay.stats();
    let cancel = CancellationToken::new();
    let task = tokio::spawn({
        let cancel = cancel.clone();
        async move { relay.run(cancel).await }
    });
    // Let the relay find nothing and go idle: it would then sleep 10 minutes without a wake-up.
    tokio::time::sleep(Duration::from_millis(100)).await;
    write(&s, &[Envelope::new("t", "k", "1".into())]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stats.published.load(Ordering::SeqCst) < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relay did not wake up"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cancel.cancel();
    task.await.expect("no panic").expect("relay stops cleanly");
}

/// An outbox whose first mark fails, as if the relay process died after publishing.
struct CrashBeforeMark {
    inner: Arc<SqlOutbox>,
    crashed: AtomicBool,
}

impl Outbox for CrashBeforeMark {
    async fn fetch_unpublished(&self, max: usize) -> Result<OutboxBatch, Error> {
        self.inner.fetch_unpublished(max).await
    }
    async fn mark_published(&self, batch: &OutboxBatch) -> Result<(), Error> {
        if !self.crashed.swap(true, Ordering::SeqCst) {
            return Err(Error::Stopped);
        }
        self.inner.mark_published(batch).await
    }
    fn wakeup(&self) -> &Notify {
        self.inner.wakeup()
    }
    async fn pending(&self) -> Result<Option<Pending>, Error> {
        self.inner.pending().await
    }
}

async fn a_crash_between_publish_and_mark_republishes_duplicates_not_gaps(backend: Backend) {
    let dbs = TestDbs::new(backend, "relay-crash");
    let s = setup(&dbs).await;
    let sent: Vec<Envelope> = (0..30)
        .map(|n| Envelope::new("t", format!("k{}", n % 3), n.to_string()))
        .collect();
    write(&s, &sent).await;
    let transport = Arc::new(s.log.clone());
    let crashing = Arc::new(CrashBeforeMark {
        inner: Arc::clone(&s.outbox),
        crashed: AtomicBool::new(false),
    });
    let relay = OutboxRelay::new(
        crashing,
        Arc::clone(&transport),
        RelayConfig {
            batch_size: 20,
            ..RelayConfig::default()
        },
    );
    relay
        .publish_once()
        .await
        .expect_err("the first relay dies before marking");
    // A fresh relay takes over.
    let relay = OutboxRelay::new(
        Arc::clone(&s.outbox),
        transport,
        RelayConfig {
            batch_size: 20,
            ..RelayConfig::default()
        },
    );
    while relay.publish_once().await.expect("publish") > 0 {}
    let got = read_all(&s.log).await;
    assert_eq!(got.len(), 30 + 20, "the unmarked batch went out twice");
    let mut ids: Vec<_> = got.iter().map(|m| m.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        30,
        "every message is there; the extras are copies"
    );
    for k in 0..3 {
        let key = format!("k{k}");
        let mut seen: Vec<String> = Vec::new();
        for p in per_key(&got, &key) {
            if !seen.contains(&p) {
                seen.push(p);
            }
        }
        assert_eq!(
            seen,
            per_key(&sent, &key),
            "{key}: first deliveries in order"
        );
    }
}

on_every_database!(
    publishes_everything_in_commit_order_per_key,
    wakes_on_a_commit_without_waiting_for_its_poll_interval,
    a_crash_between_publish_and_mark_republishes_duplicates_not_gaps,
);
