//! A declared read model run by the consumer runtime on the embedded log, on every database:
//! Eventuate Tram style delta events (no version, ordered by their position in the log) and
//! snapshot events (a version field), duplicated and interleaved across sources, applied by
//! three lanes, end at each source's events applied in their order; a record without a view
//! key is parked, everything around it applied.

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tramline_core::consumer::{ConsumerConfig, ConsumerRuntime};
use tramline_core::envelope::EVENT_TYPE;
use tramline_core::ports::Transport;
use tramline_core::readmodel::{
    Column, ColumnType, Declaration, EventMapping, Group, ValueSource, VersionSource,
};
use tramline_core::Envelope;
use tramline_sql::{migrate, Db, DbOptions, ReadModelProjection, ReadModelTable, Schema, SqlLog};
use tramline_testkit::{on_every_database, Backend, RunningConsumer, TestDbs};

fn field(name: &str) -> ValueSource {
    ValueSource::Field(vec![name.into()])
}

/// Orders as snapshots; payments as Eventuate's delta events keyed by the payment id.
fn declaration() -> Declaration {
    let order_id = field("orderId");
    let payment = |event: &str, status: &str| {
        EventMapping::new("payments", event, "pay", order_id.clone())
            .set("payment_id", field("paymentId"))
            .set("payment_status", ValueSource::Constant(status.into()))
    };
    Declaration {
        name: "order-status".into(),
        table: "order_status".into(),
        key: Column::new("order_id", ColumnType::Text),
        groups: vec![
            Group {
                name: "ord".into(),
                columns: vec![
                    Column::new("order_status", ColumnType::Text),
                    Column::new(
                        "amount",
                        ColumnType::Decimal {
                            precision: 12,
                            scale: 2,
                        },
                    ),
                ],
                version: VersionSource::Value(field("version")),
            },
            Group {
                name: "pay".into(),
                columns: vec![
                    Column::new("payment_id", ColumnType::Text),
                    Column::new("payment_status", ColumnType::Text),
                    Column::new("reason", ColumnType::Text),
                ],
                version: VersionSource::Position,
            },
        ],
        events: vec![
            EventMapping::new("orders", "OrderChanged", "ord", order_id.clone())
                .set("order_status", field("status"))
                .set("amount", field("amount")),
            payment("PaymentCreatedEvent", "PENDING"),
            payment("PaymentApprovedEvent", "APPROVED"),
            payment("PaymentRejectedEvent", "REJECTED").set("reason", field("reason")),
        ],
    }
}

fn event(topic: &str, key: &str, event_type: &str, payload: String) -> Envelope {
    Envelope::new(topic, key, payload).with_header(EVENT_TYPE, event_type)
}

