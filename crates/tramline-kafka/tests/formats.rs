//! Envelope formats per topic through a real broker: records written by other tools (a plain
//! rdkafka producer imitating Debezium's outbox event router, a service writing plain JSON,
//! an Eventuate Tram service) become envelopes by their topic's format (see
//! `tramline_core::wire`), a record that does not decode arrives marked with
//! [`DECODE_ERROR`] instead of being lost or stopping the consumer, and each topic of one
//! subscription is read in its own format.

mod common;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tramline_core::eventuate;
use tramline_core::ports::{Subscription, Transport};
use tramline_core::wire::WireFormat;
use tramline_core::Envelope;
use tramline_kafka::subscription::DECODE_ERROR;
use tramline_kafka::KafkaTransport;
use tramline_testkit::kafka;

/// Topic A: what Debezium's outbox event router writes (`route.by.field=aggregatetype`).
const DEBEZIUM: &str = "outbox.event.Order";
/// Topic B: plain JSON values, the event type in the `type` field, no id header.
const PLAIN: &str = "shipments";
/// Topic C: not listed in `formats`, so Eventuate Tram's JSON envelope.
const EVENTUATE: &str = "orders";

/// Where a record is: (topic as the application names it, partition, offset).
type Position = (String, i32, i64);

/// A transport on the test broker (topic and group prefix of its own) whose topic A reads as
/// Debezium's outbox router and B as plain JSON; A, B and C created with `partitions` each.
async fn transport(test: &str, partitions: i32) -> KafkaTransport {
    let mut config = common::config(test, &kafka::brokers());
    let debezium = config.topics.cluster_name(DEBEZIUM);
    let plain = config.topics.cluster_name(PLAIN);
    config.formats.insert(
        debezium,
        WireFormat::DebeziumOutbox {
            id_header: "id".into(),
            event_type_header: "eventType".into(),
        },
    );
    config.formats.insert(
        plain,
        WireFormat::PlainJson {
            event_type_header: None,
            event_type_field: Some("type".into()),
            id_header: None,
        },
    );
    let t = KafkaTransport::connect(config).await.unwrap_or_else(|e| {
        panic!("{e} (the test broker: scripts/broker start, or TRAMLINE_TEST_KAFKA_BROKERS)")
    });
    for topic in [DEBEZIUM, PLAIN, EVENTUATE] {
        t.create_topic(topic, partitions)
            .await
            .expect("topic created");
    }
    t
}

/// Another tool's producer: plain librdkafka, none of tramline's code.
struct Foreign {
    producer: FutureProducer,
    transport: KafkaTransport,
}

impl Foreign {
    fn new(t: &KafkaTransport) -> Self {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &t.config().brokers)
            .create()
            .expect("a plain producer");
        Foreign {
            producer,
            transport: t.clone(),
        }
    }

    /// Produces one record to the logical `topic` (on its cluster name) and returns where the
    /// broker put it.
    async fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(&str, &[u8])],
        timestamp_ms: i64,
    ) -> Position {
        let cluster = self.transport.config().topics.cluster_name(topic);
        let mut owned = OwnedHeaders::new_with_capacity(headers.len());
        for (name, value) in headers {
            owned = owned.insert(Header {
                key: name,
                value: Some(*value),
            });
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&cluster)
            .payload(value)
            .headers(owned)
            .timestamp(timestamp_ms);
        if let Some(key) = key {
            record = record.key(key);
        }
        let delivered = self
            .producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap_or_else(|e| panic!("producing to {cluster}: {e}"));
        (topic.to_owned(), delivered.partition, delivered.offset)
    }
}

