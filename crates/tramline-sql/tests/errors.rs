//! Errors are classified from the driver's codes: lock contention is transient, a key
//! violation is a duplicate, and both say which store and operation failed.

use std::time::Duration;
use tramline_sql::sqlite::{self, SqliteOptions};
use tramline_sql::SqlError;
use tramline_testkit::TestDir;

#[tokio::test]
async fn a_held_write_lock_is_a_transient_busy_error() {
    let dir = TestDir::new("errors-busy");
    let path = dir.sqlite("db");
    let impatient = SqliteOptions {
        busy_timeout: Duration::ZERO,
        ..SqliteOptions::default()
    };
    let holder = sqlite::open(&path, &SqliteOptions::default())
        .await
        .expect("opens");
    let other = sqlite::open(&path, &impatient).await.expect("opens");
    let _held = sqlite::begin_write(&holder, "holder")
        .await
        .expect("lock taken");
    let err = sqlite::begin_write(&other, "outbox")
        .await
        .expect_err("lock is held");
    assert!(err.is_transient(), "{err}");
    assert!(!err.is_duplicate());
    assert!(
        err.to_string()
            .starts_with("outbox: begin write transaction failed"),
        "{err}"
    );
    let core: tramline_core::Error = err.into();
    assert!(core.is_transient());
}

#[tokio::test]
async fn a_key_violation_is_a_permanent_duplicate() {
    let dir = TestDir::new("errors-duplicate");
    let pool = sqlite::open(&dir.sqlite("db"), &SqliteOptions::default())
        .await
        .expect("opens");
    sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        .execute(&pool)
        .await
        .expect("table");
    sqlx::query("INSERT INTO t VALUES (1)")
        .execute(&pool)
        .await
        .expect("first insert");
    let err = sqlx::query("INSERT INTO t VALUES (1)")
        .execute(&pool)
        .await
        .map_err(SqlError::at("view", "insert"))
        .expect_err("duplicate key");
    assert!(err.is_duplicate(), "{err}");
    assert!(!err.is_transient());
}
