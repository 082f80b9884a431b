//! A group member's `tramline_consumer_lag{group, topic, partition}` gauges, from the
//! statistics librdkafka emits every `statistics.interval.ms` (see [`KafkaConfig`]).
//!
//! The decision to know: the lag is librdkafka's `consumer_lag` — the partition's end as the
//! consumer last saw it, less the group's committed offset — reported only for partitions
//! assigned to this member; a partition a rebalance takes away is set to 0 here (its new
//! owner reports it), so `max by (group, topic, partition)` over members is the group's lag.
//! Labels use tramline's names: the group as the application named it (without
//! [`KafkaConfig::group_prefix`]) and the topic without its cluster prefix or mapping, as the
//! DB-backed log reports them.

use crate::KafkaConfig;
use rdkafka::TopicPartitionList;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tramline_core::telemetry::CONSUMER_LAG;

/// The part of librdkafka's statistics JSON the gauges need (parsing the whole document
/// would cost more and break on any field a librdkafka version changes).
#[derive(Debug, Deserialize)]
struct Statistics {
    #[serde(default)]
    topics: HashMap<String, TopicStatistics>,
}

#[derive(Debug, Deserialize)]
struct TopicStatistics {
    /// Partition number (as a string, `"-1"` for librdkafka's internal one) → statistics.
    #[serde(default)]
    partitions: HashMap<String, PartitionStatistics>,
}

#[derive(Debug, Deserialize)]
struct PartitionStatistics {
    partition: i32,
    /// -1 while unknown (no end offset or no committed offset yet).
    consumer_lag: i64,
}

/// The lag gauges of one group member.
#[derive(Debug)]
pub(crate) struct LagGauges {
    /// The group as the application named it: the `group` label.
    group: String,
    config: Arc<KafkaConfig>,
    /// Topic on the cluster → partitions assigned to this member.
    assigned: Mutex<HashMap<String, HashSet<i32>>>,
}

impl LagGauges {
    /// The gauges of member of `group` (the application's name, without prefix).
    pub(crate) fn new(group: &str, config: Arc<KafkaConfig>) -> Self {
        LagGauges {
            group: group.to_owned(),
            config,
            assigned: Mutex::default(),
        }
    }

    /// Notes partitions assigned to this member.
    pub(crate) fn assigned(&self, partitions: &TopicPartitionList) {
        let mut assigned = self.lock();
        for e in partitions.elements() {
            assigned
                .entry(e.topic().to_owned())
                .or_default()
                .insert(e.partition());
        }
    }

    /// Notes partitions taken from this member, whose lag it no longer owes: set to 0.
    pub(crate) fn revoked(&self, partitions: &TopicPartitionList) {
        let mut assigned = self.lock();
        for e in partitions.elements() {
            if let Some(parts) = assigned.get_mut(e.topic()) {
                parts.remove(&e.partition());
            }
            self.gauge(e.topic(), e.partition()).set(0.0);
        }
    }

    /// Sets the gauges of the assigned partitions from one statistics document.
    pub(crate) fn report(&self, statistics: &[u8]) -> Result<(), serde_json::Error> {
        let statistics: Statistics = serde_json::from_slice(statistics)?;
        let assigned = self.lock();
        for (topic, stats) in &statistics.topics {
            let Some(parts) = assigned.get(topic) else {
                continue;
            };
            for p in stats.partitions.values() {
                if p.partition >= 0 && p.consumer_lag >= 0 && parts.contains(&p.partition) {
                    self.gauge(topic, p.partition).set(p.consumer_lag as f64);
                }
            }
        }
        Ok(())
    }

    /// The gauge of a partition of `topic` (its name on the cluster).
    fn gauge(&self, topic: &str, partition: i32) -> metrics::Gauge {
        metrics::gauge!(
            CONSUMER_LAG,
            "group" => self.group.clone(),
            "topic" => self.config.topics.topic_of(topic).to_owned(),
            "partition" => partition.to_string()
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<i32>>> {
        // Only a set of partition numbers is guarded: a panic cannot leave it inconsistent.
        self.assigned.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use rdkafka::Offset;

    /// librdkafka's statistics, cut down to what matters here.
    const STATISTICS: &str = r#"{
        "name": "tramline#consumer-1", "type": "consumer", "ts": 1,
        "brokers": {},
        "topics": {
            "run7.order-events": { "topic": "run7.order-events", "partitions": {
                "0":  { "partition": 0,  "desired": true,  "consumer_lag": 12, "hi_offset": 40 },
                "1":  { "partition": 1,  "desired": true,  "consumer_lag": 0 },
                "2":  { "partition": 2,  "desired": true,  "consumer_lag": -1 },
                "3":  { "partition": 3,  "desired": false, "consumer_lag": 7 },
                "-1": { "partition": -1, "desired": false, "consumer_lag": -1 }
            } }
        }
    }"#;

    fn list(parts: &[i32]) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for p in parts {
            list.add_partition_offset("run7.order-events", *p, Offset::Invalid)
                .expect("a valid partition");
        }
        list
    }

    /// (partition, value) of every lag gauge of group `view` on `order-events`.
    fn gauges(recorder: &DebuggingRecorder) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = recorder
            .snapshotter()
            .snapshot()
            .into_vec()
            .into_iter()
            .filter_map(|(key, _, _, value)| {
                let key = key.key();
                let label = |name: &str| {
                    key.labels()
                        .find(|l| l.key() == name)
                        .map(|l| l.value().to_owned())
                };
                match value {
                    DebugValue::Gauge(v)
                        if key.name() == CONSUMER_LAG
                            && label("group").as_deref() == Some("view")
                            && label("topic").as_deref() == Some("order-events") =>
                    {
                        Some((label("partition")?, v.into_inner()))
                    }
                    _ => None,
                }
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    #[test]
    fn only_assigned_partitions_with_a_known_lag_are_reported_under_tramlines_names() {
        let mut config = KafkaConfig::new("b:9092");
        config.topics.prefix = "run7.".into();
        config.group_prefix = "g7.".into();
        let lag = LagGauges::new("view", Arc::new(config));
        let recorder = DebuggingRecorder::new();
        metrics::with_local_recorder(&recorder, || {
            lag.assigned(&list(&[0, 1, 2]));
            lag.report(STATISTICS.as_bytes()).expect("statistics parse");
        });
        assert_eq!(
            gauges(&recorder),
            [("0".to_owned(), 12.0), ("1".to_owned(), 0.0)]
        );
    }

    #[test]
    fn a_revoked_partition_is_set_to_zero_and_no_longer_reported() {
        let lag = LagGauges::new(
            "view",
            Arc::new({
                let mut c = KafkaConfig::new("b:9092");
                c.topics.prefix = "run7.".into();
                c
            }),
        );
        let recorder = DebuggingRecorder::new();
        metrics::with_local_recorder(&recorder, || {
            lag.assigned(&list(&[0, 1]));
            lag.revoked(&list(&[0]));
            lag.report(STATISTICS.as_bytes()).expect("statistics parse");
        });
        assert_eq!(
            gauges(&recorder),
            [("0".to_owned(), 0.0), ("1".to_owned(), 0.0)]
        );
        assert!(lag.report(b"not json").is_err());
    }
}
