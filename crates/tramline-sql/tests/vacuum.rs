//! The autovacuum stand-in against a real PostgreSQL: a pass vacuums a table of the store's
//! own schema once its dead or inserted rows pass the server's autovacuum thresholds,
//! analyzes one whose changes pass the analyze threshold, does nothing twice, and leaves
//! alone a table whose owner turned autovacuum off for it and every table of another schema.
//! On SQLite and MariaDB it is never needed and only waits to be stopped.

use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tramline_core::telemetry::{VACUUM_RUNS, VACUUM_STAND_IN};
use tramline_sql::vacuum::Action;
use tramline_sql::{Db, DbOptions, Vacuum};
use tramline_testkit::{recorder, wait_until, Backend, TestDbs};

async fn open(dbs: &TestDbs, store: &str) -> Db {
    Db::connect(&dbs.url(store).await, &DbOptions::default())
        .await
        .expect("opens")
}

async fn run(db: &Db, sql: &str) {
    db.execute_raw(sql, "test", "set up")
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// `(last vacuum, last analyze)` of `table` were set, from `pg_stat_user_tables`.
async fn vacuumed_and_analyzed(db: &Db, table: &str) -> (bool, bool) {
    let stmt = db.stmt(&format!(
        "SELECT CAST((last_vacuum IS NOT NULL)::int * 2 + (last_analyze IS NOT NULL)::int AS BIGINT) \
         FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname = '{table}'"
    ));
    let bits = db
        .fetch_i64(&stmt, "test", "read the table's statistics")
        .await
        .expect("reads");
    (bits & 2 != 0, bits & 1 != 0)
}

/// Waits until the server's statistics count `inserted` and `deleted` rows of `table`: a
/// backend publishes its counts a moment after it goes idle, and a pass judges by them.
async fn counted(db: &Db, table: &str, inserted: i64, deleted: i64) {
    let stmt = db.stmt(&format!(
        "SELECT CAST(count(*) AS BIGINT) FROM pg_stat_user_tables \
         WHERE schemaname = current_schema() AND relname = '{table}' \
           AND n_tup_ins >= {inserted} AND n_tup_del >= {deleted}"
    ));
    wait_until(
        &format!("the statistics count the changes to {table}"),
        Duration::from_secs(30),
        async || {
            db.fetch_i64(&stmt, "test", "read the counts")
                .await
                .expect("reads")
                == 1
        },
    )
    .await;
}

/// What `done` did to `table`.
fn action_on(done: &[(String, Action)], table: &str) -> Option<Action> {
    let suffix = format!(".{table}");
    done.iter()
        .find(|(t, _)| t.ends_with(&suffix))
        .map(|(_, a)| *a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tables_past_the_thresholds_are_vacuumed_or_analyzed_once() {
    recorder::install();
    let dbs = TestDbs::new(Backend::Postgres, "vacuum");
    let db = open(&dbs, "store").await;
    let other = open(&dbs, "other").await;
    let vacuum = Vacuum::new(db.clone(), "vacuum-test");

    // needed() is the server's own answer, read here from pg_settings.
    let off = db
        .fetch_i64(
            &db.stmt(
                "SELECT CAST(count(*) AS BIGINT) FROM pg_settings \
                 WHERE name = 'autovacuum' AND setting = 'off'",
            ),
            "test",
            "read the setting",
        )
        .await
        .expect("reads");
    assert_eq!(vacuum.needed().await.expect("asks"), off == 1);

    // churn passes the vacuum thresholds (2,000 inserted > 1,000; 1,500 dead > 50);
    // kept churns the same with autovacuum off for it; the other schema's table too.
    for (db, table, options) in [
        (&db, "churn", ""),
        (&db, "kept", " WITH (autovacuum_enabled = off)"),
        (&other, "elsewhere", ""),
    ] {
        run(
            db,
            &format!("CREATE TABLE {table} (id int PRIMARY KEY, v int){options}"),
        )
        .await;
        run(
            db,
            &format!("INSERT INTO {table} SELECT g, g FROM generate_series(1, 2000) g"),
        )
        .await;
        run(db, &format!("DELETE FROM {table} WHERE id <= 1500")).await;
    }
    for (db, table) in [(&db, "churn"), (&db, "kept"), (&other, "elsewhere")] {
        counted(db, table, 2000, 1500).await;
    }
    let done = vacuum.pass().await.expect("passes");
    assert_eq!(action_on(&done, "churn"), Some(Action::Vacuum), "{done:?}");
    let schema = done
        .iter()
        .find(|(t, _)| t.ends_with(".churn"))
        .map(|(t, _)| t.trim_end_matches(".churn").to_owned())
        .expect("named with its schema");
    assert!(
        done.iter()
            .all(|(t, _)| t.starts_with(&format!("{schema}.")) && !t.ends_with(".kept")),
        "only the schema's own tables, and not one with autovacuum off: {done:?}"
    );
    assert_eq!(vacuumed_and_analyzed(&db, "churn").await, (true, true));
    assert_eq!(vacuumed_and_analyzed(&db, "kept").await, (false, false));
    assert_eq!(
        vacuumed_and_analyzed(&other, "elsewhere").await,
        (false, false)
    );
    assert!(
        recorder::counter(
            VACUUM_RUNS,
            &[("store", "vacuum-test"), ("action", "vacuum")]
        ) >= 1
    );

    // Nothing changed since: the next pass leaves churn alone.
    let again = vacuum.pass().await.expect("passes");
    assert_eq!(action_on(&again, "churn"), None, "{again:?}");

    // 500 new rows: past the analyze threshold (50 + 10 % of 500) but not the insert one
    // (1,000 + 20 % of 500) and nothing dead: analyze only.
    run(
        &db,
        "INSERT INTO churn SELECT g, g FROM generate_series(2001, 2500) g",
    )
    .await;
    counted(&db, "churn", 2500, 1500).await;
    let done = vacuum.pass().await.expect("passes");
    assert_eq!(action_on(&done, "churn"), Some(Action::Analyze), "{done:?}");
    assert!(
        recorder::counter(
            VACUUM_RUNS,
            &[("store", "vacuum-test"), ("action", "analyze")]
        ) >= 1
    );
}

#[tokio::test]
async fn sqlite_and_mariadb_never_need_it() {
    recorder::install();
    for backend in [Backend::Sqlite, Backend::MariaDb] {
        let dbs = TestDbs::new(backend, "vacuum");
        let store = format!("{}-store", backend.name());
        let vacuum =
            Vacuum::new(open(&dbs, "store").await, store.clone()).every(Duration::from_millis(1));
        assert!(!vacuum.needed().await.expect("asks"), "{backend:?}");
        // run() asks, finds nothing to do and waits, without failing, until cancelled.
        let cancel = CancellationToken::new();
        let mut running = tokio::spawn({
            let cancel = cancel.clone();
            async move { vacuum.run(cancel).await }
        });
        wait_until(
            "run() asked the server",
            Duration::from_secs(30),
            async || recorder::gauge(VACUUM_STAND_IN, &[("store", &store)]) == Some(0.0),
        )
        .await;
        // A task that ends on its own stops a supervised service: it must still run.
        let early = tokio::time::timeout(Duration::from_millis(300), &mut running).await;
        assert!(
            early.is_err(),
            "{backend:?}: run() returned before it was cancelled"
        );
        cancel.cancel();
        running.await.expect("joins").expect("runs");
    }
}
