//! The outbox on every dialect and in both table layouts: commits with the caller's
//! transaction, hands out what committed, and never loses a message that commits after a
//! later one. In Eventuate's `message` layout, rows an Eventuate service wrote are published
//! unchanged, and rows tramline writes are what Eventuate's CDC expects.

use std::collections::BTreeMap;
use tramline_core::envelope::{AGGREGATE_ID, AGGREGATE_TYPE, EVENT_TYPE};
use tramline_core::eventuate::{self, EventuateMessage};
use tramline_core::ports::{Outbox, Pending};
use tramline_core::topics::TopicNames;
use tramline_core::Envelope;
use tramline_sql::{migrate, Db, DbOptions, OutboxLayout, SqlOutbox};
use tramline_testkit::{on_every_database, Backend, TestDbs};

async fn outbox_in(dbs: &TestDbs, layout: OutboxLayout) -> (SqlOutbox, Db) {
    let db = Db::connect(&dbs.url("service").await, &DbOptions::default())
        .await
        .expect("opens");
    migrate(&db, &[layout.schema()]).await.expect("migrates");
    (SqlOutbox::with_layout(db.clone(), layout), db)
}

async fn outbox(dbs: &TestDbs) -> (SqlOutbox, Db) {
    outbox_in(dbs, OutboxLayout::Tramline).await
}

fn message(key: &str, n: u32) -> Envelope {
    Envelope::new("order-events", key, format!("{{\"n\":{n}}}"))
}

async fn only_committed_messages_are_handed_out_in_commit_order_until_marked(backend: Backend) {
    committed_messages_in_order(backend, OutboxLayout::Tramline).await;
}

async fn the_eventuate_layout_hands_out_committed_messages_in_order_until_marked(backend: Backend) {
    committed_messages_in_order(backend, OutboxLayout::Eventuate).await;
}

async fn committed_messages_in_order(backend: Backend, layout: OutboxLayout) {
    let dbs = TestDbs::new(backend, "outbox-order");
    let (outbox, db) = outbox_in(&dbs, layout).await;

    let rolled_back = message("a", 0);
    let mut tx = db.begin("test").await.expect("begin");
    outbox
        .append(&mut tx, std::slice::from_ref(&rolled_back))
        .await
        .expect("append");
    drop(tx); // rolled back

    let sent: Vec<Envelope> = (1..=5)
        .map(|n| message(if n % 2 == 0 { "a" } else { "b" }, n))
        .collect();
    for m in &sent {
        let mut tx = db.begin("test").await.expect("begin");
        outbox
            .append(&mut tx, std::slice::from_ref(m))
            .await
            .expect("append");
        tx.commit("test").await.expect("commit");
    }
    assert_eq!(outbox.backlog().await.expect("backlog"), 5);

    let first = outbox.fetch_unpublished(3).await.expect("fetch");
    assert_eq!(
        first.messages,
        sent[..3].to_vec(),
        "commit order, nothing rolled back"
    );
    outbox.mark_published(&first).await.expect("mark");
    let rest = outbox.fetch_unpublished(10).await.expect("fetch");
    assert_eq!(rest.messages, sent[3..].to_vec());
    outbox.mark_published(&rest).await.expect("mark");
    assert!(outbox
        .fetch_unpublished(10)
        .await
        .expect("fetch")
        .is_empty());
    assert_eq!(outbox.backlog().await.expect("backlog"), 0);
}

async fn a_multi_message_append_keeps_its_order_and_headers(backend: Backend) {
    let dbs = TestDbs::new(backend, "outbox-bulk");
    let (outbox, db) = outbox(&dbs).await;
    // More than one multi-row statement's worth.
    let sent: Vec<Envelope> = (0..400)
        .map(|n| message(&format!("k{}", n % 7), n).with_header("event-type", "OrderCreated"))
        .collect();
    let mut tx = db.begin("test").await.expect("begin");
    outbox.append(&mut tx, &sent).await.expect("append");
    tx.commit("test").await.expect("commit");
    let got = outbox.fetch_unpublished(1000).await.expect("fetch");
    assert_eq!(got.messages, sent);
}

