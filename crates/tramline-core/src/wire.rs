//! How a transport record's bytes become an [`Envelope`]: the *envelope formats* a consumer
//! can read from a topic written by other tools.
//!
//! - [`WireFormat::Eventuate`]: Eventuate Tram's JSON envelope `{"payload": "<JSON as a
//!   string>", "headers": {"ID", "PARTITION_ID", "DESTINATION", "DATE", "event-type", …}}`,
//!   what tramline itself writes to Kafka.
//! - [`WireFormat::DebeziumOutbox`]: what Debezium's outbox event router emits: the record
//!   key is the aggregate id, the value is the payload (a JSON document, or a JSON string
//!   holding one, optionally wrapped in Kafka Connect's `{"schema", "payload"}`), the event id
//!   and the event type are Kafka headers (`id`, and `eventType` when the router is told
//!   `table.fields.additional.placement=type:header:eventType`).
//! - [`WireFormat::PlainJson`]: the value is the payload itself; the event type comes from a
//!   header or a payload field (or is empty), the message id from a header or, without one,
//!   from the record's position (stable across redeliveries of that record).
//!
//! A record that does not decode still becomes an envelope, marked with [`DECODE_ERROR`], so
//! the consumer parks it instead of losing it or stopping.

use crate::eventuate::EventuateMessage;
use crate::Envelope;
use std::collections::BTreeMap;

/// Header set on an envelope whose record could not be decoded, saying why.
pub const DECODE_ERROR: &str = "tramline-decode-error";

/// The envelope format of a topic's records.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(tag = "format", rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum WireFormat {
    /// Eventuate Tram's JSON envelope (tramline's own).
    #[default]
    Eventuate,
    /// Debezium's outbox event router.
    DebeziumOutbox {
        /// The header holding the event id (the router's `table.field.event.id`, placed as
        /// the `id` header by default).
        #[serde(default = "default_id_header")]
        id_header: String,
        /// The header holding the event type (`table.fields.additional.placement =
        /// type:header:eventType`).
        #[serde(default = "default_type_header")]
        event_type_header: String,
    },
    /// A plain JSON value.
    PlainJson {
        /// The header holding the event type, if any.
        #[serde(default)]
        event_type_header: Option<String>,
        /// The payload field (dotted path) holding the event type, if any.
        #[serde(default)]
        event_type_field: Option<String>,
        /// The header holding a unique message id; without one the id is derived from the
        /// record's topic, partition and offset.
        #[serde(default)]
        id_header: Option<String>,
    },
}

fn default_id_header() -> String {
    "id".into()
}

fn default_type_header() -> String {
    "eventType".into()
}

/// A record as the transport read it.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    /// The topic, as the application names it.
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
    /// The record key, if any.
    pub key: Option<&'a [u8]>,
    /// The value.
    pub value: &'a [u8],
    /// The record's headers (name, value).
    pub headers: &'a [(&'a str, &'a [u8])],
    /// The record's timestamp in ms since the Unix epoch, if the transport has one.
    pub timestamp_ms: Option<i64>,
}