async fn deltas_and_snapshots_end_at_each_sources_order(backend: Backend) {
    let dbs = TestDbs::new(backend, "readmodel-consumer");
    let options = DbOptions::default();
    let log = SqlLog::open(&dbs.url("log").await, &options)
        .await
        .expect("log opens");
    for topic in ["orders", "payments"] {
        log.create_topic(topic, 4).await.expect("topic");
    }
    let db = Db::connect(&dbs.url("view").await, &options)
        .await
        .expect("opens");
    migrate(&db, &[Schema::Inbox]).await.expect("inbox");
    let table = ReadModelTable::new(declaration()).expect("a safe declaration");
    table.create(&db).await.expect("table");

    let mut rng = SmallRng::seed_from_u64(11);
    let mut orders = Vec::new();
    let mut payments: Vec<Vec<Envelope>> = Vec::new();
    let mut expected: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for o in 0..40 {
        let order_id = format!("order-{o:02}");
        let payment_id = format!("payment-{o:02}");
        let versions = rng.gen_range(1..4);
        for v in 1..=versions {
            let status = ["PENDING", "APPROVED", "COMPLETED"][v - 1];
            let amount = format!("{o}.{v}5");
            let payload = format!(
                r#"{{"orderId":"{order_id}","status":"{status}","amount":{amount},"version":{v}}}"#
            );
            orders.push(event("orders", &order_id, "OrderChanged", payload));
            if v == versions {
                let row = expected.entry(order_id.clone()).or_default();
                row.insert("order_status".into(), status.into());
                row.insert("amount".into(), amount);
            }
        }
        let ids = format!(r#""paymentId":"{payment_id}","orderId":"{order_id}""#);
        let mut own = vec![event(
            "payments",
            &payment_id,
            "PaymentCreatedEvent",
            format!("{{{ids}}}"),
        )];
        let row = expected.entry(order_id.clone()).or_default();
        row.insert("payment_id".into(), payment_id.clone());
        row.insert("payment_status".into(), "PENDING".into());
        if rng.gen_bool(0.5) {
            own.push(event(
                "payments",
                &payment_id,
                "PaymentApprovedEvent",
                format!("{{{ids}}}"),
            ));
            row.insert("payment_status".into(), "APPROVED".into());
        } else if rng.gen_bool(0.5) {
            let payload = format!(r#"{{{ids},"reason":"no funds"}}"#);
            own.push(event(
                "payments",
                &payment_id,
                "PaymentRejectedEvent",
                payload,
            ));
            row.insert("payment_status".into(), "REJECTED".into());
            row.insert("reason".into(), "no funds".into());
        }
        payments.push(own);
    }
    // Snapshots in any order; each payment's deltas in their own order, payments interleaved,
    // the two sources interleaved; a fifth published twice (the second time later on).
    orders.shuffle(&mut rng);
    let mut sent = Vec::new();
    let mut cursors = vec![0; payments.len()];
    let mut orders_sent = 0;
    let total = orders.len() + payments.iter().map(Vec::len).sum::<usize>();
    while sent.len() < total {
        if rng.gen_bool(0.5) && orders_sent < orders.len() {
            sent.push(orders[orders_sent].clone());
            orders_sent += 1;
            continue;
        }
        let open: Vec<usize> = (0..payments.len())
            .filter(|&p| cursors[p] < payments[p].len())
            .collect();
        if let Some(&p) = open.choose(&mut rng) {
            sent.push(payments[p][cursors[p]].clone());
            cursors[p] += 1;
        }
    }
    let mut published = sent.clone();
    for _ in 0..sent.len() / 5 {
        published.push(sent[rng.gen_range(0..sent.len())].clone());
    }
    // A record without a view key: parked, nothing else held up.
    published.push(event(
        "payments",
        "payment-99",
        "PaymentApprovedEvent",
        r#"{"paymentId":"payment-99"}"#.into(),
    ));
    for chunk in published.chunks(25) {
        log.publish(chunk).await.expect("published");
    }

    let projection = Arc::new(ReadModelProjection::new(db.clone(), "view", table));
    let config = ConsumerConfig {
        workers: 3,
        batch_max: 10,
        poll_wait: Duration::from_millis(20),
        commit_interval: Duration::from_millis(10),
        ..ConsumerConfig::default()
    };
    let topics = vec!["orders".to_owned(), "payments".to_owned()];
    let sub = log.subscribe("view", &topics).await.expect("subscribed");
    let running =
        RunningConsumer::start(ConsumerRuntime::new(Arc::clone(&projection), config), sub);
    let expected_len = expected.len();
    tramline_testkit::wait_until(
        "every order in the view",
        Duration::from_secs(60),
        async || {
            let rows = projection.applier().rows(&db).await.expect("rows");
            rows.len() == expected_len
                && rows
                    .values()
                    .all(|r| r.get("payment_status").is_some_and(Option::is_some))
                && projection.inbox().parked(&db).await.expect("parked") == 1
        },
    )
    .await;
    let stats = running.stop().await;
    let rows: BTreeMap<String, BTreeMap<String, String>> = projection
        .applier()
        .rows(&db)
        .await
        .expect("rows")
        .into_iter()
        .map(|(k, row)| {
            (
                k,
                row.into_iter().filter_map(|(c, v)| Some((c, v?))).collect(),
            )
        })
        .collect();
    let expected: BTreeMap<String, BTreeMap<String, String>> = expected
        .into_iter()
        .map(|(k, mut row)| {
            // DECIMAL(12,2) shows two decimals; SQLite keeps the JSON number's text.
            if backend != Backend::Sqlite {
                if let Some(a) = row.get_mut("amount") {
                    *a = format!("{:.2}", a.parse::<f64>().expect("a number"));
                }
            }
            (k, row)
        })
        .collect();
    assert_eq!(rows, expected);
    assert_eq!(
        stats.duplicates.load(std::sync::atomic::Ordering::Relaxed),
        (sent.len() / 5) as u64,
        "every republished record skipped"
    );
    db.close().await;
}

on_every_database!(deltas_and_snapshots_end_at_each_sources_order);
