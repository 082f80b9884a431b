//! Retention on every dialect: only published outbox rows past the age go, dedupe records
//! past theirs, and the log keeps every record a group has not committed past and, compacted,
//! the newest record of each key — from which a new group still rebuilds every key's state.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tramline_core::offsets::CommitPosition;
use tramline_core::ports::{Outbox, Subscription, Transport};
use tramline_core::relay::{OutboxRelay, RelayConfig};
use tramline_core::{Envelope, Record};
use tramline_sql::retention::{Retention, RetentionPolicy, Table};
use tramline_sql::{migrate, Db, DbOptions, Inbox, OutboxLayout, Schema, SqlLog, SqlOutbox};
use tramline_testkit::{drain, on_every_database, Backend, TestDbs};

/// Everything due at once, in pages of 7 rows so that paging is exercised.
fn due_now(compact_log: bool) -> RetentionPolicy {
    RetentionPolicy {
        outbox: Some(Duration::ZERO),
        inbox: Some(Duration::ZERO),
        log: Some(Duration::ZERO),
        compact_log,
        batch_size: 7,
        interval: Duration::from_secs(1),
    }
}

fn an_hour() -> RetentionPolicy {
    let hour = Some(Duration::from_secs(3600));
    RetentionPolicy {
        outbox: hour,
        inbox: hour,
        log: hour,
        ..due_now(true)
    }
}

async fn db(dbs: &TestDbs, schemas: &[Schema]) -> Db {
    let db = Db::connect(&dbs.url("store").await, &DbOptions::default())
        .await
        .expect("opens");
    migrate(&db, schemas).await.expect("migrates");
    db
}

/// A moment later than every row written so far, on every clock resolution.
async fn later() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}

async fn only_published_outbox_rows_past_the_age_are_removed(backend: Backend) {
    let dbs = TestDbs::new(backend, "retention-outbox");
    for layout in [OutboxLayout::Tramline, OutboxLayout::Eventuate] {
        let db = db(&dbs, &[layout.schema(), Schema::Log]).await;
        let outbox = Arc::new(SqlOutbox::with_layout(db.clone(), layout));
        let messages: Vec<Envelope> = (0..30)
            .map(|n| Envelope::new("t", format!("k{n}"), n.to_string()))
            .collect();
        let mut tx = db.begin("test").await.expect("begin");
        outbox
            .append(&mut tx, &messages[..20])
            .await
            .expect("append");
        tx.commit("test").await.expect("commit");
        let log = Arc::new(
            SqlLog::open(&dbs.url("log").await, &DbOptions::default())
                .await
                .expect("log"),
        );
        log.create_topic("t", 2).await.expect("topic");
        let relay = OutboxRelay::new(Arc::clone(&outbox), log, RelayConfig::default());
        assert_eq!(relay.publish_once().await.expect("publish"), 20);
        let mut tx = db.begin("test").await.expect("begin");
        outbox
            .append(&mut tx, &messages[20..])
            .await
            .expect("append");
        tx.commit("test").await.expect("commit");
        later().await;

        let table = Table::Outbox(layout);
        let kept = Retention::new(db.clone(), "store", [table], an_hour());
        assert_eq!(kept.sweep().await.expect("sweeps").total(), 0);
        let retention = Retention::new(db.clone(), "store", [table], due_now(true));
        let swept = retention.sweep().await.expect("sweeps");
        assert_eq!(swept.deleted[table.name()], 20, "{layout:?}");
        assert_eq!(retention.sizes().await.expect("sizes")[0].rows, 10);
        // The unpublished rows are all still there, and are published as before.
        let left = outbox.fetch_unpublished(100).await.expect("fetch");
        let payloads: Vec<&str> = left.messages.iter().map(|m| m.payload.as_str()).collect();
        let expected: Vec<String> = (20..30).map(|n| n.to_string()).collect();
        assert_eq!(payloads, expected, "{layout:?}");
        assert_eq!(retention.sweep().await.expect("sweeps").total(), 0);
        db.close().await;
    }
}

async fn dedupe_records_past_the_age_are_removed_and_newer_ones_kept(backend: Backend) {
    let dbs = TestDbs::new(backend, "retention-inbox");
    let db = db(&dbs, &[Schema::Inbox]).await;
    let inbox = Inbox::new("c");
    let records: Vec<Record> = (0..50)
        .map(|n| Record {
            envelope: Envelope::new("t", "k", n.to_string()),
            partition: 0,
            offset: n,
        })
        .collect();
    for chunk in records.chunks(8) {
        let mut tx = db.begin("test").await.expect("begin");
        inbox.claim(&mut tx, chunk).await.expect("claims");
        tx.commit("test").await.expect("commit");
    }
    later().await;
    let kept = Retention::new(db.clone(), "store", [Table::Inbox], an_hour());
    assert_eq!(kept.sweep().await.expect("sweeps").total(), 0);
    let retention = Retention::new(db.clone(), "store", [Table::Inbox], due_now(true));
    assert_eq!(retention.sweep().await.expect("sweeps").total(), 50);
    assert_eq!(retention.sizes().await.expect("sizes")[0].rows, 0);
    // Forgotten: the same ids are new again.
    let mut tx = db.begin("test").await.expect("begin");
    let fresh = inbox.claim(&mut tx, &records[..3]).await.expect("claims");
    tx.commit("test").await.expect("commit");
    assert_eq!(fresh, vec![true; 3]);
}

