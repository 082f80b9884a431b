//! The Kafka transport: tramline's [`Transport`](tramline_core::ports::Transport) on a Kafka
//! cluster, through librdkafka (built from source, so no system library is needed).
//!
//! Delivery guarantee: at least once, ordered per key. The producer is idempotent with
//! `acks=all` and partitions by the message key with Kafka's Java partitioner (murmur2), so
//! one order's events land in one partition in commit order — in the same partition as on the
//! embedded log. The consumer commits offsets by hand, only for records whose effect the
//! handler's database transaction has committed; when a rebalance takes partitions away, the
//! consumer runtime first finishes their records and commits them (see
//! [`Revocation`](tramline_core::ports::Revocation)). Records are Eventuate Tram's JSON
//! envelope, keyed by `PARTITION_ID` (see [`tramline_core::eventuate`]), so Eventuate Tram
//! services and tramline services read each other's topics.

pub mod config;
pub mod error;
mod lag;
pub mod subscription;
pub mod transport;

pub use config::KafkaConfig;
pub use error::KafkaError;
pub use subscription::KafkaSubscription;
pub use transport::KafkaTransport;
