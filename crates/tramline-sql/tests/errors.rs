//! Errors are classified from the driver's codes, on every dialect: contention (SQLite busy,
//! MariaDB and PostgreSQL deadlocks) is transient with its cause, a key violation is a
//! permanent duplicate, and every error says which store and operation failed.

use std::time::Duration;
use tramline_core::RetryCause;
use tramline_sql::{Db, DbOptions, Tx};
use tramline_testkit::{on_every_database, Backend, TestDbs};

async fn db_with_table(dbs: &TestDbs, options: &DbOptions) -> Db {
    let db = Db::connect(&dbs.url("db").await, options)
        .await
        .expect("opens");
    for sql in [
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)",
        "INSERT INTO t (id, v) VALUES (1, 0), (2, 0)",
    ] {
        db.execute(&db.stmt(sql), "test", "set up")
            .await
            .expect("set up");
    }
    db
}

async fn update(tx: &mut Tx, id: i64) -> Result<u64, tramline_sql::SqlError> {
    let mut stmt = tx.stmt("UPDATE t SET v = v + 1 WHERE id = ");
    stmt.bind(id);
    tx.execute(&stmt, "view", "update").await
}

async fn contention_is_transient_with_its_cause(backend: Backend) {
    let dbs = TestDbs::new(backend, "errors-contention");
    if backend == Backend::Sqlite {
        // One writer at a time: a second writer that will not wait gets "busy".
        let impatient = DbOptions {
            busy_timeout: Duration::ZERO,
            ..DbOptions::default()
        };
        let holder = db_with_table(&dbs, &DbOptions::default()).await;
        let other = Db::connect(&dbs.url("db").await, &impatient)
            .await
            .expect("opens");
        let _held = holder.begin("holder").await.expect("lock taken");
        let err = other.begin("outbox").await.expect_err("lock is held");
        assert_eq!(err.retry_cause(), Some(RetryCause::Busy), "{err}");
        assert!(
            err.to_string()
                .starts_with("outbox: begin transaction failed"),
            "{err}"
        );
        let core: tramline_core::Error = err.into();
        assert_eq!(core.retry_cause(), Some(RetryCause::Busy));
        return;
    }
    // Row locks: two transactions taking two rows in opposite orders deadlock; the server
    // picks a victim, which must come back as a transient deadlock.
    let db = db_with_table(&dbs, &DbOptions::default()).await;
    let mut first = db.begin("test").await.expect("begin");
    let mut second = db.begin("test").await.expect("begin");
    update(&mut first, 1).await.expect("row 1 locked");
    update(&mut second, 2).await.expect("row 2 locked");
    let cross = |mut tx: Tx, id| async move {
        // The victim's transaction is dropped (rolled back) on return, freeing the other.
        update(&mut tx, id).await?;
        tx.commit("test").await
    };
    let a = tokio::spawn(cross(first, 2));
    let b = tokio::spawn(cross(second, 1));
    let outcomes = [a.await.expect("no panic"), b.await.expect("no panic")];
    let errors: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert_eq!(errors.len(), 1, "exactly one victim: {outcomes:?}");
    let err = errors[0];
    assert_eq!(err.retry_cause(), Some(RetryCause::Deadlock), "{err}");
    assert!(!err.is_duplicate());
    assert!(err.to_string().starts_with("view: update failed"), "{err}");
}

async fn a_key_violation_is_a_permanent_duplicate(backend: Backend) {
    let dbs = TestDbs::new(backend, "errors-duplicate");
    let db = db_with_table(&dbs, &DbOptions::default()).await;
    let err = db
        .execute(
            &db.stmt("INSERT INTO t (id, v) VALUES (1, 0)"),
            "view",
            "insert",
        )
        .await
        .expect_err("duplicate key");
    assert!(err.is_duplicate(), "{err}");
    assert!(!err.is_transient());
    assert!(err.to_string().starts_with("view: insert failed"), "{err}");
}

/// The messages of an error chain, outermost first.
fn chain(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut messages = vec![e.to_string()];
    let mut cause = e.source();
    while let Some(c) = cause {
        messages.push(c.to_string());
        cause = c.source();
    }
    messages
}

/// A real driver error, carried up through the store, the port's error and a task's failure:
/// each level says its own part once, so a reporter that prints the whole chain (anyhow's
/// `{:#}`, the supervisor's log line) repeats nothing; the store's name was chosen at run time.
async fn an_error_chain_says_each_part_once(backend: Backend) {
    let dbs = TestDbs::new(backend, "errors-chain");
    let db = db_with_table(&dbs, &DbOptions::default()).await;
    let store = format!("read model {}", "t");
    let err = db
        .execute(
            &db.stmt("INSERT INTO t (id, v) VALUES (1, 0)"),
            &store,
            "insert",
        )
        .await
        .expect_err("duplicate key");
    let messages = chain(&err);
    let port: tramline_core::Error = err.into();
    let failed = tramline_core::supervisor::SupervisorError::Failed {
        task: "t consumer".to_owned(),
        source: Box::new(port),
    };
    let levels = chain(&failed);
    assert_eq!(&levels[0], "the t consumer failed");
    assert_eq!(&levels[1], "read model t: insert failed");
    assert_eq!(
        levels[1..],
        messages[..],
        "the port's error keeps the store's chain"
    );
    assert_eq!(
        levels.len(),
        3,
        "task, store, the database's own error: {levels:?}"
    );
    for pair in levels.windows(2) {
        assert!(
            !pair[0].contains(&pair[1]),
            "{:?} repeats its cause {:?}",
            pair[0],
            pair[1]
        );
    }
    let database = &levels[2];
    assert!(
        !database.is_empty() && !database.contains("error returned from database"),
        "{database}"
    );
    let sentence = tramline_core::error::sentence(&failed);
    assert_eq!(sentence.matches(database.as_str()).count(), 1, "{sentence}");
}

#[tokio::test]
async fn an_unsupported_url_is_refused_without_leaking_its_password() {
    let err = Db::connect("oracle://scott:tiger@db/x", &DbOptions::default())
        .await
        .expect_err("not a dialect of ours");
    // The whole chain, as a reporter prints it.
    let message = tramline_core::error::sentence(&err);
    assert!(
        message.contains("unsupported database URL scheme"),
        "{message}"
    );
    assert!(
        !message.contains("tiger"),
        "the password stays secret: {message}"
    );
}

on_every_database!(
    contention_is_transient_with_its_cause,
    a_key_violation_is_a_permanent_duplicate,
    an_error_chain_says_each_part_once,
);
