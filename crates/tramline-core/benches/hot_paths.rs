//! Micro-benchmarks of tramline-core's hot paths (docs/MICROBENCH.md): encoding an envelope
//! for the transport and decoding a transport record back in each wire format, and the
//! consumer runtime splitting a polled batch into per-key lanes.
//!
//! `cargo bench --workspace --bench hot_paths` measures; `cargo test --release --workspace
//! --benches` runs each benchmark once, as a check that they still run.

use divan::counter::{BytesCount, ItemsCount};
use divan::{black_box, Bencher};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tramline_core::consumer::{ConsumerConfig, ConsumerRuntime};
use tramline_core::envelope::{AGGREGATE_ID, AGGREGATE_TYPE, EVENT_TYPE};
use tramline_core::eventuate::EventuateMessage;
use tramline_core::offsets::CommitPosition;
use tramline_core::partitioner::partition_for;
use tramline_core::ports::{Applied, Handler, Subscription};
use tramline_core::wire::{RawRecord, WireFormat};
use tramline_core::{Envelope, Error, Record};

fn main() {
    divan::main();
}

/// The order system's topics (tramline-orders' `events.rs`).
const TOPICS: [&str; 3] = ["order-events", "payment-events", "delivery-events"];

/// An order id as the services make them (a UUIDv7's text).
fn order_id(n: usize) -> String {
    format!("0190f1c2-7a1e-7c3b-9d2a-{n:012x}")
}

/// An `OrderCreated` snapshot as the order service writes it (camelCase, the full aggregate):
/// about 300 bytes of JSON.
fn order_payload(order_id: &str) -> String {
    format!(
        concat!(
            r#"{{"orderId":"{}","customerId":"customer-7f3c9a12-0042","#,
            r#""productId":"sku-espresso-grinder-burr-conical-64mm","quantity":2,"#,
            r#""amountCents":25980,"shippingAddress":"Hauptstraße 17, Hinterhaus 3. OG, "#,
            r#"10115 Berlin, Germany","status":"PENDING","version":1}}"#
        ),
        order_id
    )
}

/// The `OrderCreated` event's envelope, with the headers the order system sets.
fn order_created(n: usize) -> Envelope {
    let id = order_id(n);
    Envelope::new(TOPICS[0], id.clone(), order_payload(&id))
        .with_header(EVENT_TYPE, "OrderCreated")
        .with_header(AGGREGATE_TYPE, "Order")
        .with_header(AGGREGATE_ID, id)
}

/// Encoding an envelope for the transport.
mod encode {
    use super::*;

    /// The Kafka record value: Eventuate's JSON envelope (`EventuateMessage::json_of`).
    #[divan::bench]
    fn eventuate_json(bencher: Bencher) {
        let envelope = order_created(1);
        let len = EventuateMessage::json_of(&envelope, TOPICS[0]).len();
        bencher
            .counter(BytesCount::new(len))
            .bench(|| EventuateMessage::json_of(black_box(&envelope), black_box(TOPICS[0])));
    }

    /// The headers column of the outbox and the embedded log (`Envelope::headers_json`).
    #[divan::bench]
    fn headers_json(bencher: Bencher) {
        let envelope = order_created(1);
        bencher.bench(|| black_box(&envelope).headers_json());
    }
}

/// Decoding a transport record into an envelope, per wire format.
mod decode {
    use super::*;

    /// A record as the transport reads it: the order's key, `value`, `headers`.
    fn record<'a>(
        key: &'a [u8],
        value: &'a [u8],
        headers: &'a [(&'a str, &'a [u8])],
    ) -> RawRecord<'a> {
        RawRecord {
            topic: TOPICS[0],
            partition: 3,
            offset: 41_017,
            key: Some(key),
            value,
            headers,
            timestamp_ms: Some(1_767_225_600_000),
        }
    }

    /// What tramline writes to Kafka: Eventuate's JSON envelope, the payload as a string.
    #[divan::bench]
    fn eventuate(bencher: Bencher) {
        let envelope = order_created(1);
        let value = EventuateMessage::json_of(&envelope, TOPICS[0]);
        let raw = record(envelope.key.as_bytes(), value.as_bytes(), &[]);
        bencher.counter(BytesCount::new(value.len())).bench(|| {
            WireFormat::Eventuate
                .decode(black_box(&raw))
                .expect("decodes")
        });
    }

    /// Debezium's outbox event router: the payload as the value, id and type as headers.
    #[divan::bench]
    fn debezium_outbox(bencher: Bencher) {
        let envelope = order_created(1);
        let id = envelope.id.to_string();
        let headers: &[(&str, &[u8])] = &[("id", id.as_bytes()), ("eventType", b"OrderCreated")];
        let raw = record(
            envelope.key.as_bytes(),
            envelope.payload.as_bytes(),
            headers,
        );
        let format = WireFormat::DebeziumOutbox {
            id_header: "id".into(),
            event_type_header: "eventType".into(),
        };
        bencher
            .counter(BytesCount::new(envelope.payload.len()))
            .bench(|| format.decode(black_box(&raw)).expect("decodes"));
    }

    /// A plain JSON value, its type read from a payload field, its id from its position.
    #[divan::bench]
    fn plain_json(bencher: Bencher) {
        let envelope = order_created(1);
        let raw = record(envelope.key.as_bytes(), envelope.payload.as_bytes(), &[]);
        let format = WireFormat::PlainJson {
            event_type_header: None,
            event_type_field: Some("status".into()),
            id_header: None,
        };
        bencher
            .counter(BytesCount::new(envelope.payload.len()))
            .bench(|| format.decode(black_box(&raw)).expect("decodes"));
    }

    /// The headers column back into a map (`Envelope::parse_headers`), as a log poll does.
    #[divan::bench]
    fn parse_headers(bencher: Bencher) {
        let json = order_created(1).headers_json();
        bencher.bench(|| Envelope::parse_headers(black_box(&json)).expect("parses"));
    }
}

