//! The message envelope: what the outbox stores, the transport carries and handlers receive.
//!
//! Header names follow Eventuate Tram (`event-type`, `event-aggregate-type`,
//! `event-aggregate-id`) so that the Kafka wire format can stay compatible with it.

use std::collections::BTreeMap;
use uuid::Uuid;

/// Header naming the domain event type, e.g. `OrderCreated`.
pub const EVENT_TYPE: &str = "event-type";
/// Header naming the aggregate type that emitted the event, e.g. `Order`.
pub const AGGREGATE_TYPE: &str = "event-aggregate-type";
/// Header carrying the aggregate id that emitted the event.
pub const AGGREGATE_ID: &str = "event-aggregate-id";

/// Namespace of the UUIDv5 ids derived from message ids that are not UUIDs.
const EXTERNAL_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5f0c_2a8e_61d4_4b9a_9c3e_7a1d_0e52_b6f3);

/// One message: a JSON payload with headers, addressed to a topic and partitioned by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Unique message id (UUIDv7, so ids sort by creation time); the dedupe key.
    pub id: Uuid,
    /// Destination topic.
    pub topic: String,
    /// Partition key; all messages of one key keep their order. For the order system it is
    /// the order id.
    pub key: String,
    /// Message headers (event type, aggregate type and id, trace context, …).
    pub headers: BTreeMap<String, String>,
    /// The payload, a JSON document as text.
    pub payload: String,
    /// When the message was written to the outbox, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

impl Envelope {
    /// A new message with a fresh UUIDv7 id, stamped now.
    pub fn new(topic: impl Into<String>, key: impl Into<String>, payload: String) -> Self {
        Envelope {
            id: Uuid::now_v7(),
            topic: topic.into(),
            key: key.into(),
            headers: BTreeMap::new(),
            payload,
            created_at_ms: now_ms(),
        }
    }

    /// Adds a header, builder style.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.insert(name.to_owned(), value.into());
        self
    }

    /// The value of a header, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The domain event type (`event-type` header), if present.
    pub fn event_type(&self) -> Option<&str> {
        self.header(EVENT_TYPE)
    }

    /// The envelope id of a message whose own id is `external`: the id itself when it is a
    /// UUID, otherwise a UUIDv5 derived from it. Eventuate Tram ids (`0000018f…-0242…`) are
    /// not UUIDs; deriving keeps dedupe exact, and the original travels on in the `ID` header.
    pub fn id_for(external: &str) -> Uuid {
        external
            .parse()
            .unwrap_or_else(|_| Uuid::new_v5(&EXTERNAL_ID_NAMESPACE, external.as_bytes()))
    }

    /// Headers encoded as a JSON object, as stored in outbox and log tables.
    pub fn headers_json(&self) -> String {
        serde_json::to_string(&self.headers).expect("a string map always serialises")
    }

    /// Parses headers stored by [`Envelope::headers_json`].
    pub fn parse_headers(json: &str) -> Result<BTreeMap<String, String>, serde_json::Error> {
        serde_json::from_str(json)
    }
}

/// A message as a consumer receives it: the envelope plus where it sits in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The message.
    pub envelope: Envelope,
    /// Partition of the topic it was read from.
    pub partition: i32,
    /// Offset within that partition.
    pub offset: i64,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_through_json() {
        let e = Envelope::new("order-events", "o-1", "{}".into())
            .with_header(EVENT_TYPE, "OrderCreated")
            .with_header(AGGREGATE_ID, "o-1");
        let back = Envelope::parse_headers(&e.headers_json()).unwrap();
        assert_eq!(back, e.headers);
        assert_eq!(e.event_type(), Some("OrderCreated"));
    }

    #[test]
    fn external_ids_map_to_stable_uuids() {
        let uuid = Uuid::now_v7();
        assert_eq!(Envelope::id_for(&uuid.to_string()), uuid);
        let eventuate = "0000018f2c4e9a3b-0242ac1300090000";
        assert_eq!(Envelope::id_for(eventuate), Envelope::id_for(eventuate));
        assert_eq!(Envelope::id_for(eventuate).get_version_num(), 5);
        assert_ne!(Envelope::id_for(eventuate), Envelope::id_for("other"));
    }

    #[test]
    fn ids_are_v7_and_increase() {
        let a = Envelope::new("t", "k", String::new());
        let b = Envelope::new("t", "k", String::new());
        assert_eq!(a.id.get_version_num(), 7);
        assert!(b.id > a.id);
    }
}