/// Why a record does not decode in its format.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Not an Eventuate envelope.
    #[error(transparent)]
    Eventuate(#[from] crate::eventuate::EventuateError),
    /// The value is not JSON.
    #[error("the record value is not JSON")]
    NotJson(#[source] serde_json::Error),
    /// A header the format needs is missing.
    #[error("the record has no {0} header")]
    MissingHeader(String),
}

impl WireFormat {
    /// The envelope of `raw`, or a marked envelope (see [`DECODE_ERROR`]) when it does not
    /// decode.
    pub fn envelope(&self, raw: &RawRecord<'_>) -> Envelope {
        self.decode(raw).unwrap_or_else(|e| {
            let mut envelope = positional(raw, String::from_utf8_lossy(raw.value).into_owned());
            envelope
                .headers
                .insert(DECODE_ERROR.to_owned(), crate::error::sentence(&e));
            envelope
        })
    }

    /// The envelope of `raw` in this format.
    pub fn decode(&self, raw: &RawRecord<'_>) -> Result<Envelope, WireError> {
        match self {
            WireFormat::Eventuate => Ok(EventuateMessage::from_json(raw.value)?
                .into_envelope(Some(raw.topic), raw.timestamp_ms)?),
            WireFormat::DebeziumOutbox {
                id_header,
                event_type_header,
            } => {
                // A tombstone (the router's `route.tombstone.on.empty.payload`) carries no
                // event: an envelope without an event type, which no view maps.
                if raw.value.is_empty() {
                    return Ok(positional(raw, "null".into()));
                }
                let value: serde_json::Value =
                    serde_json::from_slice(raw.value).map_err(WireError::NotJson)?;
                let mut envelope = positional(raw, payload_text(unwrap_connect(value)));
                let id = header(raw, id_header)
                    .ok_or_else(|| WireError::MissingHeader(id_header.clone()))?;
                envelope.id = Envelope::id_for(&id);
                envelope.headers.insert(crate::eventuate::ID.to_owned(), id);
                let event_type = header(raw, event_type_header)
                    .ok_or_else(|| WireError::MissingHeader(event_type_header.clone()))?;
                envelope
                    .headers
                    .insert(crate::envelope::EVENT_TYPE.to_owned(), event_type);
                Ok(envelope)
            }
            WireFormat::PlainJson {
                event_type_header,
                event_type_field,
                id_header,
            } => {
                let value: serde_json::Value =
                    serde_json::from_slice(raw.value).map_err(WireError::NotJson)?;
                let event_type = match (event_type_header, event_type_field) {
                    (Some(name), _) => Some(
                        header(raw, name).ok_or_else(|| WireError::MissingHeader(name.clone()))?,
                    ),
                    (None, Some(path)) => path
                        .split('.')
                        .try_fold(&value, |v, field| v.get(field))
                        .map(|v| match v {
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        }),
                    (None, None) => None,
                };
                let mut envelope = positional(raw, payload_text(value));
                if let Some(name) = id_header {
                    let id =
                        header(raw, name).ok_or_else(|| WireError::MissingHeader(name.clone()))?;
                    envelope.id = Envelope::id_for(&id);
                }
                if let Some(event_type) = event_type {
                    envelope
                        .headers
                        .insert(crate::envelope::EVENT_TYPE.to_owned(), event_type);
                }
                Ok(envelope)
            }
        }
    }
}

/// The envelope of `raw` with `payload`: its headers, its key (a JSON string key unquoted, a
/// Kafka Connect `{"schema", "payload"}` key unwrapped) and an id derived from its position.
fn positional(raw: &RawRecord<'_>, payload: String) -> Envelope {
    let at = format!("{}/{}@{}", raw.topic, raw.partition, raw.offset);
    let key = raw.key.map(record_key).unwrap_or_else(|| at.clone());
    let headers: BTreeMap<String, String> = raw
        .headers
        .iter()
        .map(|(name, value)| {
            (
                (*name).to_owned(),
                String::from_utf8_lossy(value).into_owned(),
            )
        })
        .collect();
    Envelope {
        id: Envelope::id_for(&at),
        topic: raw.topic.to_owned(),
        key,
        headers,
        payload,
        created_at_ms: raw.timestamp_ms.unwrap_or_else(crate::envelope::now_ms),
    }
}

fn header(raw: &RawRecord<'_>, name: &str) -> Option<String> {
    raw.headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

/// A record key as text: Kafka Connect's JSON converter writes a string key as a JSON string,
/// or as `{"schema": …, "payload": "…"}`; anything else is taken as it is.
fn record_key(key: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(key).map(unwrap_connect) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::from_utf8_lossy(key).into_owned(),
    }
}

/// The `payload` of Kafka Connect's `{"schema": …, "payload": …}`, or the value itself.
fn unwrap_connect(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(mut map)
            if map.len() == 2 && map.contains_key("schema") && map.contains_key("payload") =>
        {
            map.remove("payload").unwrap_or_default()
        }
        other => other,
    }
}

