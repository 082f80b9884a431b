//! What tramline's fuzz targets share: the text format their inputs are read in, so that a seed
//! is a real record written out by hand, and a crashing input can be read.
//!
//! A target that takes a transport record reads its input as a [`Framed`] record: a head of
//! lines, a blank line, then the record's value, byte for byte:
//!
//! ```text
//! @topic com.example.order.Order
//! @partition 2
//! @offset 17
//! @timestamp 1700000000000
//! @key o-1
//! @format {"format": "plain-json", "event_type_field": "type"}
//! traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01
//!
//! {"payload":"{\"orderId\":\"o-1\"}","headers":{"ID":"…","PARTITION_ID":"o-1"}}
//! ```
//!
//! A head line starting with `@` sets one of the record's fields; any other head line is a
//! record header `name: value`. An input without a blank line is all value. Nothing is an
//! error: a field that does not read keeps its default, so every input is some record, and
//! the fuzzer spends its time in the decoders, not in this format.

use std::collections::BTreeMap;
use tramline_core::wire::{RawRecord, WireFormat};
use tramline_core::Envelope;

/// A transport record as a fuzz input (see the crate's documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framed<'a> {
    /// `@topic NAME`; `None` without the line.
    pub topic: Option<String>,
    /// `@partition N` (default 0).
    pub partition: i32,
    /// `@offset N` (default 0).
    pub offset: i64,
    /// `@timestamp MS`, the transport's timestamp; `None` without the line.
    pub timestamp_ms: Option<i64>,
    /// `@key BYTES`, the record key; `None` without the line.
    pub key: Option<&'a [u8]>,
    /// `@format JSON-OR-NAME`, the envelope format as a view declares it (`eventuate`,
    /// `debezium-outbox`, `plain-json` or a table such as `{"format": "plain-json", …}`).
    pub format: Option<&'a [u8]>,
    /// Every other head line, `name: value`.
    pub headers: Vec<(String, &'a [u8])>,
    /// Everything after the first blank line (or the whole input).
    pub value: &'a [u8],
}

impl<'a> Framed<'a> {
    /// Reads `data`; never fails.
    pub fn parse(data: &'a [u8]) -> Framed<'a> {
        let (head, value) = match data.windows(2).position(|w| w == b"\n\n") {
            Some(at) => (&data[..at], &data[at + 2..]),
            None => (&data[..0], data),
        };
        let mut framed = Framed {
            topic: None,
            partition: 0,
            offset: 0,
            timestamp_ms: None,
            key: None,
            format: None,
            headers: Vec::new(),
            value,
        };
        for line in head.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            if let Some(field) = line.strip_prefix(b"@") {
                let (name, rest) = split_at_byte(field, b' ');
                let text = || String::from_utf8_lossy(rest).trim().to_owned();
                match name {
                    b"topic" => framed.topic = Some(String::from_utf8_lossy(rest).into_owned()),
                    b"partition" => framed.partition = text().parse().unwrap_or(0),
                    b"offset" => framed.offset = text().parse().unwrap_or(0),
                    b"timestamp" => framed.timestamp_ms = text().parse().ok(),
                    b"key" => framed.key = Some(rest),
                    b"format" => framed.format = Some(rest),
                    _ => {}
                }
            } else {
                let (name, rest) = split_at_byte(line, b':');
                let value = rest.strip_prefix(b" ").unwrap_or(rest);
                framed
                    .headers
                    .push((String::from_utf8_lossy(name).into_owned(), value));
            }
        }
        framed
    }

    /// The topic, or `default` without an `@topic` line.
    pub fn topic_or<'s>(&'s self, default: &'s str) -> &'s str {
        self.topic.as_deref().unwrap_or(default)
    }

    /// The envelope format `@format` names, as a view declaration reads it; Eventuate's (the
    /// default) when there is none or it does not read.
    pub fn wire_format(&self) -> WireFormat {
        let Some(text) = self.format else {
            return WireFormat::Eventuate;
        };
        let text = String::from_utf8_lossy(text);
        let spec = serde_json::from_str::<tramline_views::spec::EnvelopeSpec>(&text)
            .unwrap_or_else(|_| tramline_views::spec::EnvelopeSpec::Name(text.trim().to_owned()));
        spec.format().unwrap_or_default()
    }

    /// Calls `f` with the record as a transport reads it from `topic` (or `default_topic`).
    pub fn with_raw<R>(&self, default_topic: &str, f: impl FnOnce(&RawRecord<'_>) -> R) -> R {
        let headers: Vec<(&str, &[u8])> = self
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), *value))
            .collect();
        f(&RawRecord {
            topic: self.topic_or(default_topic),
            partition: self.partition,
            offset: self.offset,
            key: self.key,
            value: self.value,
            headers: &headers,
            timestamp_ms: self.timestamp_ms,
        })
    }

    /// The record as an envelope as it is, without a wire format: the topic (or
    /// `default_topic`), the key, the headers and the value as text (invalid UTF-8 replaced,
    /// as a store's text column would hold it).
    pub fn envelope(&self, default_topic: &str) -> Envelope {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let headers: BTreeMap<String, String> = self
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), text(value)))
            .collect();
        let at = format!(
            "{}/{}@{}",
            self.topic_or(default_topic),
            self.partition,
            self.offset
        );
        Envelope {
            id: Envelope::id_for(&at),
            topic: self.topic_or(default_topic).to_owned(),
            key: self.key.map(text).unwrap_or_default(),
            headers,
            payload: text(self.value),
            created_at_ms: self.timestamp_ms.unwrap_or(0),
        }
    }
}

/// `bytes` split at the first `sep` (which neither side keeps), or all of it and nothing.
fn split_at_byte(bytes: &[u8], sep: u8) -> (&[u8], &[u8]) {
    match bytes.iter().position(|b| *b == sep) {
        Some(at) => (&bytes[..at], &bytes[at + 1..]),
        None => (bytes, &bytes[bytes.len()..]),
    }
}

/// `envelope` with `created_at_ms` set to 0: two decodes of one record without a timestamp
/// are stamped with the time of each.
pub fn unstamped(envelope: &Envelope) -> Envelope {
    Envelope {
        created_at_ms: 0,
        ..envelope.clone()
    }
}

/// Whether `text` is one JSON document.
pub fn is_json(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text).is_ok()
}
