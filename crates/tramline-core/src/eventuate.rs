//! Eventuate Tram's message model, so tramline and Eventuate Tram services can read each
//! other's messages: on Kafka (the record value) and in an outbox table (the `message` layout).
//!
//! An Eventuate message is a payload (a JSON document, carried as a *string*) and a map of
//! string headers. Four headers hold what an [`Envelope`] keeps in fields: `ID` (the message
//! id), `PARTITION_ID` (the partition key), `DESTINATION` (the topic) and `DATE` (an RFC 1123
//! HTTP date). Converting to the envelope moves them into the fields — except an `ID` that is
//! not a UUID, which stays as a header so that it is published again unchanged.

use crate::topics::TopicNames;
use crate::Envelope;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

/// Header holding the message id.
pub const ID: &str = "ID";
/// Header holding the partition key (for domain events, the aggregate id).
pub const PARTITION_ID: &str = "PARTITION_ID";
/// Header holding the destination channel: the topic.
pub const DESTINATION: &str = "DESTINATION";
/// Header holding when the message was created, as an RFC 1123 HTTP date.
pub const DATE: &str = "DATE";

/// Why bytes are not an Eventuate message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventuateError {
    /// Not the JSON envelope `{"payload": "...", "headers": {...}}`.
    #[error("not an Eventuate message envelope")]
    Json(#[from] serde_json::Error),
    /// A header every Eventuate message carries is missing.
    #[error("the Eventuate message has no {0} header")]
    MissingHeader(&'static str),
}

/// A message as Eventuate Tram represents it (its `MessageImpl` as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventuateMessage {
    /// The payload: a JSON document as a string.
    pub payload: String,
    /// Every header, the four envelope headers included.
    pub headers: BTreeMap<String, String>,
}

impl EventuateMessage {
    /// The message for `envelope` on `destination` (the topic's cluster name, see
    /// [`EventuateMessage::destination_of`]), with `ID`, `PARTITION_ID`, `DESTINATION` and
    /// `DATE` set.
    pub fn from_envelope(envelope: &Envelope, destination: &str) -> Self {
        EventuateMessage {
            payload: envelope.payload.clone(),
            headers: EventuateMessage::headers_of(envelope, destination),
        }
    }

    /// Where `envelope` goes on a broker whose topics are named by `names`: the
    /// `DESTINATION` header it carries (a message an Eventuate service wrote names its
    /// channel there, already as the cluster spells it), else its topic's cluster name.
    pub fn destination_of(envelope: &Envelope, names: &TopicNames) -> String {
        envelope
            .header(DESTINATION)
            .map_or_else(|| names.cluster_name(&envelope.topic), str::to_owned)
    }

    /// The headers of `envelope`'s message on `destination`: its own, plus `ID`,
    /// `PARTITION_ID`, `DESTINATION` (= `destination`) and `DATE`.
    pub fn headers_of(envelope: &Envelope, destination: &str) -> BTreeMap<String, String> {
        let mut headers = envelope.headers.clone();
        headers
            .entry(ID.to_owned())
            .or_insert_with(|| envelope.id.to_string());
        headers.insert(PARTITION_ID.to_owned(), envelope.key.clone());
        headers.insert(DESTINATION.to_owned(), destination.to_owned());
        headers
            .entry(DATE.to_owned())
            .or_insert_with(|| http_date(envelope.created_at_ms));
        headers
    }

    /// The message id of `envelope` as Eventuate knows it: an id that came from Eventuate
    /// (not a UUID) is kept in the `ID` header as it was; otherwise the envelope's id.
    pub fn id_of(envelope: &Envelope) -> String {
        envelope
            .header(ID)
            .map_or_else(|| envelope.id.to_string(), str::to_owned)
    }

