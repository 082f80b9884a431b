//! Example 1: the shop on the embedded log. Its own sqlx writes and the outbox commit in one
//! transaction; a relay publishes the outbox to tramline's embedded log (a SQLite file); a
//! consumer with a custom handler keeps each customer's totals, exactly once.
//!
//! ```text
//! cargo run --release -p tramline-example-shop --bin shop -- [DIR] [ORDERS]
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tramline_example_shop::{run, Shop};
use tramline_sql::{DbOptions, SqlLog};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "shop-data".to_owned()));
    let orders: usize = args.next().map_or(Ok(1000), |n| n.parse())?;
    std::fs::create_dir_all(&dir)?;

    let shop = Shop::open(&dir.join("shop.db")).await?;
    // The embedded log: topics, partitions and consumer offsets in a SQLite file of its own.
    let log_url = format!("sqlite://{}", dir.join("log.db").display());
    let log = Arc::new(SqlLog::open(&log_url, &DbOptions::default()).await?);

    let before = shop.orders().await?;
    run(
        &shop,
        log,
        orders,
        async |_, _| Ok(()),
        || async { Ok(shop.counted().await? == shop.orders().await?) },
        Duration::from_secs(60),
    )
    .await?;

    let wrong = shop.wrong_totals().await?;
    let total = shop.orders().await?;
    println!(
        "shop: {} orders placed ({total} in all), {} counted in the customers' totals",
        total - before,
        shop.counted().await?
    );
    if !wrong.is_empty() {
        anyhow::bail!("customer totals differ from their orders: {wrong:?}");
    }
    println!("shop: every customer's totals match their orders");
    Ok(())
}
