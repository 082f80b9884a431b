//! The idempotency store on every dialect: a record exists exactly when its transaction
//! committed, one key is recorded once even by two transactions at once (the second fails with
//! a duplicate-key conflict after the first commits), and purging removes only old records.

use std::time::Duration;
use tramline_core::envelope::now_ms;
use tramline_core::RetryCause;
use tramline_sql::{migrate, Db, DbOptions, IdempotencyRecord, IdempotencyStore, Schema};
use tramline_testkit::{on_every_database, Backend, TestDbs};

fn record(key: &str, created_at_ms: i64) -> IdempotencyRecord {
    IdempotencyRecord {
        key: key.to_owned(),
        request: format!("POST /orders\n{{\"n\":\"{key}\"}}"),
        status: 201,
        location: Some(format!("/orders/{key}")),
        body: r#"{"orderId":"o-1","status":"PENDING"}"#.to_owned(),
        created_at_ms,
    }
}

async fn open(dbs: &TestDbs) -> (String, Db) {
    let url = dbs.url("service").await;
    let db = Db::connect(&url, &DbOptions::default())
        .await
        .expect("opens");
    migrate(&db, &[Schema::Idempotency])
        .await
        .expect("migrates");
    (url, db)
}

async fn a_record_exists_only_if_its_transaction_committed(backend: Backend) {
    let dbs = TestDbs::new(backend, "idempotency-tx");
    let (_, db) = open(&dbs).await;
    let store = IdempotencyStore::new(db.clone());
    // The longest key allowed, in visible ASCII: fits the key column on every dialect.
    let key: String = (0..255u8).map(|i| char::from(b'!' + i % 94)).collect();
    let r = record(&key, now_ms());

    let mut tx = db.begin("test").await.expect("begin");
    store.insert(&mut tx, &r).await.expect("inserts");
    drop(tx); // rolled back
    assert_eq!(store.find(&key).await.expect("looks up"), None);

    let mut tx = db.begin("test").await.expect("begin");
    store.insert(&mut tx, &r).await.expect("inserts");
    tx.commit("test").await.expect("commits");
    assert_eq!(store.find(&key).await.expect("looks up"), Some(r.clone()));

    let none = IdempotencyRecord {
        key: "no-location".into(),
        location: None,
        ..r
    };
    let mut tx = db.begin("test").await.expect("begin");
    store.insert(&mut tx, &none).await.expect("inserts");
    tx.commit("test").await.expect("commits");
    assert_eq!(
        store.find("no-location").await.expect("looks up"),
        Some(none)
    );
    assert_eq!(store.find("other").await.expect("looks up"), None);
}

async fn a_key_recorded_twice_at_once_commits_once(backend: Backend) {
    let dbs = TestDbs::new(backend, "idempotency-race");
    let (url, db) = open(&dbs).await;
    // A second pool: on SQLite the first pool's one connection is held by `first`.
    let other = Db::connect(&url, &DbOptions::default())
        .await
        .expect("opens");
    let store = IdempotencyStore::new(db.clone());
    let mut first = db.begin("test").await.expect("begin");
    store
        .insert(&mut first, &record("k", now_ms()))
        .await
        .expect("inserts");

    let second = tokio::spawn({
        let store = IdempotencyStore::new(other.clone());
        async move {
            let mut tx = other.begin("test").await?;
            let mut r = record("k", now_ms());
            r.body = "the loser's".into();
            store.insert(&mut tx, &r).await?;
            tx.commit("test").await
        }
    });
    // It cannot finish while `first` holds the key (or SQLite's write lock).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "the second insert waited");
    first.commit("test").await.expect("commits");

    let err = second
        .await
        .expect("no panic")
        .expect_err("the second insert fails on the key");
    assert!(err.is_duplicate(), "{err}");
    assert_eq!(err.retry_cause(), Some(RetryCause::Conflict), "{err}");
    let found = store.find("k").await.expect("looks up").expect("a record");
    assert_ne!(found.body, "the loser's", "the first one's record stays");
}

async fn purging_removes_only_records_past_the_age(backend: Backend) {
    let dbs = TestDbs::new(backend, "idempotency-purge");
    let (_, db) = open(&dbs).await;
    let store = IdempotencyStore::new(db.clone());
    let day_ms = 24 * 60 * 60 * 1000;
    let mut tx = db.begin("test").await.expect("begin");
    for r in [
        record("old", now_ms() - day_ms - 60_000),
        record("older", now_ms() - 2 * day_ms),
        record("fresh", now_ms() - 60_000),
    ] {
        store.insert(&mut tx, &r).await.expect("inserts");
    }
    tx.commit("test").await.expect("commits");

    let purged = store
        .purge_older_than(IdempotencyStore::DEFAULT_RETENTION)
        .await
        .expect("purges");
    assert_eq!(purged, 2);
    assert_eq!(store.find("old").await.expect("looks up"), None);
    assert_eq!(store.find("older").await.expect("looks up"), None);
    assert!(store.find("fresh").await.expect("looks up").is_some());
    assert_eq!(
        store
            .purge_older_than(IdempotencyStore::DEFAULT_RETENTION)
            .await
            .expect("purges"),
        0
    );
    assert_eq!(
        store
            .purge_older_than(Duration::ZERO)
            .await
            .expect("purges"),
        1
    );
}

on_every_database!(
    a_record_exists_only_if_its_transaction_committed,
    a_key_recorded_twice_at_once_commits_once,
    purging_removes_only_records_past_the_age,
);
