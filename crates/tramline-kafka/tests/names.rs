//! Topic names on a real broker, read back with a plain Kafka client: with a prefix, with
//! renames onto Eventuate aggregate types, and for rows an Eventuate service wrote into the
//! outbox. Every record's `DESTINATION` header is the topic it is on, its key is its
//! `PARTITION_ID`, and tramline's own consumers still find their events under tramline's
//! topic names.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tramline_core::envelope::{AGGREGATE_ID, AGGREGATE_TYPE, EVENT_TYPE};
use tramline_core::ports::{Subscription, Transport};
use tramline_core::relay::{OutboxRelay, RelayConfig};
use tramline_core::topics::TopicNames;
use tramline_core::{Envelope, Record};
use tramline_kafka::KafkaTransport;
use tramline_sql::{migrate, Db, DbOptions, OutboxLayout, SqlOutbox};
use tramline_testkit::kafka::PlainRecord;
use tramline_testkit::{kafka, Backend, TestDbs};

/// A transport on the test broker whose topics are named by `names` (group prefix of its
/// own), with `topics` created.
async fn transport(test: &str, names: TopicNames, topics: &[&str]) -> KafkaTransport {
    let mut config = common::config(test, &kafka::brokers());
    config.topics = names;
    let t = KafkaTransport::connect(config)
        .await
        .expect("the test broker");
    for topic in topics {
        t.create_topic(topic, 2).await.expect("topic created");
    }
    t
}

