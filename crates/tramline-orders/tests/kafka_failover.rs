//! The Order Status View on Kafka when things break, against the real broker and MariaDB: a
//! view member killed mid-run (its partitions move to the survivor, its unfinished work is
//! redelivered and absorbed), and a relay that crashed between publishing a batch and marking
//! it (the batch is published twice; each event is applied once). The view must come out
//! exactly as the events say.

mod common;

use common::{completed_history, expected_row, view_db};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tramline_core::consumer::{ConsumerConfig, ConsumerRuntime};
use tramline_core::ports::{Outbox, Transport};
use tramline_core::relay::{OutboxRelay, RelayConfig};
use tramline_core::topics::TopicNames;
use tramline_core::Envelope;
use tramline_kafka::{KafkaConfig, KafkaTransport};
use tramline_orders::events::ALL_TOPICS;
use tramline_orders::services::ServiceDb;
use tramline_orders::view::projection::OrderStatusProjection;
use tramline_orders::view::{OrderStatusQuery, OrderStatusRow};
use tramline_sql::{migrate, Db, DbOptions, Schema, SqlOutbox};
use tramline_testkit::{kafka, wait_until, Backend, RunningConsumer, TestDbs};

const VIEW: &str = "order-status-view";

async fn transport(test: &str) -> KafkaTransport {
    let prefix = kafka::unique_prefix(test);
    let mut config = KafkaConfig::new(kafka::brokers());
    config.topics = TopicNames::with_prefix(&prefix);
    config.group_prefix = prefix;
    config.session_timeout = Duration::from_secs(6);
    let t = KafkaTransport::connect(config)
        .await
        .expect("the test broker answers");
    for topic in ALL_TOPICS {
        t.create_topic(topic, 4).await.expect("topic created");
    }
    t
}

/// The events of `n` completed orders, and the row each order must end with.
fn orders(tag: &str, n: usize) -> (Vec<Vec<Envelope>>, BTreeMap<String, OrderStatusRow>) {
    let mut envelopes = Vec::new();
    let mut expected = BTreeMap::new();
    for i in 0..n {
        let id = format!("{tag}-{i:05}");
        let history = completed_history(&id);
        expected.insert(id.clone(), expected_row(&id, &history));
        envelopes.push(history.iter().map(|e| e.to_envelope()).collect());
    }
    (envelopes, expected)
}

async fn join(t: &KafkaTransport, db: &ServiceDb) -> RunningConsumer {
    let topics: Vec<String> = ALL_TOPICS.iter().map(|t| t.to_string()).collect();
    let subscription = t.subscribe(VIEW, &topics).await.expect("subscribed");
    let handler = Arc::new(OrderStatusProjection::consumer(db, VIEW));
    RunningConsumer::start(
        ConsumerRuntime::new(handler, ConsumerConfig::default()),
        subscription,
    )
}

/// Waits until every expected row is in the view exactly.
async fn view_is_exact(db: &ServiceDb, expected: &BTreeMap<String, OrderStatusRow>) {
    let query = OrderStatusQuery::new(db.clone());
    let mut last = Vec::new();
    wait_until(
        "the view matches the events",
        Duration::from_secs(180),
        async || {
            let rows = query.rows_in("", None).await.expect("rows");
            let exact = rows.len() == expected.len()
                && rows.iter().all(|r| expected.get(&r.order_id) == Some(r));
            last = rows;
            exact
        },
    )
    .await;
    assert_eq!(last.len(), expected.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_view_members_work_moves_to_the_survivor_and_the_view_is_exact() {
    let dbs = TestDbs::new(Backend::MariaDb, "kafka-kill-member");
    let db = view_db(&dbs).await;
    let t = transport("kill-member").await;
    let (batches, expected) = orders("kill", 600);

    let survivor = join(&t, &db).await;
    let doomed = join(&t, &db).await;
    let (first_half, second_half) = batches.split_at(300);
    for chunk in first_half.chunks(4) {
        let events: Vec<Envelope> = chunk.iter().flatten().cloned().collect();
        t.publish(&events).await.expect("published");
    }
    wait_until(
        "both members apply events",
        Duration::from_secs(60),
        async || {
            survivor.stats.applied.load(Ordering::Relaxed) > 0
                && doomed.stats.applied.load(Ordering::Relaxed) > 100
        },
    )
    .await;
    // Killed: no drain, no final commit; what it applied since its last commit comes again.
    let doomed = doomed.kill().await;
    for chunk in second_half.chunks(4) {
        let events: Vec<Envelope> = chunk.iter().flatten().cloned().collect();
        t.publish(&events).await.expect("published");
    }

    view_is_exact(&db, &expected).await;
    let received =
        survivor.stats.received.load(Ordering::Relaxed) + doomed.received.load(Ordering::Relaxed);
    assert!(
        received >= 600 * 8,
        "every event was received at least once"
    );
    survivor.stop().await;
    let parked = OrderStatusProjection::consumer(&db, VIEW)
        .inbox()
        .parked(&db.db)
        .await
        .expect("parked count");
    assert_eq!(parked, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_restarted_between_publish_and_mark_causes_duplicates_only() {
    let dbs = TestDbs::new(Backend::MariaDb, "kafka-relay-crash");
    let view = view_db(&dbs).await;
    let outbox_db = Db::connect(&dbs.url("order").await, &DbOptions::default())
        .await
        .expect("opens");
    migrate(&outbox_db, &[Schema::Outbox])
        .await
        .expect("migrates");
    let outbox = Arc::new(SqlOutbox::new(outbox_db.clone()));
    let t = Arc::new(transport("relay-crash").await);
    let (batches, expected) = orders("crash", 100);
    let events: Vec<Envelope> = batches.into_iter().flatten().collect();
    let mut tx = outbox_db.begin("test").await.expect("begin");
    outbox.append(&mut tx, &events).await.expect("append");
    tx.commit("test").await.expect("commit");

    // The crash: the batch reached Kafka, the mark never happened.
    let batch = outbox.fetch_unpublished(10_000).await.expect("fetch");
    assert_eq!(batch.messages.len(), 800);
    t.publish(&batch.messages).await.expect("published");

    // The restarted relay publishes everything again.
    let relay = OutboxRelay::new(Arc::clone(&outbox), Arc::clone(&t), RelayConfig::default());
    while relay.publish_once().await.expect("relay round") > 0 {}
    assert_eq!(outbox.backlog().await.expect("backlog"), 0);
    assert_eq!(relay.stats().published.load(Ordering::SeqCst), 800);

    let member = join(&t, &view).await;
    view_is_exact(&view, &expected).await;
    wait_until(
        "every copy is handled",
        Duration::from_secs(60),
        async || {
            member.stats.applied.load(Ordering::Relaxed)
                + member.stats.duplicates.load(Ordering::Relaxed)
                == 1600
        },
    )
    .await;
    assert_eq!(
        member.stats.applied.load(Ordering::Relaxed),
        800,
        "each event applied once"
    );
    assert_eq!(
        member.stats.duplicates.load(Ordering::Relaxed),
        800,
        "each copy skipped"
    );
    member.stop().await;
}
