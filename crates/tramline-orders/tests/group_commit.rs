//! Group commit of `POST /orders` (`OrderService::with_group_commit`), on every database:
//! orders placed at the same moment share transactions, each still gets its own answer, its
//! own row and its own outbox message, and an invalid order among them is refused alone.

mod common;

use common::command;
use std::sync::Arc;
use tokio::sync::Barrier;
use tramline_orders::services::order::{self, OrderService};
use tramline_orders::services::ServiceDb;
use tramline_orders::OrderSystemError;
use tramline_sql::DbOptions;
use tramline_testkit::{on_every_database, Backend, TestDbs};

const CLIENTS: u64 = 64;

async fn count(db: &ServiceDb, table: &str) -> i64 {
    let stmt = db.db.stmt(&format!("SELECT COUNT(*) FROM {table}"));
    db.db
        .fetch_i64(&stmt, "test", "count")
        .await
        .expect("counts")
}

async fn concurrent_orders_share_transactions(backend: Backend) {
    let dbs = TestDbs::new(backend, "group-commit");
    let db = ServiceDb::open(
        &dbs.url("order").await,
        &DbOptions::default(),
        order::migrations,
    )
    .await
    .expect("the database opens");
    let orders = OrderService::new(db.clone()).with_group_commit(2);
    let start = Arc::new(Barrier::new(CLIENTS as usize));
    let mut clients = tokio::task::JoinSet::new();
    for n in 0..CLIENTS {
        let (orders, start) = (orders.clone(), Arc::clone(&start));
        clients.spawn(async move {
            let mut cmd = command(n);
            if n == 7 {
                cmd.amount_cents = -1; // refused, and only this one
            }
            start.wait().await;
            (n, orders.create(cmd).await)
        });
    }
    let mut ids = Vec::new();
    while let Some(joined) = clients.join_next().await {
        let (n, outcome) = joined.expect("a client ran");
        match (n, outcome) {
            (7, Err(OrderSystemError::Invalid { .. })) => {}
            (7, other) => panic!("the invalid order was not refused: {other:?}"),
            (n, Ok(order)) => {
                assert_eq!(order.customer_id, format!("customer-{n}"), "its own answer");
                ids.push(order.order_id);
            }
            (n, Err(e)) => panic!("order {n} failed: {e}"),
        }
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len() as u64, CLIENTS - 1, "an id each");
    assert_eq!(count(&db, "orders").await, (CLIENTS - 1) as i64);
    assert_eq!(count(&db, "tramline_outbox").await, (CLIENTS - 1) as i64);
    for id in &ids {
        let order = orders.get(id).await.expect("each order reads back");
        assert_eq!(&order.order_id, id);
    }
    let (groups, grouped) = orders.group_stats().expect("group commit is on");
    assert_eq!(
        grouped,
        CLIENTS - 1,
        "every valid order went through a group"
    );
    assert!(
        groups < grouped,
        "{groups} transactions for {grouped} concurrent orders: none was shared"
    );
}

on_every_database!(concurrent_orders_share_transactions);

/// Without group commit each order has a transaction of its own (what the test above would
/// see on the naive path), and the service says it does not group.
#[tokio::test]
async fn without_group_commit_nothing_is_grouped() {
    let dbs = TestDbs::new(Backend::Sqlite, "no-group-commit");
    let db = ServiceDb::open(
        &dbs.url("order").await,
        &DbOptions::default(),
        order::migrations,
    )
    .await
    .expect("the database opens");
    let orders = OrderService::new(db.clone());
    orders.create(command(1)).await.expect("placed");
    assert_eq!(orders.group_stats(), None);
    assert_eq!(count(&db, "tramline_outbox").await, 1);
}
