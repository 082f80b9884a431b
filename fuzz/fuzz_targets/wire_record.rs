//! A transport record (see `tramline_fuzz::Framed`: `@format`, `@topic`, `@key`, `@timestamp`,
//! headers, then the value) decoded in its envelope format, as a Kafka subscription does.
//!
//! Checks: decoding never panics; a record that does not decode becomes an envelope marked
//! with `DECODE_ERROR` and one that decodes is that envelope; Debezium and plain-JSON payloads
//! are JSON; an Eventuate message decoded, published again (`EventuateMessage::json_of`) and
//! read back is the same envelope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tramline_core::eventuate::EventuateMessage;
use tramline_core::wire::{RawRecord, WireFormat, DECODE_ERROR};
use tramline_fuzz::{is_json, unstamped, Framed};

fuzz_target!(|data: &[u8]| {
    let input = Framed::parse(data);
    let format = input.wire_format();
    input.with_raw("orders", |raw| {
        let decoded = format.decode(raw);
        let envelope = format.envelope(raw);
        match &decoded {
            Ok(e) => {
                assert_eq!(unstamped(&envelope), unstamped(e), "envelope() is decode()");
                if format != WireFormat::Eventuate {
                    assert!(is_json(&e.payload), "not JSON: {:?}", e.payload);
                } else if raw.timestamp_ms.is_some() {
                    let again = EventuateMessage::json_of(e, raw.topic);
                    let back = WireFormat::Eventuate.decode(&RawRecord {
                        value: again.as_bytes(),
                        ..*raw
                    });
                    match back {
                        Ok(back) => assert_eq!(&back, e, "published again: {again}"),
                        Err(why) => panic!("published again, {again} does not decode: {why}"),
                    }
                }
            }
            Err(_) => assert!(envelope.header(DECODE_ERROR).is_some(), "{envelope:?}"),
        }
    });
});