    /// The JSON envelope of `envelope`'s message on `destination`, as written to a Kafka
    /// record value, without copying the payload first.
    pub fn json_of(envelope: &Envelope, destination: &str) -> String {
        #[derive(Serialize)]
        struct Borrowed<'a> {
            payload: &'a str,
            headers: BTreeMap<String, String>,
        }
        serde_json::to_string(&Borrowed {
            payload: &envelope.payload,
            headers: EventuateMessage::headers_of(envelope, destination),
        })
        .expect("strings and a string map always serialise")
    }

    /// Parses the JSON envelope, as found in a Kafka record value.
    pub fn from_json(bytes: &[u8]) -> Result<Self, EventuateError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// The JSON envelope, as written to a Kafka record value.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("strings and a string map always serialise")
    }

    /// The message id (`ID` header).
    pub fn id(&self) -> Option<&str> {
        self.headers.get(ID).map(String::as_str)
    }

    /// The partition key: `PARTITION_ID`, else the message id (as Eventuate's CDC does).
    pub fn partition_key(&self) -> Option<&str> {
        self.headers
            .get(PARTITION_ID)
            .or_else(|| self.headers.get(ID))
            .map(String::as_str)
    }

    /// The envelope of this message. `topic` is where it was read from (the `DESTINATION`
    /// header otherwise); `created_at_ms` is the record's timestamp when the transport has one
    /// (the `DATE` header otherwise, then now).
    pub fn into_envelope(
        mut self,
        topic: Option<&str>,
        created_at_ms: Option<i64>,
    ) -> Result<Envelope, EventuateError> {
        let raw_id = self
            .headers
            .get(ID)
            .cloned()
            .ok_or(EventuateError::MissingHeader(ID))?;
        let id = Envelope::id_for(&raw_id);
        let key = self
            .partition_key()
            .map(str::to_owned)
            .expect("a message with an ID header has a partition key");
        let destination = self.headers.remove(DESTINATION);
        let topic = match topic {
            Some(topic) => topic.to_owned(),
            None => destination.ok_or(EventuateError::MissingHeader(DESTINATION))?,
        };
        let date = self.headers.remove(DATE);
        let created_at_ms = created_at_ms
            .or_else(|| date.as_deref().and_then(parse_http_date))
            .unwrap_or_else(crate::envelope::now_ms);
        // A DATE that says something else than the creation time is the sender's: keep it, so
        // the message is published again unchanged.
        if let Some(date) = date.filter(|d| *d != http_date(created_at_ms)) {
            self.headers.insert(DATE.to_owned(), date);
        }
        self.headers.remove(PARTITION_ID);
        if raw_id == id.to_string() {
            self.headers.remove(ID);
        }
        Ok(Envelope {
            id,
            topic,
            key,
            headers: self.headers,
            payload: self.payload,
            created_at_ms,
        })
    }
}

/// The last instant an HTTP date can say (`Fri, 31 Dec 9999 23:59:59 GMT`), in ms since the
/// Unix epoch.
const LAST_HTTP_DATE_MS: i64 = 253_402_300_799_999;

/// `ms` since the Unix epoch as an RFC 1123 HTTP date (`Sun, 29 Nov 2026 06:02:22 GMT`);
/// a time before 1970 or after 9999, which an HTTP date cannot say (a record's timestamp is
/// whatever its producer set), is dated on the first or the last day it can.
pub fn http_date(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(ms.clamp(0, LAST_HTTP_DATE_MS) as u64);
    httpdate::fmt_http_date(at)
}

