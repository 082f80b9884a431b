//! The outbox on every dialect: commits with the caller's transaction, hands out what
//! committed, and never loses a message that commits after a later one.

use tramline_core::ports::Outbox;
use tramline_core::Envelope;
use tramline_sql::{migrate, Db, DbOptions, Schema, SqlOutbox};
use tramline_testkit::{on_every_database, Backend, TestDbs};

async fn outbox(dbs: &TestDbs) -> (SqlOutbox, Db) {
    let db = Db::connect(&dbs.url("service").await, &DbOptions::default())
        .await
        .expect("opens");
    migrate(&db, &[Schema::Outbox]).await.expect("migrates");
    (SqlOutbox::new(db.clone()), db)
}

fn message(key: &str, n: u32) -> Envelope {
    Envelope::new("order-events", key, format!("{{\"n\":{n}}}"))
}

async fn only_committed_messages_are_handed_out_in_commit_order_until_marked(backend: Backend) {
    let dbs = TestDbs::new(backend, "outbox-order");
    let (outbox, db) = outbox(&dbs).await;

    let rolled_back = message("a", 0);
    let mut tx = db.begin("test").await.expect("begin");
    SqlOutbox::append(&mut tx, std::slice::from_ref(&rolled_back))
        .await
        .expect("append");
    drop(tx); // rolled back

    let sent: Vec<Envelope> = (1..=5)
        .map(|n| message(if n % 2 == 0 { "a" } else { "b" }, n))
        .collect();
    for m in &sent {
        let mut tx = db.begin("test").await.expect("begin");
        SqlOutbox::append(&mut tx, std::slice::from_ref(m))
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
    SqlOutbox::append(&mut tx, &sent).await.expect("append");
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
    SqlOutbox::append(&mut first, std::slice::from_ref(&early))
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
    SqlOutbox::append(&mut second, std::slice::from_ref(&late))
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

on_every_database!(
    a_message_committed_after_a_later_one_is_still_published,
    only_committed_messages_are_handed_out_in_commit_order_until_marked,
    a_multi_message_append_keeps_its_order_and_headers,
);
