//! The producer side and the group bookkeeping of the Kafka transport.
//!
//! Each record goes to its topic's cluster name (see [`tramline_core::topics`]), and its
//! `DESTINATION` header names that same topic; a message that already carries a
//! `DESTINATION` (a row an Eventuate service wrote into the outbox) goes where it says,
//! unchanged.
//!
//! `publish` hands the whole batch to librdkafka and returns only when every record is
//! acknowledged by all in-sync replicas; if any record failed, the batch fails and the relay
//! publishes it again (duplicates, absorbed by consumers; never a gap). The idempotent
//! producer keeps each partition's order through its own retries.

use crate::subscription::KafkaSubscription;
use crate::{KafkaConfig, KafkaError};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication, TopicResult};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError as ClientError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tramline_core::eventuate::EventuateMessage;
use tramline_core::offsets::CommitPosition;
use tramline_core::ports::Transport;
use tramline_core::{Envelope, Error};

/// The Kafka transport: one idempotent producer, and consumer group members on demand.
#[derive(Clone)]
pub struct KafkaTransport {
    config: Arc<KafkaConfig>,
    producer: FutureProducer,
    admin: Arc<AdminClient<DefaultClientContext>>,
    positions: Arc<Positions>,
}

impl std::fmt::Debug for KafkaTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTransport")
            .field("brokers", &self.config.brokers)
            .finish_non_exhaustive()
    }
}

/// What this process knows of partition ends and group positions, for [`Transport::lag`]:
/// the broker's own watermarks are not consulted, as not every Kafka-protocol broker reports
/// them faithfully.
#[derive(Debug, Default)]
pub(crate) struct Positions {
    /// (topic on the cluster, partition) → one past the highest offset this process produced.
    produced: Mutex<HashMap<(String, i32), i64>>,
    /// (group id, topic on the cluster, partition) → the group's committed position.
    committed: Mutex<HashMap<(String, String, i32), i64>>,
}

impl Positions {
    /// Notes a committed position of `group` (only ever moves forward).
    pub(crate) fn committed(&self, group: &str, topic: &str, partition: i32, next: i64) {
        let mut committed = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        let at = committed
            .entry((group.to_owned(), topic.to_owned(), partition))
            .or_insert(next);
        *at = (*at).max(next);
    }

    fn produced(&self, topic: &str, partition: i32, offset: i64) {
        let mut produced = self.produced.lock().unwrap_or_else(|p| p.into_inner());
        let end = produced
            .entry((topic.to_owned(), partition))
            .or_insert(offset + 1);
        *end = (*end).max(offset + 1);
    }

    fn lag(&self, group: &str, topics: &[String]) -> i64 {
        let produced = self.produced.lock().unwrap_or_else(|p| p.into_inner());
        let committed = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        produced
            .iter()
            .filter(|((topic, _), _)| topics.contains(topic))
            .map(|((topic, part), end)| {
                let done = committed
                    .get(&(group.to_owned(), topic.clone(), *part))
                    .copied()
                    .unwrap_or(0);
                (end - done).max(0)
            })
            .sum()
    }
}