/// A payload as JSON text: a JSON string holding an object or an array is that document's
/// text (the outbox router without `table.expand.json.payload`), anything else its JSON.
fn payload_text(value: serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s)
            if s.trim_start().starts_with(['{', '['])
                && serde_json::from_str::<serde::de::IgnoredAny>(&s).is_ok() =>
        {
            s
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw<'a>(
        key: Option<&'a [u8]>,
        value: &'a [u8],
        headers: &'a [(&'a str, &'a [u8])],
    ) -> RawRecord<'a> {
        RawRecord {
            topic: "outbox.event.Order",
            partition: 2,
            offset: 17,
            key,
            value,
            headers,
            timestamp_ms: Some(1_700_000_000_000),
        }
    }

    #[test]
    fn eventuate_envelopes_keep_their_id_and_key() {
        let value = br#"{"payload":"{\"orderId\":\"o-1\"}","headers":{"ID":"0000018c5e4a3b2c-0242ac1200050000","PARTITION_ID":"o-1","DESTINATION":"com.example.order.Order","event-type":"com.example.order.OrderCreatedEvent"}}"#;
        let e = WireFormat::Eventuate.envelope(&raw(Some(b"o-1"), value, &[]));
        assert_eq!(e.key, "o-1");
        assert_eq!(e.payload, r#"{"orderId":"o-1"}"#);
        assert_eq!(e.event_type(), Some("com.example.order.OrderCreatedEvent"));
        assert_eq!(e.id, Envelope::id_for("0000018c5e4a3b2c-0242ac1200050000"));
        assert_eq!(e.header(DECODE_ERROR), None);
    }

    /// Found by the fuzzer (fuzz/fuzz_targets/wire_record.rs): a record whose producer
    /// stamped it after the year 9999 decoded, then panicked when it was published again
    /// (its `DATE` header is written from the timestamp).
    #[test]
    fn an_eventuate_record_stamped_after_the_year_9999_publishes_again() {
        let value = br#"{"payload":"","headers":{"ID":""}}"#;
        let record = RawRecord {
            topic: "orders",
            partition: 0,
            offset: 0,
            key: None,
            value,
            headers: &[],
            timestamp_ms: Some(782_900_900_900_000),
        };
        let e = WireFormat::Eventuate.decode(&record).unwrap();
        assert_eq!(e.created_at_ms, 782_900_900_900_000);
        let again = EventuateMessage::json_of(&e, "orders");
        let back = WireFormat::Eventuate
            .decode(&RawRecord {
                value: again.as_bytes(),
                ..record
            })
            .unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn debezium_payloads_are_read_as_strings_objects_or_connect_envelopes() {
        let headers: &[(&str, &[u8])] = &[
            ("id", b"6f1d2c1e-0000-4000-8000-000000000001"),
            ("eventType", b"OrderCreated"),
        ];
        let as_string = br#""{\"orderId\":\"o-1\",\"total\":12.5}""#;
        let as_object = br#"{"orderId":"o-1","total":12.5}"#;
        let wrapped =
            br#"{"schema":{"type":"string"},"payload":"{\"orderId\":\"o-1\",\"total\":12.5}"}"#;
        let format = WireFormat::DebeziumOutbox {
            id_header: default_id_header(),
            event_type_header: default_type_header(),
        };
        let payloads: Vec<serde_json::Value> = [&as_string[..], as_object, wrapped]
            .iter()
            .map(|value| {
                let e = format.envelope(&raw(Some(br#""o-1""#), value, headers));
                assert_eq!(e.key, "o-1", "{e:?}");
                assert_eq!(e.event_type(), Some("OrderCreated"));
                assert_eq!(
                    e.id.to_string(),
                    "6f1d2c1e-0000-4000-8000-000000000001",
                    "a UUID id stays itself"
                );
                serde_json::from_str(&e.payload).expect("JSON")
            })
            .collect();
        assert!(payloads.iter().all(|p| *p == payloads[0]), "{payloads:?}");
        assert_eq!(payloads[0]["total"], 12.5);
    }

    #[test]
    fn a_debezium_record_without_its_id_header_is_marked() {
        let format = WireFormat::DebeziumOutbox {
            id_header: default_id_header(),
            event_type_header: default_type_header(),
        };
        let e = format.envelope(&raw(Some(b"o-1"), b"{}", &[("eventType", b"X")]));
        assert_eq!(
            e.header(DECODE_ERROR),
            Some("the record has no id header"),
            "{e:?}"
        );
    }

    #[test]
    fn a_debezium_tombstone_is_no_event() {
        let format = WireFormat::DebeziumOutbox {
            id_header: default_id_header(),
            event_type_header: default_type_header(),
        };
        let e = format.envelope(&raw(Some(b"o-1"), b"", &[]));
        assert_eq!(
            (e.header(DECODE_ERROR), e.event_type()),
            (None, None),
            "{e:?}"
        );
        assert_eq!(e.key, "o-1");
    }

    #[test]
    fn plain_json_takes_its_type_from_a_field_and_its_id_from_its_position() {
        let format = WireFormat::PlainJson {
            event_type_header: None,
            event_type_field: Some("meta.type".into()),
            id_header: None,
        };
        let value = br#"{"meta":{"type":"Shipped"},"orderId":"o-9"}"#;
        let first = format.envelope(&raw(None, value, &[("trace", b"t-1")]));
        let again = format.envelope(&raw(None, value, &[("trace", b"t-1")]));
        assert_eq!(first.event_type(), Some("Shipped"));
        assert_eq!(first.header("trace"), Some("t-1"));
        assert_eq!(first.key, "outbox.event.Order/2@17", "no key: the position");
        assert_eq!(first.id, again.id, "a redelivery has the same id");
        let bad = format.envelope(&raw(None, b"not json", &[]));
        assert!(bad
            .header(DECODE_ERROR)
            .is_some_and(|e| e.starts_with("the record value is not JSON: ")));
        assert_eq!(bad.payload, "not json");
    }
}
