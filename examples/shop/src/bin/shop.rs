//! Example 1: the shop on the embedded log. Its own sqlx writes and the outbox commit in one
//! transaction; a relay publishes the outbox to tramline's embedded log (a SQLite file); a
//! consumer with a custom handler keeps each customer's totals, exactly once.
//!
//! ```text
//! cargo run --release -p tramline-example-shop --bin shop -- [DIR] [ORDERS]
//! ```

use std::time::Duration;
use tramline_example_shop::{dir_and_orders, open_on_the_log, report, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (dir, orders) = dir_and_orders(std::env::args().skip(1))?;
    let (shop, log) = open_on_the_log(&dir).await?;
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
    report("shop", &shop, before).await
}