impl KafkaTransport {
    /// Connects to the cluster; fails within `connect_timeout` if no broker answers.
    ///
    /// ```no_run
    /// use tramline_core::ports::Transport;
    /// use tramline_core::topics::TopicNames;
    /// use tramline_kafka::{KafkaConfig, KafkaTransport};
    ///
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut config = KafkaConfig::new("kafka-1:9092,kafka-2:9092");
    /// config.topics = TopicNames::with_prefix("prod."); // order-events → prod.order-events
    /// let kafka = KafkaTransport::connect(config).await?;
    /// kafka.create_topic("order-events", 12).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(config: KafkaConfig) -> Result<Self, KafkaError> {
        let producer: FutureProducer = config.producer().create().map_err(KafkaError::Config)?;
        let admin: AdminClient<DefaultClientContext> =
            config.admin().create().map_err(KafkaError::Config)?;
        let transport = KafkaTransport {
            config: Arc::new(config),
            producer,
            admin: Arc::new(admin),
            positions: Arc::default(),
        };
        transport.reachable().await?;
        Ok(transport)
    }

    /// The transport's settings.
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// Asks a broker for the cluster's metadata, bounded by the connect timeout.
    pub async fn reachable(&self) -> Result<(), KafkaError> {
        let producer = self.producer.clone();
        let timeout = self.config.connect_timeout;
        let answered = tokio::task::spawn_blocking(move || {
            producer.client().fetch_metadata(None, timeout).map(|_| ())
        })
        .await
        // Only a panic inside librdkafka's metadata call gets here.
        .map_err(|_| KafkaError::Operation {
            operation: "connect",
            source: ClientError::Canceled,
        })?;
        answered.map_err(|source| KafkaError::Unreachable {
            brokers: self.config.brokers.clone(),
            timeout,
            source,
        })
    }

    /// Deletes topics (for demos and tests that made their own); missing ones are ignored.
    pub async fn delete_topics(&self, topics: &[String]) -> Result<(), KafkaError> {
        let names: Vec<String> = topics
            .iter()
            .map(|t| self.config.topics.cluster_name(t))
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let results = self
            .admin
            .delete_topics(&refs, &self.admin_options())
            .await
            .map_err(|source| KafkaError::Operation {
                operation: "delete topics",
                source,
            })?;
        topic_results(
            results,
            "delete topic",
            RDKafkaErrorCode::UnknownTopicOrPartition,
        )
    }

    fn admin_options(&self) -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(self.config.connect_timeout))
            .operation_timeout(Some(self.config.connect_timeout))
    }

    pub(crate) fn shared_config(&self) -> Arc<KafkaConfig> {
        Arc::clone(&self.config)
    }

    pub(crate) fn positions(&self) -> Arc<Positions> {
        Arc::clone(&self.positions)
    }

    /// Sends every record, then waits for every acknowledgement.
    async fn produce(&self, batch: &[Envelope]) -> Result<(), KafkaError> {
        let mut pending = Vec::with_capacity(batch.len());
        for envelope in batch {
            // Eventuate's contract: the destination is the topic the record is on.
            let topic = EventuateMessage::destination_of(envelope, &self.config.topics);
            let value = EventuateMessage::json_of(envelope, &topic);
            loop {
                let record = FutureRecord::to(&topic)
                    .key(envelope.key.as_bytes())
                    .payload(value.as_bytes())
                    .timestamp(envelope.created_at_ms);
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push((topic.clone(), delivery));
                        break;
                    }
                    // librdkafka's queue is full: let it drain a little.
                    Err((ClientError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((source, _)) => {
                        return Err(KafkaError::Operation {
                            operation: "produce",
                            source,
                        })
                    }
                }
            }
        }
        let mut first_error = None;
        for (topic, delivery) in pending {
            match delivery.await {
                Ok(Ok(d)) => self.positions.produced(&topic, d.partition, d.offset),
                Ok(Err((source, _))) => {
                    first_error.get_or_insert(KafkaError::Operation {
                        operation: "produce",
                        source,
                    });
                }
                Err(_canceled) => {
                    first_error.get_or_insert(KafkaError::Operation {
                        operation: "produce",
                        source: ClientError::Canceled,
                    });
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn create(&self, topic: &str, partitions: i32) -> Result<(), KafkaError> {
        let name = self.config.topics.cluster_name(topic);
        let new = NewTopic::new(
            &name,
            partitions,
            TopicReplication::Fixed(self.config.replication_factor),
        );
        let results = self
            .admin
            .create_topics([&new], &self.admin_options())
            .await
            .map_err(|source| KafkaError::Operation {
                operation: "create topic",
                source,
            })?;
        topic_results(
            results,
            "create topic",
            RDKafkaErrorCode::TopicAlreadyExists,
        )
    }
}

/// The cluster's answer per topic as one result; `done` (the topic already exists, or is
/// already gone) counts as success.
fn topic_results(
    results: Vec<TopicResult>,
    operation: &'static str,
    done: RDKafkaErrorCode,
) -> Result<(), KafkaError> {
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, code)) if code == done => {}
            Err((topic, code)) => {
                return Err(KafkaError::Topic {
                    operation,
                    topic,
                    code,
                })
            }
        }
    }
    Ok(())
}

impl Transport for KafkaTransport {
    type Subscription = KafkaSubscription;

    async fn publish(&self, batch: &[Envelope]) -> Result<(), Error> {
        Ok(self.produce(batch).await?)
    }

    async fn subscribe(&self, group: &str, topics: &[String]) -> Result<KafkaSubscription, Error> {
        Ok(KafkaSubscription::start(self, group, topics)?)
    }

    async fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), Error> {
        if partitions < 1 {
            return Err(Error::Config(format!(
                "topic {topic}: partitions must be at least 1, got {partitions}"
            )));
        }
        Ok(self.create(topic, partitions).await?)
    }

    async fn end_offsets(&self, topics: &[String]) -> Result<Vec<CommitPosition>, Error> {
        let client = self.producer.clone();
        let timeout = self.config.connect_timeout;
        let named: Vec<(String, String)> = topics
            .iter()
            .map(|t| (t.clone(), self.config.topics.cluster_name(t)))
            .collect();
        let ends = tokio::task::spawn_blocking(move || {
            let mut ends = Vec::new();
            for (topic, name) in named {
                let metadata = client.client().fetch_metadata(Some(&name), timeout)?;
                let partitions = metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == name)
                    .map(|t| t.partitions().len())
                    .unwrap_or_default();
                for partition in 0..partitions as i32 {
                    let (_, high) = client
                        .client()
                        .fetch_watermarks(&name, partition, timeout)?;
                    ends.push(CommitPosition {
                        topic: topic.clone(),
                        partition,
                        next_offset: high,
                    });
                }
            }
            Ok::<_, ClientError>(ends)
        })
        .await
        .map_err(|_| KafkaError::Operation {
            operation: "read the partitions' ends",
            source: ClientError::Canceled,
        })?;
        Ok(ends.map_err(|source| KafkaError::Operation {
            operation: "read the partitions' ends",
            source,
        })?)
    }

    async fn lag(&self, group: &str, topics: &[String]) -> Result<i64, Error> {
        let names: Vec<String> = topics
            .iter()
            .map(|t| self.config.topics.cluster_name(t))
            .collect();
        Ok(self.positions.lag(&self.config.group_id(group), &names))
    }
}