async fn a_message_committed_after_a_later_one_is_still_published(backend: Backend) {
    let dbs = TestDbs::new(backend, "outbox-late-commit");
    let (outbox, db) = outbox(&dbs).await;
    let (early, late) = (message("a", 1), message("b", 2));
    // `early` takes the lower seq but does not commit yet.
    let mut first = db.begin("test").await.expect("begin");
    outbox
        .append(&mut first, std::slice::from_ref(&early))
        .await
        .expect("append");
    if backend == Backend::Sqlite {
        // seq is assigned under SQLite's one write lock: no second writer can even begin
        // until the first commits, so seq order is commit order there.
        let impatient = DbOptions {
            busy_timeout: std::time::Duration::ZERO,
            ..DbOptions::default()
        };
        let other = Db::connect(&dbs.url("service").await, &impatient)
            .await
            .expect("opens");
        let err = other.begin("test").await.expect_err("the lock is held");
        assert!(err.is_transient(), "{err}");
        first.commit("test").await.expect("commit");
        let batch = outbox.fetch_unpublished(10).await.expect("fetch");
        assert_eq!(batch.messages, vec![early]);
        return;
    }
    let mut second = db.begin("test").await.expect("begin");
    outbox
        .append(&mut second, std::slice::from_ref(&late))
        .await
        .expect("append");
    second.commit("test").await.expect("commit");
    // The relay sees only the later seq and publishes it...
    let batch = outbox.fetch_unpublished(10).await.expect("fetch");
    assert_eq!(batch.messages, vec![late]);
    outbox.mark_published(&batch).await.expect("mark");
    // ...and the earlier seq, committed afterwards, is not skipped as "already passed".
    first.commit("test").await.expect("commit");
    let batch = outbox.fetch_unpublished(10).await.expect("fetch");
    assert_eq!(batch.messages, vec![early]);
    outbox.mark_published(&batch).await.expect("mark");
    assert_eq!(outbox.backlog().await.expect("backlog"), 0);
}

