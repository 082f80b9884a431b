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
            &db.stmt("SELECT COUNT(*) FROM _sqlx_migrations WHERE success"),
            "test",
            "count migrations",
        )
        .await
        .expect("counted");
    assert_eq!(applied, schemas.len() as i64);
}

on_every_database!(concurrent_opens_of_a_fresh_database_migrate_it_once);