fn event(topic: &str, key: &str, event_type: &str) -> Envelope {
    Envelope::new(topic, key, format!(r#"{{"orderId":"{key}"}}"#))
        .with_header(EVENT_TYPE, event_type)
        .with_header(AGGREGATE_TYPE, "Order")
        .with_header(AGGREGATE_ID, key)
}

/// What every record must be, whatever the names: on `topic`, keyed by its PARTITION_ID,
/// destined to the topic it is on.
fn assert_eventuate_record(r: &PlainRecord, topic: &str) {
    assert_eq!(r.topic, topic, "{r:?}");
    assert_eq!(r.key, r.header("PARTITION_ID"), "key = PARTITION_ID: {r:?}");
    assert_eq!(
        r.header("DESTINATION"),
        r.topic,
        "DESTINATION = topic: {r:?}"
    );
}

/// tramline's consumer on `topics` (logical names) until `n` records arrived.
async fn consume(t: &KafkaTransport, topics: &[&str], n: usize) -> Vec<Record> {
    let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    let mut s = t.subscribe("view", &topics).await.expect("subscribed");
    let out = common::poll_n(&mut s, n).await;
    s.close().await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_prefixed_topics_records_name_it_as_their_destination() {
    let prefix = kafka::unique_prefix("bars");
    let t = transport(
        "prefix",
        TopicNames::with_prefix(&prefix),
        &["order-events"],
    )
    .await;
    let sent: Vec<Envelope> = (0..6)
        .map(|i| event("order-events", &format!("o-{}", i % 3), "OrderCreated"))
        .collect();
    t.publish(&sent).await.expect("published");

    let on_the_cluster = format!("{prefix}order-events");
    let read = kafka::read_plain(&kafka::brokers(), std::slice::from_ref(&on_the_cluster), 6).await;
    for r in &read {
        assert_eventuate_record(r, &on_the_cluster);
    }
    let got = consume(&t, &["order-events"], 6).await;
    assert!(got.iter().all(|r| r.envelope.topic == "order-events"));
    let ids: BTreeSet<_> = got.iter().map(|r| r.envelope.id).collect();
    assert_eq!(ids, sent.iter().map(|e| e.id).collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn renamed_topics_are_published_under_their_new_names() {
    let prefix = kafka::unique_prefix("renamed");
    let order = kafka::unique_aggregate_type("Order");
    let payment = kafka::unique_aggregate_type("Payment");
    let mut names = TopicNames::with_prefix(&prefix);
    names
        .rename("order-events", &order)
        .rename("payment-events", &payment);
    let topics = ["order-events", "payment-events", "delivery-events"];
    let t = transport("renamed", names, &topics).await;
    let sent = [
        event("order-events", "o-1", "OrderCreated"),
        event("payment-events", "o-1", "PaymentCreated"),
        event("delivery-events", "o-1", "DeliveryCreated"),
        event("order-events", "o-2", "OrderCreated"),
    ];
    t.publish(&sent).await.expect("published");

    let delivery = format!("{prefix}delivery-events");
    let cluster = [order.clone(), payment.clone(), delivery.clone()];
    let read = kafka::read_plain(&kafka::brokers(), &cluster, 4).await;
    let mut on: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &read {
        let e = sent
            .iter()
            .find(|e| e.id.to_string() == r.header("ID"))
            .expect("a sent id");
        let topic = match e.topic.as_str() {
            "order-events" => &order,
            "payment-events" => &payment,
            _ => &delivery,
        };
        assert_eventuate_record(r, topic);
        *on.entry(topic.as_str()).or_default() += 1;
    }
    assert_eq!(on[order.as_str()], 2, "{on:?}");
    assert_eq!(on[payment.as_str()], 1, "{on:?}");
    assert_eq!(
        on[delivery.as_str()],
        1,
        "a topic not renamed keeps the prefix"
    );

    let got = consume(&t, &topics, 4).await;
    for r in &got {
        let e = sent
            .iter()
            .find(|e| e.id == r.envelope.id)
            .expect("a sent id");
        assert_eq!(r.envelope.topic, e.topic, "read under tramline's name");
        assert_eq!(r.envelope.key, e.key);
    }
}

/// Rows as an Eventuate Tram service writes them into its `message` table, relayed by
/// tramline's relay: each is published to the topic its destination names, neither prefixed
/// nor renamed, with the headers it was written with.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_eventuate_row_goes_to_the_topic_its_destination_names() {
    let prefix = kafka::unique_prefix("eventuate-row");
    let order = kafka::unique_aggregate_type("Order");
    let customer = kafka::unique_aggregate_type("Customer");
    let mut names = TopicNames::with_prefix(&prefix);
    names.rename("order-events", &order);
    let t = Arc::new(transport("eventuate-row", names.clone(), &["order-events"]).await);
    // A topic tramline has no name for: the row's destination is used as it is.
    common::create_literal(&customer, 1).await;

    let dbs = TestDbs::new(Backend::Sqlite, "kafka-names");
    let db = Db::connect(&dbs.url("service").await, &DbOptions::default())
        .await
        .expect("opens");
    migrate(&db, &[OutboxLayout::Eventuate.schema()])
        .await
        .expect("migrates");
    let rows = [
        (
            "0000018f2c4e9a3b-0242ac1300090000",
            order.as_str(),
            "42",
            "OrderCreatedEvent",
        ),
        (
            "0000018f2c4e9a3c-0242ac1300090000",
            customer.as_str(),
            "c-7",
            "CustomerCreatedEvent",
        ),
        (
            "0000018f2c4e9a3d-0242ac1300090000",
            order.as_str(),
            "42",
            "OrderApprovedEvent",
        ),
    ];
    let mut written = BTreeMap::new();
    let mut tx = db.begin("test").await.expect("begin");
    for (id, destination, key, event_type) in rows {
        let headers: BTreeMap<String, String> = [
            ("ID", id),
            ("PARTITION_ID", key),
            ("DESTINATION", destination),
            ("DATE", "Tue, 15 Nov 1994 08:12:31 GMT"),
            ("event-type", event_type),
            ("event-aggregate-type", destination),
            ("event-aggregate-id", key),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let mut insert = tx.stmt(
            "INSERT INTO message (id, destination, headers, payload, published, creation_time) \
             VALUES (",
        );
        insert
            .bind(id)
            .push(", ")
            .bind(destination)
            .push(", ")
            .bind(serde_json::to_string(&headers).expect("JSON"))
            .push(", ")
            .bind(format!(r#"{{"id":"{key}"}}"#))
            .push(", 0, ")
            .bind(784_887_151_000i64)
            .push(")");
        tx.execute(&insert, "test", "insert").await.expect("insert");
        written.insert(id.to_owned(), headers);
    }
    tx.commit("test").await.expect("commit");

    let outbox =
        Arc::new(SqlOutbox::with_layout(db.clone(), OutboxLayout::Eventuate).with_topics(names));
    let relay = OutboxRelay::new(Arc::clone(&outbox), Arc::clone(&t), RelayConfig::default());
    assert_eq!(relay.publish_once().await.expect("relayed"), 3);

    let read = kafka::read_plain(&kafka::brokers(), &[order.clone(), customer.clone()], 3).await;
    for r in &read {
        let headers = &written[r.header("ID")];
        assert_eventuate_record(r, &headers["DESTINATION"]);
        let got: BTreeMap<String, String> =
            serde_json::from_value(r.value["headers"].clone()).expect("string headers");
        assert_eq!(
            &got, headers,
            "published with the headers it was written with"
        );
        assert_eq!(r.create_time, 784_887_151_000);
    }
    assert_eq!(read.iter().filter(|r| r.topic == customer).count(), 1);

    // tramline's consumers find the order rows under tramline's own topic name.
    let got = consume(&t, &["order-events"], 2).await;
    let types: Vec<_> = got
        .iter()
        .map(|r| (r.envelope.topic.as_str(), r.envelope.event_type()))
        .collect();
    assert_eq!(
        types,
        [
            ("order-events", Some("OrderCreatedEvent")),
            ("order-events", Some("OrderApprovedEvent")),
        ]
    );
    db.close().await;
}
