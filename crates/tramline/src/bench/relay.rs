//! `tramline bench relay`: outbox rows/s read, published and marked by the relay, from an
//! outbox pre-filled with `--orders` order events, against the outbox's own ceiling —
//! reading and marking the same rows without publishing them. Each run fills a new outbox
//! (untimed) and, on the embedded log, publishes into a new log.

use super::projection::carrier_kafka;
use super::{BenchArgs, Measured, Places, Session, TransportKind};
use anyhow::{bail, Context};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tramline_core::ports::{Outbox, Transport};
use tramline_core::relay::{OutboxRelay, RelayConfig};
use tramline_core::Envelope;
use tramline_orders::events::ALL_TOPICS;
use tramline_orders::services::{order, ServiceDb};
use tramline_sql::{DbOptions, SqlLog};

/// Rows per transaction while filling.
const FILL_BATCH: usize = 1000;

/// The `i`-th message: an order event as the order service writes it (~330 bytes).
fn message(i: u64) -> Envelope {
    let id = format!("0190a1b2-c3d4-7e5f-8a9b-{i:012x}");
    let quantity = i % 5 + 1;
    let payload = serde_json::json!({
        "eventType": "OrderCreated",
        "order": {
            "orderId": id, "customerId": format!("customer-{}", i % 1000),
            "productId": format!("product-{}", i % 50), "quantity": quantity,
            "amountCents": quantity * 1999, "shippingAddress": format!("{} Tram Street", i + 1),
            "status": "PENDING", "version": 1
        }
    });
    Envelope::new(ALL_TOPICS[(i % 3) as usize], id, payload.to_string())
        .with_header(tramline_core::envelope::EVENT_TYPE, "OrderCreated")
}

/// A new outbox holding `rows` unpublished messages.
async fn filled(places: &mut Places, name: &str, rows: u64) -> anyhow::Result<(String, ServiceDb)> {
    let url = places.store(name).await?;
    let db = ServiceDb::open(&url, &DbOptions::default(), order::migrations)
        .await
        .context("while opening the outbox's store")?;
    let messages: Vec<Envelope> = (0..rows).map(message).collect();
    for chunk in messages.chunks(FILL_BATCH) {
        let mut tx = db.begin("relay-bench").await?;
        db.outbox.append(&mut tx, chunk).await?;
        tx.commit("relay-bench").await?;
    }
    Ok((url, db))
}

/// Reads and marks every row, a relay batch at a time, publishing nothing.
async fn read_and_mark(db: &ServiceDb, batch: usize) -> anyhow::Result<u64> {
    let mut rows = 0;
    loop {
        let b = db.outbox.fetch_unpublished(batch).await?;
        if b.is_empty() {
            return Ok(rows);
        }
        db.outbox.mark_published(&b).await?;
        rows += b.messages.len() as u64;
    }
}

/// Runs the relay until it has published `rows` messages.
async fn relay<T: Transport>(db: &ServiceDb, transport: Arc<T>, rows: u64) -> anyhow::Result<u64> {
    let relay = OutboxRelay::new(Arc::clone(&db.outbox), transport, RelayConfig::default());
    let stats = relay.stats();
    let cancel = CancellationToken::new();
    let running = relay.run(cancel.clone());
    tokio::pin!(running);
    loop {
        tokio::select! {
            done = &mut running => {
                done?;
                bail!("the relay stopped before publishing every row");
            }
            _ = tokio::time::sleep(Duration::from_millis(5)) => {
                if stats.published.load(Ordering::SeqCst) >= rows {
                    cancel.cancel();
                    running.await?;
                    return Ok(stats.published.load(Ordering::SeqCst));
                }
            }
        }
    }
}

/// One run of `variant` on a new outbox.
async fn measure<T: Transport>(
    places: &mut Places,
    variant: &str,
    run: usize,
    rows: u64,
    transport: Option<Arc<T>>,
) -> anyhow::Result<Measured> {
    let (url, db) = filled(places, &format!("outbox-{variant}-{run}"), rows).await?;
    let started = Instant::now();
    let moved = match transport {
        Some(t) => relay(&db, t, rows).await,
        None => read_and_mark(&db, RelayConfig::default().batch_size).await,
    };
    let elapsed = started.elapsed();
    let left = db.outbox.backlog().await;
    db.db.close().await;
    places.drop_store(&url).await?;
    let moved = moved?;
    let left = left?;
    Ok(Measured {
        rate: moved as f64 / elapsed.as_secs_f64().max(1e-9),
        elapsed,
        // Every row moved once and none left behind.
        correct: moved == rows && left == 0,
        ..Measured::default()
    })
}

/// Runs `tramline bench relay`.
pub(crate) async fn run(args: BenchArgs, places: &mut Places) -> anyhow::Result<ExitCode> {
    let mut session = Session::new(args, 2)?;
    let (runs, rows) = (session.args.runs, session.args.orders);
    let kafka = match session.args.transport {
        TransportKind::Kafka => Some(Arc::new(
            carrier_kafka(&session.args.brokers, "relay").await?.0,
        )),
        TransportKind::Log => None,
    };
    for run in 1..=runs {
        session.step("read-and-mark", run);
        let m = measure::<SqlLog>(places, "read-and-mark", run, rows, None).await?;
        session.record("read-and-mark", run, m)?;
        session.step("relay", run);
        let m = match &kafka {
            Some(kafka) => {
                for topic in ALL_TOPICS {
                    kafka.create_topic(topic, 8).await?;
                }
                measure(places, "relay", run, rows, Some(Arc::clone(kafka))).await?
            }
            None => {
                let url = places.store(&format!("log-{run}")).await?;
                let log = SqlLog::open(&url, &DbOptions::default())
                    .await
                    .context("while opening the log")?;
                for topic in ALL_TOPICS {
                    log.create_topic(topic, 8).await?;
                }
                let m = measure(places, "relay", run, rows, Some(Arc::new(log.clone()))).await;
                log.db().close().await;
                places.drop_store(&url).await?;
                m?
            }
        };
        session.record("relay", run, m)?;
    }
    let ceiling = session.median_of("read-and-mark");
    let summary = session.summary("relay", ceiling);
    session.finish(summary)
}