/// An HTTP date as ms since the Unix epoch, if it is one.
pub fn parse_http_date(date: &str) -> Option<i64> {
    let at = httpdate::parse_http_date(date).ok()?;
    Some(at.duration_since(UNIX_EPOCH).ok()?.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{AGGREGATE_ID, AGGREGATE_TYPE, EVENT_TYPE};

    fn order_created() -> Envelope {
        Envelope::new("order-events", "o-1", r#"{"order_id":"o-1"}"#.into())
            .with_header(EVENT_TYPE, "OrderCreated")
            .with_header(AGGREGATE_TYPE, "Order")
            .with_header(AGGREGATE_ID, "o-1")
    }

    #[test]
    fn an_envelope_round_trips_through_the_json_envelope() {
        let mut e = order_created();
        e.created_at_ms = 1_780_000_000_000; // whole seconds: DATE has second precision
        let json = EventuateMessage::from_envelope(&e, &e.topic).to_json();
        let back = EventuateMessage::from_json(json.as_bytes())
            .unwrap()
            .into_envelope(None, None)
            .unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn the_borrowed_json_is_the_messages_json() {
        let e = order_created();
        assert_eq!(
            EventuateMessage::json_of(&e, "bars.order-events"),
            EventuateMessage::from_envelope(&e, "bars.order-events").to_json()
        );
        assert_eq!(EventuateMessage::id_of(&e), e.id.to_string());
        let from_eventuate = e
            .clone()
            .with_header(ID, "0000018f2c4e9a3b-0242ac1300090000");
        assert_eq!(
            EventuateMessage::id_of(&from_eventuate),
            "0000018f2c4e9a3b-0242ac1300090000"
        );
    }

    #[test]
    fn the_json_envelope_has_eventuates_shape() {
        let e = order_created();
        let v: serde_json::Value = serde_json::from_str(
            &EventuateMessage::from_envelope(&e, "bars.order-events").to_json(),
        )
        .unwrap();
        assert!(
            v["payload"].is_string(),
            "the payload is a JSON string: {v}"
        );
        assert_eq!(v["headers"]["ID"], e.id.to_string());
        assert_eq!(v["headers"]["PARTITION_ID"], "o-1");
        assert_eq!(
            v["headers"]["DESTINATION"], "bars.order-events",
            "the destination is the topic on the cluster"
        );
        assert_eq!(v["headers"]["event-type"], "OrderCreated");
        assert_eq!(v["headers"]["event-aggregate-type"], "Order");
        assert_eq!(v["headers"]["event-aggregate-id"], "o-1");
        let date = v["headers"]["DATE"].as_str().unwrap();
        assert!(date.ends_with(" GMT"), "{date}");
        assert_eq!(
            v.as_object().unwrap().len(),
            2,
            "payload and headers only: {v}"
        );
    }

    /// A message as an Eventuate Tram Java service and its CDC publish it.
    #[test]
    fn reads_a_message_written_by_eventuate() {
        let json = r#"{"payload":"{\"orderId\":42}","headers":{"PARTITION_ID":"42","event-aggregate-type":"net.chrisrichardson.ftgo.Order","DATE":"Tue, 15 Nov 1994 08:12:31 GMT","event-aggregate-id":"42","event-type":"net.chrisrichardson.ftgo.OrderCreated","DESTINATION":"net.chrisrichardson.ftgo.Order","ID":"0000018f2c4e9a3b-0242ac1300090000"}}"#;
        let m = EventuateMessage::from_json(json.as_bytes()).unwrap();
        let e = m.clone().into_envelope(Some("orders"), None).unwrap();
        assert_eq!(e.key, "42");
        assert_eq!(e.topic, "orders");
        assert_eq!(e.payload, r#"{"orderId":42}"#);
        assert_eq!(e.created_at_ms, 784_887_151_000);
        assert_eq!(e.id, Envelope::id_for("0000018f2c4e9a3b-0242ac1300090000"));
        assert_eq!(
            e.header(ID),
            Some("0000018f2c4e9a3b-0242ac1300090000"),
            "a non-UUID id is kept"
        );
        // Published again, it is the same Eventuate message.
        let again = EventuateMessage::from_envelope(&e, "orders");
        assert_eq!(again.headers[ID], m.headers[ID]);
        assert_eq!(again.headers[DATE], m.headers[DATE]);
        assert_eq!(again.headers[DESTINATION], "orders");
    }

    #[test]
    fn a_destination_header_names_the_channel_as_it_is() {
        let mut names = TopicNames::with_prefix("bars.");
        names.rename("payment-events", "com.example.payment.Payment");
        let e = order_created();
        assert_eq!(
            EventuateMessage::destination_of(&e, &names),
            "bars.order-events"
        );
        let mut p = e.clone();
        p.topic = "payment-events".into();
        assert_eq!(
            EventuateMessage::destination_of(&p, &names),
            "com.example.payment.Payment"
        );
        let from_eventuate = e.with_header(DESTINATION, "com.example.order.Order");
        assert_eq!(
            EventuateMessage::destination_of(&from_eventuate, &names),
            "com.example.order.Order",
            "neither prefixed nor renamed"
        );
    }

    #[test]
    fn refuses_what_is_not_an_eventuate_message() {
        assert!(matches!(
            EventuateMessage::from_json(b"{\"payload\": 3}"),
            Err(EventuateError::Json(_))
        ));
        let no_id = EventuateMessage {
            payload: "{}".into(),
            headers: BTreeMap::new(),
        };
        assert!(matches!(
            no_id.into_envelope(Some("t"), None),
            Err(EventuateError::MissingHeader(ID))
        ));
    }

    /// Found by the fuzzer (fuzz/fuzz_targets/eventuate_message.rs): a creation time after
    /// the year 9999 (a `message` row's `creation_time`, a record's timestamp) panicked in
    /// `httpdate` when the message was dated, on reading it and on publishing it again.
    #[test]
    fn a_creation_time_after_the_year_9999_is_dated_on_its_last_day() {
        let headers = Envelope::parse_headers(r#"{"ID":""}"#).unwrap();
        let e = EventuateMessage {
            payload: "{}".into(),
            headers,
        }
        .into_envelope(Some(""), Some(700_000_000_000_000))
        .unwrap();
        let json = EventuateMessage::json_of(&e, &e.topic);
        let m = EventuateMessage::from_json(json.as_bytes()).unwrap();
        assert_eq!(m.headers[DATE], "Fri, 31 Dec 9999 23:59:59 GMT");
        let back = m.into_envelope(Some(""), Some(e.created_at_ms)).unwrap();
        assert_eq!(back, e, "published again unchanged");
        assert_eq!(http_date(i64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(http_date(i64::MIN), "Thu, 01 Jan 1970 00:00:00 GMT");
        // A sender's DATE is compared with the creation time's: that is dated too.
        let dated = EventuateMessage::from_json(
            br#"{"payload":"{}","headers":{"ID":"x","DATE":"Tue, 15 Nov 1994 08:12:31 GMT"}}"#,
        )
        .unwrap()
        .into_envelope(Some("t"), Some(i64::MAX))
        .unwrap();
        assert_eq!(dated.header(DATE), Some("Tue, 15 Nov 1994 08:12:31 GMT"));
    }

    #[test]
    fn partition_key_falls_back_to_the_id() {
        let m = EventuateMessage {
            payload: "{}".into(),
            headers: [(ID.to_owned(), "x".to_owned())].into(),
        };
        assert_eq!(m.partition_key(), Some("x"));
    }
}
