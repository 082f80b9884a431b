//! The SQLite outbox: commits with the caller's transaction, hands out in commit order.

use tramline_core::ports::Outbox;
use tramline_core::Envelope;
use tramline_sql::sqlite::{self, Schema, SqliteOptions, SqliteOutbox};
use tramline_testkit::TestDir;

async fn outbox(dir: &TestDir) -> SqliteOutbox {
    let pool = sqlite::open(&dir.sqlite("service"), &SqliteOptions::default())
        .await
        .expect("opens");
    sqlite::migrate(&pool, &[Schema::Outbox])
        .await
        .expect("migrates");
    SqliteOutbox::new(pool)
}

fn message(key: &str, n: u32) -> Envelope {
    Envelope::new("order-events", key, format!("{{\"n\":{n}}}"))
}

#[tokio::test]
async fn only_committed_messages_are_handed_out_in_commit_order_until_marked() {
    let dir = TestDir::new("outbox-order");
    let outbox = outbox(&dir).await;
    let pool = sqlite::open(&dir.sqlite("service"), &SqliteOptions::default())
        .await
        .expect("opens");

    let rolled_back = message("a", 0);
    let mut tx = sqlite::begin_write(&pool, "test").await.expect("begin");
    SqliteOutbox::append(&mut tx, std::slice::from_ref(&rolled_back))
        .await
        .expect("append");
    tx.rollback().await.expect("rollback");

    let sent: Vec<Envelope> = (1..=5)
        .map(|n| message(if n % 2 == 0 { "a" } else { "b" }, n))
        .collect();
    for m in &sent {
        let mut tx = sqlite::begin_write(&pool, "test").await.expect("begin");
        SqliteOutbox::append(&mut tx, std::slice::from_ref(m))
            .await
            .expect("append");
        tx.commit().await.expect("commit");
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

#[tokio::test]
async fn a_multi_message_append_keeps_its_order_and_headers() {
    let dir = TestDir::new("outbox-bulk");
    let outbox = outbox(&dir).await;
    let pool = sqlite::open(&dir.sqlite("service"), &SqliteOptions::default())
        .await
        .expect("opens");
    // More than one multi-row statement's worth.
    let sent: Vec<Envelope> = (0..400)
        .map(|n| message(&format!("k{}", n % 7), n).with_header("event-type", "OrderCreated"))
        .collect();
    let mut tx = sqlite::begin_write(&pool, "test").await.expect("begin");
    SqliteOutbox::append(&mut tx, &sent).await.expect("append");
    tx.commit().await.expect("commit");
    let got = outbox.fetch_unpublished(1000).await.expect("fetch");
    assert_eq!(got.messages, sent);
}
