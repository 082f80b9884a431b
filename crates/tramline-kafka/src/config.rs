//! What a deployment says about its Kafka cluster: where it is, how names are spelt, and any
//! librdkafka property on top.

use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::time::Duration;
use tramline_core::topics::TopicNames;
use tramline_core::wire::WireFormat;

/// Settings of the Kafka transport. Every field has a default but `brokers`.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port…]`.
    pub brokers: String,
    /// How tramline's topics are named on the cluster: a prefix (empty by default, so names
    /// match Eventuate services'), and renames onto names an existing system uses (e.g.
    /// `order-events` → the Eventuate aggregate type `com.example.order.Order`).
    pub topics: TopicNames,
    /// The envelope format of each topic's records, by the topic's name on the cluster;
    /// a topic not named here carries Eventuate Tram's JSON envelope (what tramline writes).
    pub formats: BTreeMap<String, WireFormat>,
    /// Prepended to every consumer group id.
    pub group_prefix: String,
    /// Replicas of each topic the transport creates.
    pub replication_factor: i32,
    /// A group member not heard from for this long is dropped from its group (its partitions
    /// move to the others). The first assignment of a new group waits about this long too.
    pub session_timeout: Duration,
    /// Longest wait to reach the cluster when the transport starts, and for admin operations;
    /// past it the caller gets an error naming the brokers instead of a hang.
    pub connect_timeout: Duration,
    /// How long the producer keeps trying to deliver a message (through broker restarts)
    /// before it reports the publish as failed; the relay then retries the whole batch.
    pub message_timeout: Duration,
    /// Longest wait, in a rebalance, for the consumer runtime to finish the revoked
    /// partitions' records and hand back their positions.
    pub revoke_timeout: Duration,
    /// librdkafka properties for both producer and consumers; applied last, so they override
    /// everything above (e.g. `security.protocol`, `sasl.mechanism`, `client.id`).
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties for the producer only.
    pub producer_properties: BTreeMap<String, String>,
    /// librdkafka properties for consumers only.
    pub consumer_properties: BTreeMap<String, String>,
}

impl KafkaConfig {
    /// Defaults for a cluster at `brokers`.
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            topics: TopicNames::default(),
            formats: BTreeMap::new(),
            group_prefix: String::new(),
            replication_factor: 1,
            session_timeout: Duration::from_secs(45),
            connect_timeout: Duration::from_secs(10),
            message_timeout: Duration::from_secs(60),
            revoke_timeout: Duration::from_secs(60),
            properties: BTreeMap::new(),
            producer_properties: BTreeMap::new(),
            consumer_properties: BTreeMap::new(),
        }
    }

    /// The group's id on the cluster.
    pub fn group_id(&self, group: &str) -> String {
        format!("{}{group}", self.group_prefix)
    }

    fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", "tramline")
            .set(
                "socket.connection.setup.timeout.ms",
                millis(self.connect_timeout),
            );
        c
    }

    /// The producer's configuration: idempotent, `acks=all`, Java-compatible partitioning.
    pub(crate) fn producer(&self) -> ClientConfig {
        let mut c = self.base();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            // Kafka's Java partitioner, so a key's partition matches Java producers' and the
            // embedded log's (librdkafka's default hashes with crc32 instead).
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("message.timeout.ms", millis(self.message_timeout));
        overlay(&mut c, &self.properties);
        overlay(&mut c, &self.producer_properties);
        c
    }

    /// A group member's configuration: manual commits only, earliest offset for a new group,
    /// statistics every 5 s (they feed the lag gauges; a user's `statistics.interval.ms`
    /// wins, 0 turns them off).
    pub(crate) fn consumer(&self, group_id: &str) -> ClientConfig {
        let mut c = self.base();
        c.set("group.id", group_id)
            .set("statistics.interval.ms", "5000")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", millis(self.session_timeout))
            .set(
                "heartbeat.interval.ms",
                millis((self.session_timeout / 3).max(Duration::from_millis(100))),
            );
        overlay(&mut c, &self.properties);
        overlay(&mut c, &self.consumer_properties);
        c
    }

    /// The admin client's configuration.
    pub(crate) fn admin(&self) -> ClientConfig {
        let mut c = self.base();
        overlay(&mut c, &self.properties);
        c
    }
}

fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}

fn overlay(c: &mut ClientConfig, properties: &BTreeMap<String, String>) {
    for (k, v) in properties {
        c.set(k, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_get_their_prefix() {
        let mut c = KafkaConfig::new("127.0.0.1:9092");
        c.group_prefix = "g7.".into();
        assert_eq!(c.group_id("view"), "g7.view");
    }

    #[test]
    fn user_properties_override_the_defaults() {
        let mut c = KafkaConfig::new("b:9092");
        c.properties.insert("linger.ms".into(), "50".into());
        c.consumer_properties
            .insert("auto.offset.reset".into(), "latest".into());
        assert_eq!(c.producer().get("linger.ms"), Some("50"));
        assert_eq!(c.producer().get("acks"), Some("all"));
        assert_eq!(c.producer().get("partitioner"), Some("murmur2_random"));
        assert_eq!(c.consumer("g").get("auto.offset.reset"), Some("latest"));
        assert_eq!(c.consumer("g").get("enable.auto.commit"), Some("false"));
    }

    #[test]
    fn consumers_emit_statistics_unless_told_otherwise() {
        let mut c = KafkaConfig::new("b:9092");
        assert_eq!(c.consumer("g").get("statistics.interval.ms"), Some("5000"));
        assert_eq!(c.producer().get("statistics.interval.ms"), None);
        c.properties
            .insert("statistics.interval.ms".into(), "0".into());
        assert_eq!(c.consumer("g").get("statistics.interval.ms"), Some("0"));
    }
}
