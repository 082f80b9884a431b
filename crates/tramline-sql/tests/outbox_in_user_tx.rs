//! The outbox inside the caller's own sqlx transaction, on the caller's own pool, on every
//! database and in both table layouts: a message appended in a transaction that commits is
//! published with the caller's row; one appended in a transaction that rolls back leaves
//! neither.

use std::str::FromStr;
use tramline_core::ports::Outbox;
use tramline_core::Envelope;
use tramline_sql::{migrate, Db, OutboxLayout, SqlOutbox};
use tramline_testkit::{on_every_database, Backend, TestDbs};

/// The caller's own work in one transaction on its own pool: an account row and, in the same
/// transaction, an outbox message; committed when `commit`, else dropped (rolled back).
macro_rules! transfer {
    ($pool:expr, $outbox:expr, $id:expr, $message:expr, $commit:expr) => {{
        let mut tx = $pool.begin().await.expect("begin");
        let insert = format!("INSERT INTO accounts (id, balance) VALUES ({}, 100)", $id);
        sqlx::query(&insert)
            .execute(&mut *tx)
            .await
            .expect("the caller's own write");
        $outbox
            .append_in(&mut *tx, std::slice::from_ref(&$message))
            .await
            .expect("appended in the caller's transaction");
        if $commit {
            tx.commit().await.expect("commit");
        }
    }};
}

macro_rules! scenario {
    ($pool:expr, $layout:expr) => {{
        let pool = $pool;
        sqlx::query("CREATE TABLE accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL)")
            .execute(&pool)
            .await
            .expect("the caller's table");
        let db = Db::from_pool(pool.clone());
        migrate(&db, &[$layout.schema()])
            .await
            .expect("the outbox schema");
        let outbox = SqlOutbox::with_layout(db, $layout);
        let kept = Envelope::new("accounts", "a-1", r#"{"opened":1}"#.into());
        let lost = Envelope::new("accounts", "a-2", r#"{"opened":2}"#.into());
        transfer!(pool, outbox, 1, kept, true);
        transfer!(pool, outbox, 2, lost, false);
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM accounts")
            .fetch_all(&pool)
            .await
            .expect("accounts");
        let batch = outbox.fetch_unpublished(10).await.expect("fetch");
        let published: Vec<_> = batch.messages.iter().map(|m| m.id).collect();
        assert_eq!(ids, [1], "the rolled-back row is gone");
        assert_eq!(
            published,
            [kept.id],
            "only the committed transaction's message"
        );
        assert_eq!(batch.messages[0].payload, kept.payload);
        pool.close().await;
    }};
}

async fn the_outbox_joins_the_callers_transaction(backend: Backend) {
    for layout in [OutboxLayout::Tramline, OutboxLayout::Eventuate] {
        let dbs = TestDbs::new(backend, &format!("outbox_user_tx_{layout:?}"));
        let url = dbs.url("service").await;
        match backend {
            Backend::Sqlite => {
                let options = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
                    .expect("a SQLite URL")
                    .create_if_missing(true);
                let pool = sqlx::SqlitePool::connect_with(options)
                    .await
                    .expect("the caller's pool");
                scenario!(pool, layout)
            }
            Backend::MariaDb => {
                let pool = sqlx::MySqlPool::connect(&url)
                    .await
                    .expect("the caller's pool");
                scenario!(pool, layout)
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&url)
                    .await
                    .expect("the caller's pool");
                scenario!(pool, layout)
            }
        }
    }
}

on_every_database!(the_outbox_joins_the_callers_transaction);
