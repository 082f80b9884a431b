//! Example 3: example 1 on Kafka. The shop, its outbox, relay and consumer are the same; only
//! the transport differs: the relay publishes to a Kafka cluster (in Eventuate Tram's wire
//! format, so Java services can read the topic) and the consumer joins a Kafka consumer group.
//!
//! ```text
//! cargo run --release -p tramline-example-shop --bin shop_kafka -- BROKERS [DIR] [ORDERS]
//! ```
//!
//! `SHOP_KAFKA_PREFIX` prefixes the topic and the consumer group on the cluster (a test run's
//! own names on a shared cluster).

use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use tramline_core::topics::TopicNames;
use tramline_example_shop::{dir_and_orders, report, run, Shop};
use tramline_kafka::{KafkaConfig, KafkaTransport};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let brokers = args.next().unwrap_or_else(|| "127.0.0.1:9092".to_owned());
    let (dir, orders) = dir_and_orders(args)?;
    let shop = Shop::open(&dir.join("shop.db")).await?;
    let mut config = KafkaConfig::new(&brokers);
    if let Ok(prefix) = std::env::var("SHOP_KAFKA_PREFIX") {
        config.topics = TopicNames::with_prefix(&prefix);
        config.group_prefix = prefix;
    }
    let kafka = KafkaTransport::connect(config)
        .await
        .with_context(|| format!("cannot reach Kafka at {brokers}"))?;

    let before = shop.orders().await?;
    run(
        &shop,
        Arc::new(kafka),
        orders,
        async |_, _| Ok(()),
        || async { Ok(shop.counted().await? == shop.orders().await?) },
        Duration::from_secs(120),
    )
    .await?;

    report("shop_kafka", &shop, before).await
}