/// Records of the log, per partition, as (offset, key, payload).
async fn stored(db: &Db) -> BTreeMap<i64, Vec<(i64, String, String)>> {
    let stmt = db.stmt(&format!(
        "SELECT {} FROM tramline_log",
        db.dialect()
            .json_tuples(&["part", "log_offset", "msg_key", "payload"])
    ));
    let rows: Vec<(i64, i64, String, String)> =
        db.fetch_json(&stmt, "test", "read").await.expect("reads");
    let mut parts: BTreeMap<i64, Vec<(i64, String, String)>> = BTreeMap::new();
    for (part, offset, key, payload) in rows {
        parts.entry(part).or_default().push((offset, key, payload));
    }
    for records in parts.values_mut() {
        records.sort();
    }
    parts
}

async fn the_log_keeps_what_a_group_has_not_read_and_the_newest_record_of_each_key(
    backend: Backend,
) {
    let dbs = TestDbs::new(backend, "retention-log");
    let url = dbs.url("log").await;
    let log = SqlLog::open(&url, &DbOptions::default())
        .await
        .expect("log");
    log.create_topic("t", 2).await.expect("topic");
    let first: Vec<Envelope> = (0..60)
        .map(|n| Envelope::new("t", format!("k{}", n % 9), format!("v{n}")))
        .collect();
    log.publish(&first).await.expect("publish");
    // Group g reads and commits the first 60 records; 20 more come after.
    let mut sub = log.subscribe("g", &["t".to_owned()]).await.expect("sub");
    let read = drain(&mut sub).await;
    assert_eq!(read.len(), 60);
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for r in &read {
        let at = next.entry(r.partition).or_default();
        *at = (*at).max(r.offset + 1);
    }
    let positions: Vec<CommitPosition> = next
        .into_iter()
        .map(|(partition, next_offset)| CommitPosition {
            topic: "t".to_owned(),
            partition,
            next_offset,
        })
        .collect();
    sub.commit(&positions).await.expect("commit");
    let second: Vec<Envelope> = (60..80)
        .map(|n| Envelope::new("t", format!("k{}", n % 9), format!("v{n}")))
        .collect();
    log.publish(&second).await.expect("publish");
    later().await;
    let db = log.db().clone();
    let before = stored(&db).await;

    let compacting = Retention::new(db.clone(), "log", [Table::Log], due_now(true));
    let swept = compacting.sweep().await.expect("sweeps");
    let after = stored(&db).await;
    let committed: BTreeMap<i64, i64> = positions
        .iter()
        .map(|p| (i64::from(p.partition), p.next_offset))
        .collect();
    let mut expected_deleted = 0;
    for (part, records) in &before {
        let read_below = committed.get(part).copied().unwrap_or(0);
        let newest: BTreeMap<&str, i64> = records
            .iter()
            .map(|(offset, key, _)| (key.as_str(), *offset))
            .collect();
        let kept: Vec<&(i64, String, String)> = records
            .iter()
            .filter(|(offset, key, _)| *offset >= read_below || newest[key.as_str()] == *offset)
            .collect();
        expected_deleted += records.len() - kept.len();
        let left: Vec<&(i64, String, String)> = after[part].iter().collect();
        assert_eq!(left, kept, "partition {part}");
    }
    assert!(
        expected_deleted > 30,
        "the test removes most of the read records"
    );
    assert_eq!(swept.total(), expected_deleted as u64);

    // A new group still finds every key's latest value.
    let mut fresh = log.subscribe("new", &["t".to_owned()]).await.expect("sub");
    let mut latest: BTreeMap<String, String> = BTreeMap::new();
    for r in drain(&mut fresh).await {
        latest.insert(r.envelope.key, r.envelope.payload);
    }
    let mut truth: BTreeMap<String, String> = BTreeMap::new();
    for m in first.iter().chain(&second) {
        truth.insert(m.key.clone(), m.payload.clone());
    }
    assert_eq!(latest, truth);

    // Without compaction everything read goes; nothing unread does.
    let plain = Retention::new(db.clone(), "log", [Table::Log], due_now(false));
    plain.sweep().await.expect("sweeps");
    let after = stored(&db).await;
    for (part, records) in &after {
        let read_below = committed.get(part).copied().unwrap_or(0);
        assert!(records.iter().all(|(offset, _, _)| *offset >= read_below));
        let unread = before[part].iter().filter(|r| r.0 >= read_below).count();
        assert_eq!(records.len(), unread, "partition {part}");
    }
}

on_every_database!(
    only_published_outbox_rows_past_the_age_are_removed,
    dedupe_records_past_the_age_are_removed_and_newer_ones_kept,
    the_log_keeps_what_a_group_has_not_read_and_the_newest_record_of_each_key,
);