/// A row as an Eventuate Tram Java service writes it: an Eventuate id, its own DATE.
async fn an_eventuate_services_row_is_published_unchanged(backend: Backend) {
    let dbs = TestDbs::new(backend, "outbox-eventuate-in");
    let (outbox, db) = outbox_in(&dbs, OutboxLayout::Eventuate).await;
    let id = "0000018f2c4e9a3b-0242ac1300090000";
    let headers = format!(
        r#"{{"PARTITION_ID":"42","event-aggregate-type":"Order","DATE":"Tue, 15 Nov 1994 08:12:31 GMT","event-aggregate-id":"42","event-type":"OrderCreated","DESTINATION":"Order","ID":"{id}"}}"#
    );
    let mut tx = db.begin("test").await.expect("begin");
    let mut insert = tx.stmt(
        "INSERT INTO message (id, destination, headers, payload, published, creation_time) VALUES (",
    );
    insert
        .bind(id)
        .push(", ")
        .bind("Order")
        .push(", ")
        .bind(headers.clone())
        .push(", ")
        .bind(r#"{"orderId":42}"#)
        .push(", 0, ")
        .bind(784_887_151_000i64)
        .push(")");
    tx.execute(&insert, "test", "insert").await.expect("insert");
    tx.commit("test").await.expect("commit");

    let original: BTreeMap<String, String> = serde_json::from_str(&headers).expect("headers");
    // Read by a relay whose transport prefixes its topics, or renames one onto "Order": the
    // row goes to "Order" either way, with the headers it was written with.
    let mut renamed = TopicNames::default();
    renamed.rename("order-events", "Order");
    let namings = [
        (TopicNames::default(), "Order"),
        (TopicNames::with_prefix("bars."), "Order"),
        (renamed, "order-events"),
    ];
    for (names, topic) in namings {
        let outbox =
            SqlOutbox::with_layout(db.clone(), OutboxLayout::Eventuate).with_topics(names.clone());
        let batch = outbox.fetch_unpublished(10).await.expect("fetch");
        assert_eq!(batch.messages.len(), 1);
        let e = &batch.messages[0];
        assert_eq!(
            (e.topic.as_str(), e.key.as_str()),
            (topic, "42"),
            "{names:?}"
        );
        assert_eq!(e.payload, r#"{"orderId":42}"#);
        assert_eq!(e.created_at_ms, 784_887_151_000);
        assert_eq!(e.event_type(), Some("OrderCreated"));
        let destination = EventuateMessage::destination_of(e, &names);
        assert_eq!(destination, "Order", "{names:?}");
        let again = EventuateMessage::from_envelope(e, &destination);
        assert_eq!(again.headers, original, "published unchanged ({names:?})");
        assert_eq!(again.payload, r#"{"orderId":42}"#);
    }
    let batch = outbox.fetch_unpublished(10).await.expect("fetch");
    outbox.mark_published(&batch).await.expect("mark");
    let published = db.stmt("SELECT COUNT(*) FROM message WHERE published = 1");
    assert_eq!(
        db.fetch_i64(&published, "test", "count")
            .await
            .expect("count"),
        1
    );
    assert_eq!(outbox.backlog().await.expect("backlog"), 0);
}

/// What Eventuate's CDC reads from a row tramline wrote.
async fn rows_tramline_writes_are_what_eventuates_cdc_reads(backend: Backend) {
    let dbs = TestDbs::new(backend, "outbox-eventuate-out");
    let (outbox, db) = outbox_in(&dbs, OutboxLayout::Eventuate).await;
    let m = message("order-7", 1)
        .with_header(EVENT_TYPE, "OrderCreated")
        .with_header(AGGREGATE_TYPE, "Order")
        .with_header(AGGREGATE_ID, "order-7");
    let mut tx = db.begin("test").await.expect("begin");
    outbox
        .append(&mut tx, std::slice::from_ref(&m))
        .await
        .expect("append");
    tx.commit("test").await.expect("commit");

    let d = db.dialect();
    let read = db.stmt(&format!(
        "SELECT {} FROM message",
        d.json_tuples(&[
            "id",
            "destination",
            "headers",
            "payload",
            "published",
            "creation_time"
        ])
    ));
    let rows: Vec<(String, String, String, String, i64, i64)> =
        db.fetch_json(&read, "test", "read").await.expect("read");
    assert_eq!(rows.len(), 1);
    let (id, destination, headers, payload, published, creation_time) = &rows[0];
    let headers: BTreeMap<String, String> = serde_json::from_str(headers).expect("JSON headers");
    assert_eq!(id, &m.id.to_string());
    assert_eq!(destination, "order-events");
    assert_eq!(headers["ID"], m.id.to_string());
    assert_eq!(headers["PARTITION_ID"], "order-7");
    assert_eq!(headers["DESTINATION"], "order-events");
    assert_eq!(headers["event-type"], "OrderCreated");
    assert_eq!(headers["event-aggregate-type"], "Order");
    assert_eq!(headers["event-aggregate-id"], "order-7");
    assert_eq!(
        eventuate::parse_http_date(&headers["DATE"]),
        Some(m.created_at_ms / 1000 * 1000)
    );
    assert_eq!(payload, &m.payload);
    assert_eq!((*published, *creation_time), (0, m.created_at_ms));
}

/// With a transport that prefixes and renames topics, the destination tramline writes is the
/// topic's name on the cluster (where Eventuate's CDC publishes it), and the relay maps it
/// back to tramline's topic.
async fn rows_tramline_writes_name_the_cluster_topic(backend: Backend) {
    let dbs = TestDbs::new(backend, "outbox-eventuate-names");
    let (_, db) = outbox_in(&dbs, OutboxLayout::Eventuate).await;
    let mut names = TopicNames::with_prefix("bars.");
    names.rename("payment-events", "com.example.payment.Payment");
    let outbox =
        SqlOutbox::with_layout(db.clone(), OutboxLayout::Eventuate).with_topics(names.clone());
    let order = message("order-7", 1);
    let payment = Envelope {
        topic: "payment-events".into(),
        ..message("order-7", 2)
    };
    let sent = [order, payment];
    let mut tx = db.begin("test").await.expect("begin");
    outbox.append(&mut tx, &sent).await.expect("append");
    tx.commit("test").await.expect("commit");

    let read = db.stmt(&format!(
        "SELECT {} FROM message",
        db.dialect().json_tuples(&["id", "destination", "headers"])
    ));
    let mut rows: Vec<(String, String, String)> =
        db.fetch_json(&read, "test", "read").await.expect("read");
    rows.sort_unstable();
    let destinations: Vec<(&str, String)> = rows
        .iter()
        .map(|(_, d, h)| {
            let h: BTreeMap<String, String> = serde_json::from_str(h).expect("JSON headers");
            (d.as_str(), h["DESTINATION"].clone())
        })
        .collect();
    assert_eq!(
        destinations,
        [
            ("bars.order-events", "bars.order-events".to_owned()),
            (
                "com.example.payment.Payment",
                "com.example.payment.Payment".to_owned()
            ),
        ]
    );
    let batch = outbox.fetch_unpublished(10).await.expect("fetch");
    assert_eq!(batch.messages, sent, "read back as written");
    let on_the_cluster: Vec<String> = batch
        .messages
        .iter()
        .map(|e| EventuateMessage::destination_of(e, &names))
        .collect();
    assert_eq!(
        on_the_cluster,
        ["bars.order-events", "com.example.payment.Payment"]
    );
}

async fn pending_counts_the_unpublished_rows_and_finds_the_oldest(backend: Backend) {
    pending_in(backend, OutboxLayout::Tramline).await;
}

async fn pending_counts_the_unpublished_rows_of_the_eventuate_layout(backend: Backend) {
    pending_in(backend, OutboxLayout::Eventuate).await;
}

async fn pending_in(backend: Backend, layout: OutboxLayout) {
    let dbs = TestDbs::new(backend, "outbox-pending");
    let (outbox, db) = outbox_in(&dbs, layout).await;
    let pending = |count, oldest| {
        Some(Pending {
            count,
            oldest_created_at_ms: oldest,
        })
    };
    assert_eq!(outbox.pending().await.expect("pending"), pending(0, None));

    let at = |n: u32, ms: i64| Envelope {
        created_at_ms: ms,
        ..message("a", n)
    };
    let mut tx = db.begin("test").await.expect("begin");
    outbox.append(&mut tx, &[at(0, 500)]).await.expect("append");
    drop(tx); // rolled back: not pending
              // Created in id order; the creation times are not in insertion order.
    let sent = [at(1, 2_000), at(2, 1_000), at(3, 3_000)];
    let mut tx = db.begin("test").await.expect("begin");
    outbox.append(&mut tx, &sent).await.expect("append");
    tx.commit("test").await.expect("commit");
    assert_eq!(
        outbox.pending().await.expect("pending"),
        pending(3, Some(1_000))
    );

    let first_two = outbox.fetch_unpublished(2).await.expect("fetch");
    assert_eq!(first_two.messages, sent[..2].to_vec());
    outbox.mark_published(&first_two).await.expect("mark");
    assert_eq!(
        outbox.pending().await.expect("pending"),
        pending(1, Some(3_000))
    );
    let rest = outbox.fetch_unpublished(10).await.expect("fetch");
    outbox.mark_published(&rest).await.expect("mark");
    assert_eq!(outbox.pending().await.expect("pending"), pending(0, None));
}

on_every_database!(
    pending_counts_the_unpublished_rows_and_finds_the_oldest,
    pending_counts_the_unpublished_rows_of_the_eventuate_layout,
    the_eventuate_layout_hands_out_committed_messages_in_order_until_marked,
    an_eventuate_services_row_is_published_unchanged,
    rows_tramline_writes_are_what_eventuates_cdc_reads,
    rows_tramline_writes_name_the_cluster_topic,
    a_message_committed_after_a_later_one_is_still_published,
    only_committed_messages_are_handed_out_in_commit_order_until_marked,
    a_multi_message_append_keeps_its_order_and_headers,
);
