//! Example 2: a declared read model fed by the shop. Besides example 1's consumer, a second
//! consumer group keeps `order_summaries` — one row per order with its customer and amount —
//! in a database of its own, from a declaration alone: no handler code. The declaration's
//! merge rule keeps the table exact under duplicates, redeliveries and concurrent lanes.
//!
//! ```text
//! cargo run --release -p tramline-example-shop --bin shop_view -- [DIR] [ORDERS]
//! ```

use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use tramline_core::readmodel::{
    Column, ColumnType, Declaration, EventMapping, Group, ValueSource, VersionSource,
};
use tramline_example_shop::{
    dir_and_orders, open_on_the_log, run, spawn_consumer, ORDER_PLACED, TOPIC,
};
use tramline_sql::{migrate, Db, DbOptions, ReadModelProjection, ReadModelTable, Schema};

/// The read model: order id → customer and amount, set by each `OrderPlaced` event. The
/// events of one order come from one aggregate on one partition, so their position in the
/// partition orders them (`VersionSource::Position`).
fn order_summaries() -> Declaration {
    let field = |name: &str| ValueSource::Field(vec![name.to_owned()]);
    Declaration {
        name: "order-summaries".to_owned(),
        table: "order_summaries".to_owned(),
        key: Column::new("order_id", ColumnType::Text),
        groups: vec![Group {
            name: "order".to_owned(),
            columns: vec![
                Column::new("customer", ColumnType::Text),
                Column::new(
                    "amount",
                    ColumnType::Decimal {
                        precision: 12,
                        scale: 2,
                    },
                ),
                Column::new("amount_cents", ColumnType::Integer),
            ],
            version: VersionSource::Position,
        }],
        events: vec![
            EventMapping::new(TOPIC, ORDER_PLACED, "order", field("orderId"))
                .set("customer", field("customer"))
                .set("amount", field("amount"))
                .set("amount_cents", field("amountCents")),
        ],
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (dir, orders) = dir_and_orders(std::env::args().skip(1))?;
    let (shop, log) = open_on_the_log(&dir).await?;

    // The read model's own database: its table, and the inbox of its consumer group.
    let view_url = format!("sqlite://{}", dir.join("view.db").display());
    let view_db = Db::connect(&view_url, &DbOptions::default()).await?;
    migrate(&view_db, &[Schema::Inbox]).await?;
    let table = ReadModelTable::new(order_summaries()).map_err(|problems| {
        let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("the declaration is refused: {}", problems.join("; "))
    })?;
    table
        .install(&view_db)
        .await
        .context("cannot install order_summaries")?;

    let projection = ReadModelProjection::new(view_db.clone(), "order-summaries", table.clone());
    let view_log = Arc::clone(&log);
    let (table_ref, db_ref) = (&table, &view_db);
    run(
        &shop,
        log,
        orders,
        async move |supervisor, consumers| {
            spawn_consumer(
                supervisor,
                consumers,
                &*view_log,
                "order-summaries",
                &[TOPIC],
                projection,
            )
            .await
        },
        || async {
            let all = shop.orders().await?;
            let rows = table_ref.rows(db_ref).await?.len() as i64;
            Ok(shop.counted().await? == all && rows == all)
        },
        Duration::from_secs(60),
    )
    .await?;

    // Every order has its row, with its customer and amount.
    let rows = table.rows(&view_db).await?;
    let mut wrong = Vec::new();
    for (id, customer, cents) in shop.all_orders().await? {
        let amount = format!("{}.{:02}", cents / 100, cents % 100);
        let expected = [
            ("customer", customer),
            ("amount", amount),
            ("amount_cents", cents.to_string()),
        ];
        let row = rows.get(&id);
        let exact = row.is_some_and(|row| {
            expected.iter().all(|(column, value)| {
                row.get(*column).cloned().flatten().as_deref() == Some(value)
            })
        });
        if !exact {
            wrong.push((id, row.cloned()));
        }
    }
    println!(
        "shop_view: {} rows in order_summaries, {} wrong",
        rows.len(),
        wrong.len()
    );
    if !wrong.is_empty() || !shop.wrong_totals().await?.is_empty() {
        anyhow::bail!("the read model differs from the shop's orders: {wrong:?}");
    }
    println!("shop_view: every order's row matches the shop's own table");
    Ok(())
}
