//! The Kafka transport against a real Kafka-protocol broker: per-key order, Java-compatible
//! partitioning, resuming at committed offsets, Eventuate's wire format read by a plain Kafka
//! client and written by one, and a clear error when no broker answers.

mod common;

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use tramline_core::envelope::{AGGREGATE_ID, AGGREGATE_TYPE, EVENT_TYPE};
use tramline_core::eventuate::{self, EventuateMessage};
use tramline_core::offsets::CommitPosition;
use tramline_core::partitioner::partition_for;
use tramline_core::ports::{Subscription, Transport};
use tramline_core::{Envelope, Record};
use tramline_kafka::subscription::DECODE_ERROR;
use tramline_kafka::{KafkaConfig, KafkaError, KafkaTransport};

/// `n` events spread over `keys` keys; each payload carries its per-key sequence number.
fn events(topic: &str, n: usize, keys: usize) -> Vec<Envelope> {
    (0..n)
        .map(|i| {
            let key = format!("order-{}", i % keys);
            Envelope::new(topic, key.clone(), format!(r#"{{"seq":{}}}"#, i / keys))
                .with_header(EVENT_TYPE, "OrderCreated")
                .with_header(AGGREGATE_TYPE, "Order")
                .with_header(AGGREGATE_ID, key)
        })
        .collect()
}

fn seq(r: &Record) -> i64 {
    let v: serde_json::Value = serde_json::from_str(&r.envelope.payload).expect("json payload");
    v["seq"].as_i64().expect("seq")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keeps_key_order_places_keys_as_java_does_and_resumes_at_commits() {
    let t = common::transport("order", &["orders"], 3).await;
    let sent = events("orders", 300, 10);
    for chunk in sent.chunks(70) {
        t.publish(chunk).await.expect("published");
    }
    let topics = vec!["orders".to_owned()];
    let mut s = t.subscribe("g", &topics).await.expect("subscribed");
    let got = common::poll_n(&mut s, 300).await;
    assert_eq!(got.len(), 300, "exactly the records published");

    let mut next_seq: HashMap<&str, i64> = HashMap::new();
    for r in &got {
        let key = r.envelope.key.as_str();
        assert_eq!(r.envelope.topic, "orders", "the prefix is stripped");
        assert_eq!(
            r.partition,
            partition_for(key, 3),
            "key {key} is in the partition Kafka's Java partitioner picks"
        );
        let expected = next_seq.entry(key).or_insert(0);
        assert_eq!(seq(r), *expected, "key {key} in publish order");
        *expected += 1;
    }
    let by_id: HashMap<_, _> = sent.iter().map(|e| (e.id, e)).collect();
    for r in &got {
        assert_eq!(&&r.envelope, by_id.get(&r.envelope.id).expect("a sent id"));
    }

    // Commit the first half of each partition, leave, and come back: the rest is redelivered,
    // the committed half is not.
    let mut ends: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for r in &got {
        ends.entry(r.partition).or_default().push(r.offset);
    }
    let positions: Vec<CommitPosition> = ends
        .iter()
        .map(|(p, offsets)| CommitPosition {
            topic: "orders".into(),
            partition: *p,
            next_offset: offsets[offsets.len() / 2],
        })
        .collect();
    s.commit(&positions).await.expect("committed");
    let expected_rest: usize = ends.values().map(|o| o.len() - o.len() / 2).sum();
    assert!(t.lag("g", &topics).await.expect("lag") as usize == expected_rest);
    s.close().await;

    let mut again = t.subscribe("g", &topics).await.expect("subscribed again");
    let rest = common::poll_n(&mut again, expected_rest).await;
    for r in &rest {
        let committed = positions
            .iter()
            .find(|p| p.partition == r.partition)
            .expect("a partition");
        assert!(
            r.offset >= committed.next_offset,
            "a committed record came back: {r:?}"
        );
    }
    // Nothing else arrives.
    let more = again.poll(100, Duration::from_secs(1)).await.expect("poll");
    assert!(more.is_empty(), "unexpected extra records: {more:?}");
}

/// What another Kafka client sees: key = PARTITION_ID, value = Eventuate's JSON envelope,
/// timestamp = when the message was created.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_are_eventuate_envelopes_to_a_plain_kafka_client() {
    let t = common::transport("wire", &["order-events"], 2).await;
    let sent = events("order-events", 4, 2);
    t.publish(&sent).await.expect("published");

    let topic = t.config().topics.cluster_name("order-events");
    let seen =
        tramline_testkit::kafka::read_plain(&t.config().brokers, std::slice::from_ref(&topic), 4)
            .await;
    assert_eq!(seen.len(), 4);
    for r in seen {
        let (key, value, ts) = (&r.key, &r.value, r.create_time);
        let id = r.header("ID");
        let e = sent
            .iter()
            .find(|e| e.id.to_string() == id)
            .expect("a sent id");
        assert_eq!(key, &e.key);
        assert_eq!(value["headers"]["PARTITION_ID"], e.key.as_str());
        assert_eq!(r.topic, topic);
        assert_eq!(
            r.header("DESTINATION"),
            topic,
            "the destination is the topic"
        );
        assert_eq!(value["headers"]["event-type"], "OrderCreated");
        assert_eq!(value["headers"]["event-aggregate-type"], "Order");
        assert_eq!(value["headers"]["event-aggregate-id"], e.key.as_str());
        assert_eq!(
            eventuate::parse_http_date(value["headers"]["DATE"].as_str().expect("a DATE")),
            Some(e.created_at_ms / 1000 * 1000)
        );
        assert_eq!(
            value["payload"],
            e.payload.as_str(),
            "the payload is a JSON string"
        );
        assert_eq!(ts, e.created_at_ms);
    }
}

/// What an Eventuate Tram service publishes (a non-UUID id, its own DATE) is read as an
/// envelope; a value that is no Eventuate message still arrives, marked, to be parked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_what_an_eventuate_service_publishes() {
    let t = common::transport("eventuate", &["orders"], 1).await;
    let topic = t.config().topics.cluster_name("orders");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &t.config().brokers)
        .create()
        .expect("a plain producer");
    let eventuate_id = "0000018f2c4e9a3b-0242ac1300090000";
    let value = format!(
        r#"{{"payload":"{{\"orderId\":42}}","headers":{{"PARTITION_ID":"42","event-aggregate-type":"net.chrisrichardson.ftgo.Order","DATE":"Tue, 15 Nov 1994 08:12:31 GMT","event-aggregate-id":"42","event-type":"net.chrisrichardson.ftgo.OrderCreated","DESTINATION":"{topic}","ID":"{eventuate_id}"}}}}"#
    );
    for payload in [value.as_str(), "not json at all"] {
        producer
            .send(
                FutureRecord::to(&topic).key("42").payload(payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("produced");
    }
    let mut s = t
        .subscribe("g", &["orders".to_owned()])
        .await
        .expect("subscribed");
    let got = common::poll_n(&mut s, 2).await;
    let e = &got[0].envelope;
    assert_eq!(e.id, Envelope::id_for(eventuate_id));
    assert_eq!(
        e.header(eventuate::ID),
        Some(eventuate_id),
        "kept to publish it unchanged"
    );
    assert_eq!(e.key, "42");
    assert_eq!(e.topic, "orders");
    assert_eq!(e.payload, r#"{"orderId":42}"#);
    assert_eq!(
        e.event_type(),
        Some("net.chrisrichardson.ftgo.OrderCreated")
    );
    assert_eq!(
        EventuateMessage::from_envelope(e, &topic).headers[eventuate::DATE],
        "Tue, 15 Nov 1994 08:12:31 GMT"
    );
    let bad = &got[1].envelope;
    assert!(bad.header(DECODE_ERROR).is_some(), "marked: {bad:?}");
    assert_eq!(bad.payload, "not json at all");
    assert_eq!(
        bad.event_type(),
        None,
        "so the handler refuses it as poison"
    );
}

#[tokio::test]
async fn an_unreachable_broker_is_a_clear_error_within_the_timeout() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut config = KafkaConfig::new(format!("127.0.0.1:{port}"));
    config.connect_timeout = Duration::from_secs(2);
    let started = Instant::now();
    let err = KafkaTransport::connect(config)
        .await
        .expect_err("nobody answers");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(err, KafkaError::Unreachable { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
}

#[tokio::test]
async fn an_invalid_property_is_refused_with_its_name() {
    let mut config = KafkaConfig::new(tramline_testkit::kafka::brokers());
    config
        .properties
        .insert("no.such.property".into(), "1".into());
    let err = KafkaTransport::connect(config).await.expect_err("refused");
    assert!(matches!(err, KafkaError::Config(_)), "{err:?}");
    // The property's name is in the chain a reporter prints (librdkafka's own message).
    let chain = tramline_core::error::sentence(&err);
    assert!(chain.contains("no.such.property"), "{chain}");
}
