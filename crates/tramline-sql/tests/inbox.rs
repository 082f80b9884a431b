//! The inbox on every dialect: two transactions claiming the same message id at once never
//! both apply it. On PostgreSQL the second's `INSERT … ON CONFLICT DO NOTHING RETURNING`
//! waits on the first's key and, once the first commits, does not return the id: no retry.
//! On MariaDB the second waits on the first's key, then fails with a transient conflict and
//! its retry sees the id as seen (no rows-affected counting, which MariaDB reports differently
//! for ignored, updated and unchanged rows). On SQLite the second cannot begin until the first
//! commits.

use std::time::Duration;
use tramline_core::{Envelope, Record, RetryCause};
use tramline_sql::{migrate, Db, DbOptions, Inbox, Schema, SqlError};
use tramline_testkit::{on_every_database, Backend, TestDbs};

fn record(n: i64) -> Record {
    Record {
        envelope: Envelope::new("t", "k", n.to_string()),
        partition: 0,
        offset: n,
    }
}

/// Claims `records` in a transaction of its own, retrying conflicts; returns the claim flags
/// and the conflicts met.
async fn claim_with_retry(db: &Db, inbox: &Inbox, records: &[Record]) -> (Vec<bool>, usize) {
    let mut conflicts = 0;
    loop {
        let mut tx = db.begin("test").await.expect("begin");
        match inbox.claim(&mut tx, records).await {
            Ok(fresh) => {
                tx.commit("test").await.expect("commit");
                return (fresh, conflicts);
            }
            Err(e) if e.retry_cause() == Some(RetryCause::Conflict) => {
                conflicts += 1;
                assert!(conflicts < 10, "conflicts do not resolve: {e}");
            }
            Err(e) => panic!("unexpected: {e}"),
        }
    }
}

async fn a_message_claimed_twice_at_once_is_applied_once(backend: Backend) {
    let dbs = TestDbs::new(backend, "inbox-race");
    let url = dbs.url("consumer").await;
    let db = Db::connect(&url, &DbOptions::default())
        .await
        .expect("opens");
    migrate(&db, &[Schema::Inbox]).await.expect("migrates");
    // A second pool: on SQLite, the first pool's one connection is held by `first`.
    let other = Db::connect(&url, &DbOptions::default())
        .await
        .expect("opens");
    let inbox = Inbox::new("view");
    let (a, b, c) = (record(1), record(2), record(3));

    let mut first = db.begin("test").await.expect("begin");
    let fresh = inbox
        .claim(&mut first, &[a.clone(), b.clone(), b.clone()])
        .await
        .expect("claims");
    assert_eq!(
        fresh,
        [true, true, false],
        "a copy inside one batch is not new"
    );

    // The second claim of b (with c) runs while the first transaction is open.
    let second = tokio::spawn({
        let (inbox, other, batch) = (inbox.clone(), other.clone(), vec![b.clone(), c.clone()]);
        async move { claim_with_retry(&other, &inbox, &batch).await }
    });
    // It cannot finish while `first` holds b: it waits for the lock (or for the write lock
    // on SQLite).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "the second claim waited for the first"
    );
    first.commit("test").await.expect("commit");

    let (fresh, conflicts) = second.await.expect("no panic");
    assert_eq!(fresh, [false, true], "b was the first's; c is new");
    match backend {
        Backend::MariaDb => assert!(
            conflicts >= 1,
            "the server raised the key conflict, retried"
        ),
        _ => assert_eq!(conflicts, 0, "the waiting insert skipped the id, no retry"),
    }
    let mut tx = db.begin("test").await.expect("begin");
    let again = inbox.claim(&mut tx, &[a, b, c]).await.expect("claims");
    assert_eq!(
        again,
        [false, false, false],
        "every id claimed exactly once"
    );
}

async fn a_duplicate_outside_the_inbox_is_not_a_conflict(backend: Backend) {
    // Only the inbox turns a key error into a retryable conflict; a view's duplicate key (the
    // seed's bug) stays a permanent error.
    let dbs = TestDbs::new(backend, "inbox-scope");
    let db = Db::connect(&dbs.url("db").await, &DbOptions::default())
        .await
        .expect("opens");
    db.execute(
        &db.stmt("CREATE TABLE v (id INTEGER PRIMARY KEY)"),
        "test",
        "ddl",
    )
    .await
    .expect("table");
    let insert = db.stmt("INSERT INTO v (id) VALUES (1)");
    db.execute(&insert, "view", "insert").await.expect("first");
    let err: SqlError = db
        .execute(&insert, "view", "insert")
        .await
        .expect_err("duplicate");
    assert!(err.is_duplicate());
    assert_eq!(err.retry_cause(), None);
}

on_every_database!(
    a_message_claimed_twice_at_once_is_applied_once,
    a_duplicate_outside_the_inbox_is_not_a_conflict,
);