/// The consumer runtime's fetcher routing one polled batch to its lanes by key hash.
///
/// The routing is inside `ConsumerRuntime::run`, so this runs the whole runtime over a
/// subscription that yields one batch and then stops it: each iteration starts the lanes,
/// routes and queues every record, applies them with a handler that only counts, and
/// commits the offsets. The fixed part (starting and stopping three lanes) is in both
/// sizes; their difference is the cost per record.
mod lanes {
    use super::*;

    /// Lanes, as the order system's view consumer runs (`ConsumerConfig::default`).
    const WORKERS: usize = 3;

    /// Records spread over this many orders, so each lane gets several keys.
    const ORDERS: usize = 48;

    /// Hands out one batch, then cancels the run on the next poll.
    struct OneBatch {
        batch: Option<Vec<Record>>,
        stop: CancellationToken,
    }

    impl Subscription for OneBatch {
        async fn poll(&mut self, _max: usize, _wait: Duration) -> Result<Vec<Record>, Error> {
            match self.batch.take() {
                Some(batch) => Ok(batch),
                None => {
                    self.stop.cancel();
                    Ok(Vec::new())
                }
            }
        }

        async fn commit(&self, positions: &[CommitPosition]) -> Result<(), Error> {
            black_box(positions);
            Ok(())
        }
    }

    /// Applies nothing: reads each record's payload length, so the work is the runtime's.
    struct Counting;

    impl Handler for Counting {
        async fn apply(&self, batch: &[Record]) -> Result<Applied, Error> {
            let bytes: usize = batch.iter().map(|r| r.envelope.payload.len()).sum();
            black_box(bytes);
            Ok(Applied {
                applied: batch.len(),
                ..Applied::default()
            })
        }

        async fn park(&self, _record: &Record, _reason: &Error) -> Result<(), Error> {
            Ok(())
        }
    }

    /// `n` order events as a poll returns them: three topics of four partitions, keys over
    /// [`ORDERS`] orders, dense offsets per partition.
    fn polled(n: usize) -> Vec<Record> {
        let mut next: HashMap<(&str, i32), i64> = HashMap::new();
        (0..n)
            .map(|i| {
                let topic = TOPICS[i % TOPICS.len()];
                let mut envelope = order_created(i % ORDERS);
                envelope.topic = topic.to_owned();
                let partition = partition_for(&envelope.key, 4);
                let offset = next.entry((topic, partition)).or_insert(0);
                *offset += 1;
                Record {
                    envelope,
                    partition,
                    offset: *offset - 1,
                }
            })
            .collect()
    }

    #[divan::bench(args = [64, 512])]
    fn route_and_apply(bencher: Bencher, records: usize) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let runtime = ConsumerRuntime::new(
            Arc::new(Counting),
            ConsumerConfig {
                name: "bench".into(),
                workers: WORKERS,
                ..ConsumerConfig::default()
            },
        );
        let batch = polled(records);
        bencher
            .counter(ItemsCount::new(records))
            .with_inputs(|| {
                let stop = CancellationToken::new();
                let subscription = OneBatch {
                    batch: Some(batch.clone()),
                    stop: stop.clone(),
                };
                (subscription, stop)
            })
            .bench_local_values(|(subscription, stop)| {
                rt.block_on(runtime.run(subscription, stop))
                    .expect("the run ends cleanly");
            });
        let applied = runtime
            .stats()
            .applied
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(applied >= records as u64, "every record was applied");
    }
}