/// Polls `s` until a record arrived at each of `expected` (or fails after 60 s, naming the
/// positions still missing); a record anywhere else fails at once. A redelivered record (a
/// rebalance) must be the same envelope again.
async fn poll_positions<S: Subscription>(
    s: &mut S,
    expected: &[Position],
    what: &str,
) -> BTreeMap<Position, Envelope> {
    let wanted: BTreeSet<&Position> = expected.iter().collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got: BTreeMap<Position, Envelope> = BTreeMap::new();
    while got.len() < wanted.len() {
        if Instant::now() >= deadline {
            let missing: Vec<_> = wanted.iter().filter(|p| !got.contains_key(*p)).collect();
            panic!(
                "{what}: after 60 s, {} of {} records arrived; still missing (topic, partition, offset) {missing:?}",
                got.len(),
                wanted.len()
            );
        }
        let batch = s
            .poll(500, Duration::from_millis(200))
            .await
            .unwrap_or_else(|e| panic!("{what}: polling failed: {e}"));
        for r in batch {
            let at = (r.envelope.topic.clone(), r.partition, r.offset);
            assert!(
                wanted.contains(&at),
                "{what}: a record nobody produced, at {at:?}: {r:?}"
            );
            if let Some(before) = got.get(&at) {
                assert_eq!(before, &r.envelope, "{what}: redelivered differently");
            }
            got.insert(at, r.envelope);
        }
        if let Some(revocation) = s.take_revocation() {
            revocation.complete(Vec::new());
        }
    }
    got
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The base of a test's record timestamps: an hour ago, so that a record's timestamp is not
/// mistaken for the time it was read.
fn hour_ago() -> i64 {
    tramline_core::envelope::now_ms() - 3_600_000
}

/// Debezium's outbox event router as Kafka Connect writes it: the key a JSON string (or a
/// plain one, or Connect's schema envelope), the value a JSON string holding the payload, the
/// expanded payload, or Connect's `{"schema", "payload"}`; `id` and `eventType` headers. Each
/// becomes the envelope the router meant; a record without its `id` header arrives marked,
/// and the records after it arrive too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn debezium_outbox_records_become_their_events() {
    let t = transport("debezium", 2).await;
    let foreign = Foreign::new(&t);
    let base = hour_ago();
    let at = |n: i64| base + n;
    let document = json(r#"{"orderId":"o-1","total":12.5,"lines":[{"sku":"A-1","qty":2}]}"#);
    let as_string = serde_json::to_string(&document.to_string()).expect("a JSON string");
    let as_object = document.to_string();
    let connect = serde_json::json!({
        "schema": {"type": "string", "optional": true, "name": "io.debezium.data.Json", "version": 1},
        "payload": document.to_string(),
    })
    .to_string();
    let connect_key = br#"{"schema":{"type":"string","optional":false},"payload":"o-3"}"#;

    // (key as written, key meant, value, event id, event type)
    let cases: [(&[u8], &str, &str, &str, &str); 4] = [
        (
            br#""o-1""#,
            "o-1",
            &as_string,
            "6f1d2c1e-0000-4000-8000-000000000001",
            "OrderCreated",
        ),
        (
            b"o-2",
            "o-2",
            &as_object,
            "6f1d2c1e-0000-4000-8000-000000000002",
            "OrderApproved",
        ),
        (
            connect_key,
            "o-3",
            &connect,
            "6f1d2c1e-0000-4000-8000-000000000003",
            "OrderShipped",
        ),
        // An id that is not a UUID (`table.field.event.id` on a text column).
        (br#""o-1""#, "o-1", &as_object, "evt-17", "OrderCancelled"),
    ];
    let mut sent = Vec::new();
    for (n, (key, _, value, id, event_type)) in cases.iter().enumerate() {
        let trace = format!("00-trace-{n}");
        let headers: [(&str, &[u8]); 3] = [
            ("id", id.as_bytes()),
            ("eventType", event_type.as_bytes()),
            ("traceparent", trace.as_bytes()),
        ];
        let ts = at(n as i64);
        let position = foreign
            .send(DEBEZIUM, Some(key), value.as_bytes(), &headers, ts)
            .await;
        sent.push((position, ts));
    }
    // Without its id header, then without its event type header, then a good record after
    // them, all on one key (one partition, in this order).
    let no_id = foreign
        .send(
            DEBEZIUM,
            Some(br#""o-9""#),
            as_object.as_bytes(),
            &[("eventType", b"OrderCreated"), ("traceparent", b"00-bad")],
            at(10),
        )
        .await;
    let no_type = foreign
        .send(
            DEBEZIUM,
            Some(br#""o-9""#),
            as_object.as_bytes(),
            &[("id", b"6f1d2c1e-0000-4000-8000-000000000009")],
            at(11),
        )
        .await;
    let after = foreign
        .send(
            DEBEZIUM,
            Some(br#""o-9""#),
            as_object.as_bytes(),
            &[
                ("id", b"6f1d2c1e-0000-4000-8000-00000000000a"),
                ("eventType", b"OrderCreated"),
            ],
            at(12),
        )
        .await;
    assert!(
        no_id.1 == after.1 && no_type.1 == after.1 && no_id.2 < no_type.2 && no_type.2 < after.2,
        "one key, one partition, in order: {no_id:?} {no_type:?} {after:?}"
    );

    let mut s = t
        .subscribe("view", &[DEBEZIUM.to_owned()])
        .await
        .expect("subscribed");
    let mut expected: Vec<Position> = sent.iter().map(|(p, _)| p.clone()).collect();
    expected.extend([no_id.clone(), no_type.clone(), after.clone()]);
    let got = poll_positions(&mut s, &expected, "Debezium outbox records").await;
    s.close().await;

    for (n, ((position, ts), (_, key, _, id, event_type))) in sent.iter().zip(&cases).enumerate() {
        let e = &got[position];
        let case = format!("case {n}: {e:?}");
        assert_eq!(e.header(DECODE_ERROR), None, "{case}");
        assert_eq!(e.topic, DEBEZIUM, "the application's topic name: {case}");
        assert_eq!(e.key, *key, "{case}");
        assert_eq!(e.event_type(), Some(*event_type), "{case}");
        assert_eq!(e.id, Envelope::id_for(id), "{case}");
        assert_eq!(
            e.header(eventuate::ID),
            Some(*id),
            "the event id travels on: {case}"
        );
        assert_eq!(json(&e.payload), document, "{case}");
        assert_eq!(
            e.header("traceparent"),
            Some(format!("00-trace-{n}").as_str()),
            "other headers are carried: {case}"
        );
        assert_eq!(e.created_at_ms, *ts, "the record's timestamp: {case}");
        assert!((0..2).contains(&position.1), "{case}");
    }
    assert_eq!(
        got[&sent[0].0].id.to_string(),
        "6f1d2c1e-0000-4000-8000-000000000001",
        "a UUID id stays itself"
    );

    let e = &got[&no_id];
    assert_eq!(
        e.header(DECODE_ERROR),
        Some("the record has no id header"),
        "{e:?}"
    );
    assert_eq!(e.topic, DEBEZIUM);
    assert_eq!(e.key, "o-9");
    assert_eq!(e.header("traceparent"), Some("00-bad"), "headers kept");
    assert_eq!(
        json(&e.payload),
        document,
        "the value kept, to be parked as it was"
    );
    assert_eq!(e.event_type(), None, "so a handler refuses it as poison");

    let e = &got[&no_type];
    assert_eq!(
        e.header(DECODE_ERROR),
        Some("the record has no eventType header"),
        "{e:?}"
    );

    let e = &got[&after];
    assert_eq!(e.header(DECODE_ERROR), None, "{e:?}");
    assert_eq!(e.event_type(), Some("OrderCreated"));
    assert_eq!(
        e.id,
        Envelope::id_for("6f1d2c1e-0000-4000-8000-00000000000a")
    );
}

/// Plain JSON values: the event type from the payload's `type` field, the message id from
/// the record's position, so that another group reading the same records (or a redelivery)
/// gets the same ids while two records with the same content get different ones; a value
/// that is not JSON arrives marked, and the records after it arrive too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plain_json_records_are_typed_by_a_field_and_identified_by_their_position() {
    let t = transport("plain", 2).await;
    let foreign = Foreign::new(&t);
    let base = hour_ago();
    let at = |n: i64| base + n;
    let shipped = r#"{"type":"ShipmentCreated","orderId":"o-1","carrier":"DHL"}"#;
    let first = foreign
        .send(
            PLAIN,
            Some(b"s-1"),
            shipped.as_bytes(),
            &[("trace", b"t-1")],
            at(0),
        )
        .await;
    // The same content again: another event (the same key, so the same partition).
    let twin = foreign
        .send(
            PLAIN,
            Some(b"s-1"),
            shipped.as_bytes(),
            &[("trace", b"t-1")],
            at(0),
        )
        .await;
    let not_json = foreign
        .send(PLAIN, Some(b"s-1"), b"not json {", &[], at(1))
        .await;
    let after = foreign
        .send(
            PLAIN,
            Some(b"s-1"),
            br#"{"type":"ShipmentDelivered","orderId":"o-1"}"#,
            &[],
            at(2),
        )
        .await;
    // No key, and no type field.
    let untyped = foreign
        .send(PLAIN, None, br#"{"orderId":"o-2"}"#, &[], at(3))
        .await;
    assert!(
        first.1 == after.1 && first.2 < twin.2 && twin.2 < not_json.2 && not_json.2 < after.2,
        "one key, one partition, in order: {first:?} {twin:?} {not_json:?} {after:?}"
    );
    let expected = [
        first.clone(),
        twin.clone(),
        not_json.clone(),
        after.clone(),
        untyped.clone(),
    ];
    let topics = [PLAIN.to_owned()];

    let mut s = t.subscribe("view", &topics).await.expect("subscribed");
    let got = poll_positions(&mut s, &expected, "plain JSON records, group view").await;
    s.close().await;

    let e = &got[&first];
    assert_eq!(e.header(DECODE_ERROR), None, "{e:?}");
    assert_eq!(e.topic, PLAIN);
    assert_eq!(e.key, "s-1");
    assert_eq!(e.event_type(), Some("ShipmentCreated"));
    assert_eq!(json(&e.payload), json(shipped));
    assert_eq!(e.header("trace"), Some("t-1"));
    assert_eq!(e.created_at_ms, at(0));

    let twin_e = &got[&twin];
    assert_eq!(twin_e.payload, e.payload, "the same content");
    assert_ne!(twin_e.id, e.id, "two records, two ids");
    let ids: BTreeSet<_> = got.values().map(|e| e.id).collect();
    assert_eq!(
        ids.len(),
        expected.len(),
        "every record its own id: {got:?}"
    );

    let bad = &got[&not_json];
    assert!(
        bad.header(DECODE_ERROR)
            .is_some_and(|why| why.starts_with("the record value is not JSON: ")),
        "{bad:?}"
    );
    assert_eq!(bad.payload, "not json {", "kept, to be parked as it was");
    assert_eq!(bad.event_type(), None);

    let e = &got[&after];
    assert_eq!(e.header(DECODE_ERROR), None, "{e:?}");
    assert_eq!(e.event_type(), Some("ShipmentDelivered"));

    let e = &got[&untyped];
    assert_eq!(
        e.header(DECODE_ERROR),
        None,
        "no type is not an error: {e:?}"
    );
    assert_eq!(e.event_type(), None);
    assert_eq!(
        e.key,
        format!("{PLAIN}/{}@{}", untyped.1, untyped.2),
        "no key: the record's position"
    );

    // Another group reads the very same records: the same envelopes, ids included, so a
    // redelivery is recognised as one.
    let mut again = t.subscribe("again", &topics).await.expect("subscribed");
    let reread = poll_positions(&mut again, &expected, "plain JSON records, group again").await;
    again.close().await;
    for position in &expected {
        assert_eq!(
            reread[position], got[position],
            "read again at {position:?}"
        );
    }
}

/// One subscription on A, B and C: each topic's records are read in that topic's format.
/// The very same bytes (an Eventuate envelope with Debezium's headers) on each topic become
/// three different envelopes, and each topic's own records decode as they should; a
/// Debezium record on the Eventuate topic is not read as Debezium's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_topic_of_a_subscription_is_read_in_its_own_format() {
    let t = transport("mixed", 1).await;
    let foreign = Foreign::new(&t);
    let base = hour_ago();
    let at = |n: i64| base + n;
    let eventuate_id = "0000018c5e4a3b2c-0242ac1200050000";
    let destination = t.config().topics.cluster_name(EVENTUATE);
    let eventuate_value = format!(
        r#"{{"payload":"{{\"orderId\":\"o-1\"}}","headers":{{"ID":"{eventuate_id}","PARTITION_ID":"o-1","DESTINATION":"{destination}","event-type":"com.example.order.OrderCreatedEvent","event-aggregate-type":"com.example.order.Order","event-aggregate-id":"o-1","DATE":"Tue, 15 Nov 1994 08:12:31 GMT"}}}}"#
    );
    let debezium_headers: [(&str, &[u8]); 2] = [
        ("id", b"6f1d2c1e-0000-4000-8000-0000000000b1"),
        ("eventType", b"OrderCreated"),
    ];
    let mut same_bytes = BTreeMap::new();
    for (n, topic) in [DEBEZIUM, PLAIN, EVENTUATE].into_iter().enumerate() {
        let position = foreign
            .send(
                topic,
                Some(b"o-1"),
                eventuate_value.as_bytes(),
                &debezium_headers,
                at(n as i64),
            )
            .await;
        same_bytes.insert(topic, position);
    }
    let debezium_own = foreign
        .send(
            DEBEZIUM,
            Some(br#""o-2""#),
            br#""{\"orderId\":\"o-2\"}""#,
            &debezium_headers,
            at(3),
        )
        .await;
    let plain_own = foreign
        .send(
            PLAIN,
            Some(b"s-2"),
            br#"{"type":"ShipmentCreated","orderId":"o-2"}"#,
            &[],
            at(4),
        )
        .await;
    let debezium_on_eventuate = foreign
        .send(
            EVENTUATE,
            Some(br#""o-2""#),
            br#""{\"orderId\":\"o-2\"}""#,
            &debezium_headers,
            at(5),
        )
        .await;

    let topics = [DEBEZIUM, PLAIN, EVENTUATE].map(str::to_owned);
    let mut s = t.subscribe("view", &topics).await.expect("subscribed");
    let mut expected: Vec<Position> = same_bytes.values().cloned().collect();
    expected.extend([
        debezium_own.clone(),
        plain_own.clone(),
        debezium_on_eventuate.clone(),
    ]);
    let got = poll_positions(&mut s, &expected, "records of A, B and C").await;
    s.close().await;
    for (position, e) in &got {
        assert_eq!(e.topic, position.0, "{e:?}");
    }

    // C, not listed: Eventuate's envelope, as tramline always read it.
    let e = &got[&same_bytes[EVENTUATE]];
    assert_eq!(e.header(DECODE_ERROR), None, "{e:?}");
    assert_eq!(e.id, Envelope::id_for(eventuate_id));
    assert_eq!(
        e.header(eventuate::ID),
        Some(eventuate_id),
        "a non-UUID id kept"
    );
    assert_eq!(e.key, "o-1");
    assert_eq!(e.payload, r#"{"orderId":"o-1"}"#);
    assert_eq!(e.event_type(), Some("com.example.order.OrderCreatedEvent"));
    assert_eq!(
        e.header(eventuate::DESTINATION),
        None,
        "moved into the topic"
    );
    assert_eq!(
        e.header(eventuate::PARTITION_ID),
        None,
        "moved into the key"
    );
    assert_eq!(
        e.header(eventuate::DATE),
        Some("Tue, 15 Nov 1994 08:12:31 GMT"),
        "the sender's DATE kept"
    );
    assert_eq!(e.created_at_ms, at(2));

    // A: the same bytes as Debezium's router: the whole value is the payload, id and type
    // from the headers.
    let e = &got[&same_bytes[DEBEZIUM]];
    assert_eq!(e.header(DECODE_ERROR), None, "{e:?}");
    assert_eq!(
        e.id,
        Envelope::id_for("6f1d2c1e-0000-4000-8000-0000000000b1")
    );
    assert_eq!(e.event_type(), Some("OrderCreated"));
    assert_eq!(json(&e.payload), json(&eventuate_value));

    // B: the same bytes as plain JSON: the whole value, no `type` field so no type, an id of
    // its own position.
    let e = &got[&same_bytes[PLAIN]];
    assert_eq!(e.header(DECODE_ERROR), None, "{e:?}");
    assert_eq!(e.event_type(), None);
    assert_eq!(json(&e.payload), json(&eventuate_value));
    assert_ne!(e.id, Envelope::id_for(eventuate_id));
    assert_ne!(
        e.id,
        Envelope::id_for("6f1d2c1e-0000-4000-8000-0000000000b1")
    );

    let e = &got[&debezium_own];
    assert_eq!(e.header(DECODE_ERROR), None, "{e:?}");
    assert_eq!(e.key, "o-2");
    assert_eq!(json(&e.payload), json(r#"{"orderId":"o-2"}"#));

    let e = &got[&plain_own];
    assert_eq!(e.header(DECODE_ERROR), None, "{e:?}");
    assert_eq!(e.event_type(), Some("ShipmentCreated"));

    // A Debezium record on C is no Eventuate envelope: marked, not read by A's format.
    let e = &got[&debezium_on_eventuate];
    assert!(
        e.header(DECODE_ERROR)
            .is_some_and(|why| why.starts_with("not an Eventuate message envelope")),
        "{e:?}"
    );
    assert_eq!(e.event_type(), None);
}
