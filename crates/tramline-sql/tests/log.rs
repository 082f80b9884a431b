//! The DB-backed log on every dialect: partitioned by key like Kafka, dense ordered offsets,
//! durable group offsets.

use std::collections::HashMap;
use std::time::Duration;
use tramline_core::offsets::CommitPosition;
use tramline_core::partitioner::partition_for;
use tramline_core::ports::{Subscription, Transport};
use tramline_core::{Envelope, Error};
use tramline_sql::{DbOptions, SqlLog};
use tramline_testkit::{drain, on_every_database, Backend, TestDbs};

async fn log(dbs: &TestDbs) -> SqlLog {
    SqlLog::open(&dbs.url("log").await, &DbOptions::default())
        .await
        .expect("opens")
}

fn topics() -> Vec<String> {
    vec!["t".to_owned()]
}

async fn keys_keep_their_partition_and_order_and_offsets_are_dense(backend: Backend) {
    let dbs = TestDbs::new(backend, "log-partitions");
    let log = log(&dbs).await;
    log.create_topic("t", 4).await.expect("topic");
    let sent: Vec<Envelope> = (0..300)
        .map(|n| Envelope::new("t", format!("key-{}", n % 13), format!("{n}")))
        .collect();
    for chunk in sent.chunks(37) {
        log.publish(chunk).await.expect("publish");
    }
    let mut sub = log.subscribe("g", &topics()).await.expect("subscribe");
    let got = drain(&mut sub).await;
    assert_eq!(got.len(), 300);
    let mut per_partition: HashMap<i32, Vec<i64>> = HashMap::new();
    let mut per_key: HashMap<String, Vec<u32>> = HashMap::new();
    for r in &got {
        assert_eq!(
            r.partition,
            partition_for(&r.envelope.key, 4),
            "Kafka's partitioner"
        );
        per_partition.entry(r.partition).or_default().push(r.offset);
        per_key
            .entry(r.envelope.key.clone())
            .or_default()
            .push(r.envelope.payload.parse().expect("n"));
    }
    for offsets in per_partition.values() {
        assert_eq!(
            *offsets,
            (0..offsets.len() as i64).collect::<Vec<_>>(),
            "dense, in order"
        );
    }
    for ns in per_key.values() {
        assert!(
            ns.windows(2).all(|w| w[0] < w[1]),
            "a key's messages keep their order"
        );
    }
}

async fn a_group_resumes_at_its_committed_offsets(backend: Backend) {
    let dbs = TestDbs::new(backend, "log-resume");
    let log = log(&dbs).await;
    log.create_topic("t", 2).await.expect("topic");
    let sent: Vec<Envelope> = (0..40)
        .map(|n| Envelope::new("t", format!("k{n}"), String::new()))
        .collect();
    log.publish(&sent).await.expect("publish");
    let mut sub = log.subscribe("g", &topics()).await.expect("subscribe");
    let got = drain(&mut sub).await;
    // Commit only partition 0's first three records.
    let p0: Vec<_> = got.iter().filter(|r| r.partition == 0).collect();
    sub.commit(&[CommitPosition {
        topic: "t".into(),
        partition: 0,
        next_offset: 3,
    }])
    .await
    .expect("commit");
    assert_eq!(log.lag("g", &topics()).await.expect("lag"), 40 - 3);

    let mut again = log.subscribe("g", &topics()).await.expect("resubscribe");
    let redelivered = drain(&mut again).await;
    assert_eq!(
        redelivered.len(),
        37,
        "everything not committed comes again"
    );
    assert!(redelivered
        .iter()
        .all(|r| r.partition != 0 || r.offset >= 3));
    assert!(p0.len() >= 3);
    // A commit never moves a group backwards.
    again
        .commit(&[CommitPosition {
            topic: "t".into(),
            partition: 0,
            next_offset: 1,
        }])
        .await
        .expect("commit");
    assert_eq!(log.lag("g", &topics()).await.expect("lag"), 37);
    // Another group starts from the beginning.
    assert_eq!(log.lag("other", &topics()).await.expect("lag"), 40);
}

async fn a_poll_wakes_on_an_append_instead_of_sleeping_out_its_wait(backend: Backend) {
    let dbs = TestDbs::new(backend, "log-wakeup");
    let log = log(&dbs).await;
    log.create_topic("t", 1).await.expect("topic");
    let mut sub = log.subscribe("g", &topics()).await.expect("subscribe");
    let publisher = log.clone();
    let started = tokio::time::Instant::now();
    let poll = tokio::spawn(async move { sub.poll(10, Duration::from_secs(30)).await });
    // Let the poll find nothing and start waiting; were it not waiting yet, it would find the
    // record on its first read and the assertions would hold all the same.
    tokio::time::sleep(Duration::from_millis(100)).await;
    publisher
        .publish(&[Envelope::new("t", "k", String::new())])
        .await
        .expect("publish");
    let got = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .expect("the poll returned long before its 30 s wait")
        .expect("no panic")
        .expect("poll");
    assert_eq!(got.len(), 1);
    assert!(started.elapsed() < Duration::from_secs(10));
}

async fn unknown_topics_and_bad_partition_counts_are_clear_errors(backend: Backend) {
    let dbs = TestDbs::new(backend, "log-errors");
    let log = log(&dbs).await;
    let err = log
        .publish(&[Envelope::new("missing", "k", String::new())])
        .await
        .expect_err("no topic");
    assert!(
        matches!(&err, Error::Config(m) if m.contains("missing")),
        "{err}"
    );
    let err = log
        .subscribe("g", &["missing".to_owned()])
        .await
        .expect_err("no topic");
    assert!(
        matches!(&err, Error::Config(m) if m.contains("missing")),
        "{err}"
    );
    assert!(log.create_topic("t", 0).await.is_err());
    log.create_topic("t", 3).await.expect("topic");
    log.create_topic("t", 3)
        .await
        .expect("creating again is a no-op");
    let err = log
        .create_topic("t", 5)
        .await
        .expect_err("partition count differs");
    assert!(err.to_string().contains("3 partitions"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_polls_and_commits_never_wait_for_each_others_locks() {
    // SQLite's one write lock is what this is about.
    let dbs = TestDbs::new(Backend::Sqlite, "log-no-contention");
    // With no busy timeout, any two writers meeting would fail at once with "locked".
    let impatient = DbOptions {
        busy_timeout: Duration::ZERO,
        ..DbOptions::default()
    };
    let log = SqlLog::open(&dbs.url("log").await, &impatient)
        .await
        .expect("opens");
    log.create_topic("t", 4).await.expect("topic");
    let mut sub = log.subscribe("g", &topics()).await.expect("subscribe");
    let consumer = tokio::spawn(async move {
        for _ in 0..1500 {
            let got = sub.poll(100, Duration::from_millis(1)).await?;
            if let Some(r) = got.last() {
                let at = CommitPosition {
                    topic: "t".into(),
                    partition: r.partition,
                    next_offset: r.offset + 1,
                };
                sub.commit(&[at]).await?;
            }
        }
        Ok::<_, Error>(())
    });
    for i in 0..1500 {
        log.publish(&[Envelope::new("t", format!("k{i}"), String::new())])
            .await
            .expect("append never meets a lock");
    }
    consumer
        .await
        .expect("no panic")
        .expect("polls and commits never meet a lock");
}

on_every_database!(
    keys_keep_their_partition_and_order_and_offsets_are_dense,
    a_group_resumes_at_its_committed_offsets,
    a_poll_wakes_on_an_append_instead_of_sleeping_out_its_wait,
    unknown_topics_and_bad_partition_counts_are_clear_errors,
);
