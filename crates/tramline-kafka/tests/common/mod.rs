//! Shared set-up of the Kafka tests: a transport on the test broker with names of its own.
#![allow(dead_code)]

use std::time::Duration;
use tramline_core::ports::{Subscription, Transport};
use tramline_core::topics::TopicNames;
use tramline_kafka::{KafkaConfig, KafkaTransport};
use tramline_testkit::kafka;

/// Settings for a test: its own topic and group prefix, short timeouts.
pub fn config(test: &str, brokers: &str) -> KafkaConfig {
    let prefix = kafka::unique_prefix(test);
    let mut c = KafkaConfig::new(brokers);
    c.topics = TopicNames::with_prefix(&prefix);
    c.group_prefix = prefix;
    // The broker's first assignment of a group waits about half of this.
    c.session_timeout = Duration::from_secs(6);
    c.revoke_timeout = Duration::from_secs(20);
    // librdkafka's own debug contexts for a failing test, e.g. `cgrp,fetch`; the lines show
    // with RUST_LOG=librdkafka=debug.
    if let Ok(debug) = std::env::var("TRAMLINE_TEST_KAFKA_DEBUG") {
        c.properties.insert("debug".into(), debug);
    }
    c
}

/// A transport on the shared test broker with `topics` created, `partitions` each.
pub async fn transport(test: &str, topics: &[&str], partitions: i32) -> KafkaTransport {
    // Logs of a failing test (RUST_LOG), shown with the test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let t = KafkaTransport::connect(config(test, &kafka::brokers()))
        .await
        .unwrap_or_else(|e| {
            panic!("{e} (the test broker: scripts/broker start, or TRAMLINE_TEST_KAFKA_BROKERS)")
        });
    for topic in topics {
        t.create_topic(topic, partitions)
            .await
            .expect("topic created");
    }
    t
}

/// Creates a topic under exactly `name`, with no prefix or rename.
pub async fn create_literal(name: &str, partitions: i32) {
    let plain = KafkaTransport::connect(KafkaConfig::new(kafka::brokers()))
        .await
        .expect("the test broker");
    plain
        .create_topic(name, partitions)
        .await
        .expect("topic created");
}

/// Polls until `n` records arrived (or fails after 60 s).
pub async fn poll_n<S: Subscription>(s: &mut S, n: usize) -> Vec<tramline_core::Record> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {n} records arrived",
            out.len()
        );
        out.extend(s.poll(500, Duration::from_millis(200)).await.expect("poll"));
        if let Some(revocation) = s.take_revocation() {
            revocation.complete(Vec::new());
        }
    }
    out
}
