//! The locking reads each dialect writes: a shared lock (MariaDB's `LOCK IN SHARE MODE`, which
//! has no `FOR SHARE`; PostgreSQL's `FOR SHARE`, in a subquery because it refuses a locking
//! clause beside an aggregate) and an exclusive one both hold a concurrent writer of the row
//! until the reading transaction ends, and the locked read returns the row's latest committed
//! value. SQLite needs no clause: its write transaction holds the whole database.

use std::time::Duration;
use tramline_sql::{Db, DbOptions, LockMode, Stmt};
use tramline_testkit::{on_every_database, Backend, TestDbs};

fn locked_read(db: &Db, mode: LockMode) -> Stmt {
    let d = db.dialect();
    let (prefix, suffix) = d.json_select(&d.json_tuples(&["v"]), Some(mode));
    let mut stmt = db.stmt(&prefix);
    stmt.push("t WHERE id = ").bind(1i64).push(&suffix);
    stmt
}

async fn a_locked_read_holds_writers_until_commit(backend: Backend) {
    let dbs = TestDbs::new(backend, "locking");
    let url = dbs.url("db").await;
    let db = Db::connect(&url, &DbOptions::default())
        .await
        .expect("opens");
    for sql in [
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)",
        "INSERT INTO t (id, v) VALUES (1, 0)",
    ] {
        db.execute(&db.stmt(sql), "test", "set up")
            .await
            .expect("set up");
    }
    let writer = Db::connect(&url, &DbOptions::default())
        .await
        .expect("opens");
    for (round, mode) in [LockMode::Share, LockMode::Update].into_iter().enumerate() {
        let mut reader = db.begin("test").await.expect("begin");
        let seen: Vec<(i64,)> = reader
            .fetch_json(&locked_read(&db, mode), "test", "locked read")
            .await
            .expect("the dialect accepts its locking clause");
        assert_eq!(seen, [(round as i64,)], "the latest committed value");
        let write = tokio::spawn({
            let writer = writer.clone();
            async move {
                let mut tx = writer.begin("test").await?;
                tx.execute(
                    &tx.stmt("UPDATE t SET v = v + 1 WHERE id = 1"),
                    "test",
                    "write",
                )
                .await?;
                tx.commit("test").await
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !write.is_finished(),
            "{mode:?}: the writer waits for the reader"
        );
        reader.commit("test").await.expect("commit");
        write
            .await
            .expect("no panic")
            .expect("the writer goes on after the reader's commit");
    }
}

on_every_database!(a_locked_read_holds_writers_until_commit);
