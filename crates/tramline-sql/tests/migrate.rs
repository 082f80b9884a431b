//! Several processes opening one fresh database at once (a service and its relay, two view
//! processes) apply each migration once: the migration lock really excludes the others.

use tramline_sql::{migrate, Db, DbOptions, Schema};
use tramline_testkit::{on_every_database, Backend, TestDbs};

async fn concurrent_opens_of_a_fresh_database_migrate_it_once(backend: Backend) {
    let dbs = TestDbs::new(backend, "concurrent_migrations");
    let url = dbs.url("shared").await;
    let schemas = [
        Schema::Outbox,
        Schema::Inbox,
        Schema::Log,
        Schema::Idempotency,
    ];
    // Separate pools, as separate processes would have, opening at the same moment.
    let open = || async {
        let db = Db::connect(&url, &DbOptions::default()).await?;
        migrate(&db, &schemas).await?;
        db.close().await;
        Ok::<_, tramline_sql::SqlError>(())
    };
    let opened = tokio::join!(open(), open(), open(), open());
    for outcome in [opened.0, opened.1, opened.2, opened.3] {
        outcome.expect("every concurrent open migrates");
    }
    let db = Db::connect(&url, &DbOptions::default())
        .await
        .expect("opens");
    let applied = db
        .fetch_i64(
            &db.stmt("SELECT COUNT(*) FROM tramline_migrations"),
            "test",
            "count migrations",
        )
        .await
        .expect("counted");
    assert_eq!(applied, migrations_of(&schemas, db.dialect()));
}

on_every_database!(concurrent_opens_of_a_fresh_database_migrate_it_once);

/// How many versioned migrations `schemas` hold on `dialect`: each is recorded once.
fn migrations_of(schemas: &[Schema], dialect: tramline_sql::Dialect) -> i64 {
    schemas
        .iter()
        .map(|s| s.migrator(dialect).iter().count() as i64)
        .sum()
}

/// The service's own sqlx migrations, beside tramline's: a `0001_init.sql` of its own.
async fn users_migrator(dir: &std::path::Path) -> sqlx::migrate::Migrator {
    std::fs::write(
        dir.join("0001_init.sql"),
        "CREATE TABLE accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL);\n",
    )
    .expect("the user's migration");
    sqlx::migrate::Migrator::new(dir)
        .await
        .expect("the user's migrator")
}

/// Runs a sqlx migrator, as the service would, on its own pool of the database at `url`.
async fn run_users(backend: Backend, url: &str, migrator: &sqlx::migrate::Migrator) {
    use std::str::FromStr;
    match backend {
        Backend::Sqlite => {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                .expect("a SQLite URL")
                .create_if_missing(true);
            let pool = sqlx::SqlitePool::connect_with(options).await.expect("pool");
            migrator
                .run(&pool)
                .await
                .expect("the user's migrations run");
            pool.close().await;
        }
        Backend::MariaDb => {
            let pool = sqlx::MySqlPool::connect(url).await.expect("pool");
            migrator
                .run(&pool)
                .await
                .expect("the user's migrations run");
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(url).await.expect("pool");
            migrator
                .run(&pool)
                .await
                .expect("the user's migrations run");
            pool.close().await;
        }
    }
}

async fn count(db: &Db, sql: &str) -> i64 {
    db.fetch_i64(&db.stmt(sql), "test", "count")
        .await
        .expect("counted")
}

async fn a_services_own_sqlx_migrations_run_beside_tramlines(backend: Backend) {
    let dir = tempfile::tempdir().expect("a directory");
    let users = users_migrator(dir.path()).await;
    let schemas = [Schema::Outbox, Schema::Inbox, Schema::Idempotency];
    for users_first in [true, false] {
        let dbs = TestDbs::new(backend, &format!("migrate_beside_{users_first}"));
        let url = dbs.url("service").await;
        let db = Db::connect(&url, &DbOptions::default())
            .await
            .expect("opens");
        if users_first {
            run_users(backend, &url, &users).await;
        }
        migrate(&db, &schemas)
            .await
            .expect("tramline's migrations run");
        run_users(backend, &url, &users).await;
        migrate(&db, &schemas).await.expect("again: nothing to do");
        assert_eq!(count(&db, "SELECT COUNT(*) FROM _sqlx_migrations").await, 1);
        assert_eq!(
            count(&db, "SELECT COUNT(*) FROM tramline_migrations").await,
            migrations_of(&schemas, db.dialect())
        );
        assert_eq!(count(&db, "SELECT COUNT(*) FROM accounts").await, 0);
        assert_eq!(count(&db, "SELECT COUNT(*) FROM tramline_outbox").await, 0);
        db.close().await;
    }
}

/// A database an earlier tramline migrated through `_sqlx_migrations` is taken over: the
/// schema is not applied again, and the service's own migrator then runs.
async fn a_database_migrated_through_sqlx_is_taken_over(backend: Backend) {
    let dbs = TestDbs::new(backend, "migrate_take_over");
    let url = dbs.url("service").await;
    let db = Db::connect(&url, &DbOptions::default())
        .await
        .expect("opens");
    // What tramline did before: sqlx's migrator, recording in _sqlx_migrations.
    let mut old = Schema::Outbox.migrator(db.dialect());
    old.set_ignore_missing(true);
    run_users(backend, &url, &old).await;
    migrate(&db, &[Schema::Outbox]).await.expect("taken over");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM _sqlx_migrations").await, 0);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM tramline_migrations").await,
        1
    );
    let dir = tempfile::tempdir().expect("a directory");
    run_users(backend, &url, &users_migrator(dir.path()).await).await;
    db.close().await;
}

on_every_database!(
    a_services_own_sqlx_migrations_run_beside_tramlines,
    a_database_migrated_through_sqlx_is_taken_over,
);
