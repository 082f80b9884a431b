//! An Eventuate Tram message (`@topic` optional, `@timestamp` optional, then the value): as
//! a Kafka record value (`EventuateMessage::from_json`) and as the `headers` column of
//! Eventuate's `message` table (`Envelope::parse_headers`), turned into an envelope
//! (`into_envelope`), with `parse_http_date` on the `DATE` header and on the value itself.
//!
//! Checks: nothing panics; an envelope published again (`EventuateMessage::json_of`, as the
//! relay does) and read back is the same envelope; an HTTP date read and written again is
//! the same instant.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tramline_core::eventuate::{self, EventuateMessage};
use tramline_core::Envelope;
use tramline_fuzz::{unstamped, Framed};

fuzz_target!(|data: &[u8]| {
    let input = Framed::parse(data);
    let topic = input.topic.as_deref();
    let text = String::from_utf8_lossy(input.value);
    if let Ok(message) = EventuateMessage::from_json(input.value) {
        check(message, topic, input.timestamp_ms);
    }
    if let Ok(headers) = Envelope::parse_headers(&text) {
        let message = EventuateMessage {
            payload: "{}".into(),
            headers,
        };
        check(message, topic, input.timestamp_ms);
    }
    check_date(text.trim());
});

fn check(message: EventuateMessage, topic: Option<&str>, timestamp_ms: Option<i64>) {
    if let Some(date) = message.headers.get(eventuate::DATE) {
        check_date(date);
    }
    let Ok(envelope) = message.into_envelope(topic, timestamp_ms) else {
        return;
    };
    // As the relay publishes it and a consumer of its topic reads it back, with the record's
    // timestamp (the message's creation time).
    let json = EventuateMessage::json_of(&envelope, &envelope.topic);
    let back = EventuateMessage::from_json(json.as_bytes())
        .unwrap_or_else(|e| panic!("{json} does not parse: {e}"))
        .into_envelope(Some(&envelope.topic), Some(envelope.created_at_ms))
        .unwrap_or_else(|e| panic!("{json} is no envelope: {e}"));
    assert_eq!(back, envelope, "published again as {json}");
    // Without a timestamp, the DATE header it was published with says when (unless it kept
    // a sender's DATE, which then says something else).
    if envelope.header(eventuate::DATE).is_some() {
        return;
    }
    let dated = EventuateMessage::from_json(json.as_bytes())
        .and_then(|m| m.into_envelope(None, None))
        .unwrap_or_else(|e| panic!("{json} is no envelope: {e}"));
    assert_eq!(
        unstamped(&dated),
        unstamped(&envelope),
        "published again as {json}"
    );
}

fn check_date(text: &str) {
    if let Some(ms) = eventuate::parse_http_date(text) {
        let again = eventuate::http_date(ms);
        assert_eq!(
            eventuate::parse_http_date(&again),
            Some(ms),
            "{text:?} is {ms} ms, written {again:?}"
        );
    }
}
