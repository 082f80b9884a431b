//! `tramline migrate` creates a store's schema on every dialect, and running it again is a
//! no-op.

use std::process::Command;
use tramline_sql::{Db, DbOptions};
use tramline_testkit::{on_every_database, Backend, TestDbs};

fn migrate(url: &str, stores: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tramline"))
        .args(["migrate", "--database-url", url, "--store", stores])
        .output()
        .expect("the tramline binary runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

async fn migrate_creates_every_schema_once(backend: Backend) {
    let dbs = TestDbs::new(backend, "migrate");
    let url = dbs.url("stores").await;
    for _ in 0..2 {
        let (ok, text) = migrate(&url, "order,view,log");
        assert!(ok, "{text}");
        assert!(text.contains("View store: schema up to date"), "{text}");
    }
    let db = Db::connect(&url, &DbOptions::default())
        .await
        .expect("opens");
    for table in [
        "orders",
        "order_status_view",
        "tramline_outbox",
        "tramline_inbox",
        "tramline_log",
    ] {
        let count = db
            .fetch_i64(
                &db.stmt(&format!("SELECT COUNT(*) FROM {table}")),
                "test",
                "count",
            )
            .await
            .unwrap_or_else(|e| panic!("{table} exists: {e}"));
        assert_eq!(count, 0, "{table}");
    }
    db.close().await;
}

on_every_database!(migrate_creates_every_schema_once);

#[test]
fn an_unknown_store_is_refused() {
    let (ok, text) = migrate("sqlite://unused.db", "inventory");
    assert!(!ok);
    assert!(text.contains("inventory"), "{text}");
}
