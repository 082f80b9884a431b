//! The lag gauges of a consumer on a real broker: fed by librdkafka's statistics, labelled
//! with tramline's group and topic names, and 0 on every partition once the group committed
//! everything; the consumer's counters and latency histograms add up as on the embedded log.

mod common;

use std::sync::Arc;
use std::time::Duration;
use tramline_core::consumer::{ConsumerConfig, ConsumerRuntime};
use tramline_core::ports::{Applied, Handler, Transport};
use tramline_core::telemetry as names;
use tramline_core::{Envelope, Error, Record};
use tramline_kafka::KafkaTransport;
use tramline_testkit::recorder::{counter, gauge, histogram};
use tramline_testkit::{kafka, wait_until, RunningConsumer, SeenIds};

/// Applies each message id once.
#[derive(Default)]
struct Once(SeenIds);

impl Handler for Once {
    async fn apply(&self, batch: &[Record]) -> Result<Applied, Error> {
        Ok(self.0.count(batch))
    }

    async fn park(&self, record: &Record, reason: &Error) -> Result<(), Error> {
        panic!("nothing here is poison: {record:?}: {reason}")
    }
}

const PARTITIONS: i32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lag_gauges_come_down_to_zero_once_the_group_committed_everything() {
    tramline_testkit::recorder::install();
    let mut config = common::config("metrics-lag", &kafka::brokers());
    // Statistics often enough for a test (5 s by default).
    config
        .consumer_properties
        .insert("statistics.interval.ms".into(), "100".into());
    let t = KafkaTransport::connect(config)
        .await
        .unwrap_or_else(|e| panic!("{e} (the test broker: scripts/broker start)"));
    t.create_topic("orders", PARTITIONS).await.expect("topic");
    let sent: Vec<Envelope> = (0..120)
        .map(|n| Envelope::new("orders", format!("order-{}", n % 12), n.to_string()))
        .collect();
    t.publish(&sent).await.expect("publish");

    let group = [("group", "metrics-view")];
    let subscription = t
        .subscribe("metrics-view", &["orders".to_owned()])
        .await
        .expect("subscribed");
    let consumer_config = ConsumerConfig {
        name: "metrics-view".to_owned(),
        commit_interval: Duration::from_millis(50),
        ..ConsumerConfig::default()
    };
    let running = RunningConsumer::start(
        ConsumerRuntime::new(Arc::new(Once::default()), consumer_config),
        subscription,
    );
    let lags = || -> Vec<Option<f64>> {
        (0..PARTITIONS)
            .map(|p| {
                let p = p.to_string();
                let labels = [
                    ("group", "metrics-view"),
                    ("topic", "orders"),
                    ("partition", p.as_str()),
                ];
                gauge(names::CONSUMER_LAG, &labels)
            })
            .collect()
    };
    wait_until(
        "everything applied and every partition's lag gauge at 0",
        Duration::from_secs(60),
        async || {
            counter(names::CONSUMER_APPLIED, &group) == sent.len() as u64
                && t.lag("metrics-view", &["orders".to_owned()])
                    .await
                    .expect("lag")
                    == 0
                && lags().iter().all(|lag| *lag == Some(0.0))
        },
    )
    .await;
    running.stop().await;

    assert_eq!(counter(names::CONSUMER_DUPLICATES, &group), 0);
    assert_eq!(
        histogram(names::CONSUMER_COMMIT_LATENCY, &group).len(),
        sent.len()
    );
    // Only tramline's names: no series under the cluster's prefixed group or topic.
    let on_the_cluster = t.config().topics.cluster_name("orders");
    assert_ne!(on_the_cluster, "orders");
    assert_eq!(
        gauge(names::CONSUMER_LAG, &[("topic", on_the_cluster.as_str())]),
        None
    );
}
