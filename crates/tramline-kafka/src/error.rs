//! What can fail on Kafka, and which failures a retry can fix.

use rdkafka::error::{KafkaError as ClientError, RDKafkaErrorCode};
use std::time::Duration;
use tramline_core::{Error, RetryCause};

/// The store name in errors and retry counters.
pub(crate) const STORE: &str = "kafka";

/// A failure of the Kafka transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaError {
    /// No broker answered within the connect timeout.
    #[error("cannot reach the Kafka brokers at {brokers} within {timeout:?} (is the broker running and the address right?)")]
    Unreachable {
        /// The bootstrap brokers tried.
        brokers: String,
        /// How long it waited.
        timeout: Duration,
        /// librdkafka's last word.
        source: ClientError,
    },
    /// librdkafka refused the configuration (an unknown or invalid property).
    #[error("invalid Kafka client configuration")]
    Config(#[source] ClientError),
    /// An operation on the cluster failed.
    #[error("{operation} failed")]
    Operation {
        /// What was being done, e.g. `create topic`, `produce`, `commit offsets`.
        operation: &'static str,
        /// librdkafka's error.
        source: ClientError,
    },
    /// The cluster answered an admin request for one topic with an error.
    #[error("{operation} {topic} failed: {code}")]
    Topic {
        /// What was being done.
        operation: &'static str,
        /// The topic's name on the cluster.
        topic: String,
        /// The broker's error code.
        code: RDKafkaErrorCode,
    },
    /// The consumer's polling thread stopped (the client was closed or failed fatally).
    #[error("the consumer of group {group} stopped: {reason}")]
    ConsumerStopped {
        /// The group id on the cluster.
        group: String,
        /// Why.
        reason: String,
    },
}

impl KafkaError {
    /// The operation's name, for [`Error::Store`].
    fn operation(&self) -> &'static str {
        match self {
            KafkaError::Unreachable { .. } => "connect",
            KafkaError::Config(_) => "configure client",
            KafkaError::Operation { operation, .. } | KafkaError::Topic { operation, .. } => {
                operation
            }
            KafkaError::ConsumerStopped { .. } => "poll",
        }
    }

    /// Why a retry may succeed, or `None` when it cannot.
    pub fn retry_cause(&self) -> Option<RetryCause> {
        match self {
            KafkaError::Operation { source, .. } => {
                source.rdkafka_error_code().and_then(code_retry_cause)
            }
            KafkaError::Topic { code, .. } => code_retry_cause(*code),
            KafkaError::Unreachable { .. }
            | KafkaError::Config(_)
            | KafkaError::ConsumerStopped { .. } => None,
        }
    }
}

/// Broker and client codes that a later attempt can outlive: the broker is away, electing a
/// leader, or busy. Everything else (authorisation, sizes, unknown topics, fatal client
/// states) is permanent.
fn code_retry_cause(code: RDKafkaErrorCode) -> Option<RetryCause> {
    use RDKafkaErrorCode as C;
    match code {
        C::MessageTimedOut | C::RequestTimedOut | C::OperationTimedOut => Some(RetryCause::Timeout),
        C::BrokerTransportFailure
        | C::AllBrokersDown
        | C::Resolve
        | C::NetworkException
        | C::BrokerNotAvailable
        | C::LeaderNotAvailable
        | C::NotLeaderForPartition
        | C::NotCoordinator
        | C::CoordinatorNotAvailable
        | C::CoordinatorLoadInProgress
        | C::NotEnoughReplicas
        | C::NotEnoughReplicasAfterAppend
        | C::ReplicaNotAvailable
        | C::QueueFull
        | C::RebalanceInProgress
        | C::WaitingForCoordinator
        | C::UnknownTopicOrPartition
        | C::Retry
        // A broker's internal failure (UNKNOWN_SERVER_ERROR), e.g. its storage refusing one
        // request under load: the next attempt usually succeeds, and a lasting one still
        // fails once the retries run out.
        | C::Unknown => Some(RetryCause::Connection),
        _ => None,
    }
}

impl From<KafkaError> for Error {
    fn from(e: KafkaError) -> Self {
        let (operation, retry) = (e.operation(), e.retry_cause());
        let source: tramline_core::BoxError = match e {
            // The store error names the operation already.
            KafkaError::Operation { source, .. } => Box::new(source),
            other => Box::new(other),
        };
        Error::Store {
            store: STORE.into(),
            operation,
            retry,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_away_is_transient_and_a_refusal_is_not() {
        let away = KafkaError::Operation {
            operation: "produce",
            source: ClientError::MessageProduction(RDKafkaErrorCode::AllBrokersDown),
        };
        assert_eq!(away.retry_cause(), Some(RetryCause::Connection));
        assert!(Error::from(away).is_transient());
        let refused = KafkaError::Operation {
            operation: "produce",
            source: ClientError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed),
        };
        assert!(!Error::from(refused).is_transient());
    }
}
