//! `tramline bench projection`: events/s applied to the Order Status View from a pre-filled
//! log, by tramline's projection and two baselines — the seed's naive read-then-write and a
//! JDBC sink's whole-row upsert — beside the database's upsert ceiling, all in one
//! invocation, run by run.
//!
//! The log is filled once, by the real order system (services, operator, relays) without a
//! view, with `--duplicates` of its events published a second time after newer ones of their
//! key. Each run then starts one view consumer under a new group on a new, empty view table
//! and times it from its start until it has committed every record; the finished view is
//! compared row by row with the services' tables. The naive baseline applies one event at a
//! time and would take an hour over the full log, so it reads a second, smaller log filled the
//! same way (`--baseline-orders`); events/s is a rate, so the two compare.

use super::{ceiling, Anomalies, BenchArgs, Measured, Places, Session, TransportKind};
use crate::demo::{drive, Placed};
use anyhow::Context;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tramline_core::fault::Duplicating;
use tramline_core::ports::Transport;
use tramline_core::topics::TopicNames;
use tramline_kafka::{KafkaConfig, KafkaTransport};
use tramline_orders::scenario::Scenario;
use tramline_orders::services::order::OrderService;
use tramline_orders::system::{OrderStatusView, OrderSystem, Stores, Strategy};
use tramline_orders::view;
use tramline_sql::{DbOptions, OutboxLayout, SqlLog};

/// Partitions of every topic, as in the demo.
const PARTITIONS: i32 = 8;

/// A pre-filled log and the services' stores that produced it (to verify views against).
pub(crate) struct World<T> {
    transport: Arc<T>,
    stores: Stores,
    /// Distinct events on the view's topics.
    events: u64,
    orders: u64,
}

/// The transport of world `name`: a log store of its own, or Kafka topics under a prefix
/// of its own.
async fn carrier_log(places: &mut Places, name: &str) -> anyhow::Result<(SqlLog, TopicNames)> {
    let url = places.store(name).await?;
    let log = SqlLog::open(&url, &DbOptions::default())
        .await
        .context("while opening the log")?;
    Ok((log, TopicNames::default()))
}

/// Kafka topics and groups under a prefix of the bench's own.
pub(crate) async fn carrier_kafka(
    brokers: &str,
    name: &str,
) -> anyhow::Result<(KafkaTransport, TopicNames)> {
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let prefix = format!("tramline-bench-{}-{name}.", &tag[tag.len() - 8..]);
    let mut config = KafkaConfig::new(brokers);
    config.topics = TopicNames::with_prefix(&prefix);
    config.group_prefix = prefix;
    config.session_timeout = Duration::from_secs(10);
    let kafka = KafkaTransport::connect(config)
        .await
        .context("while connecting to Kafka (--brokers)")?;
    let names = kafka.config().topics.clone();
    Ok((kafka, names))
}

/// Waits until the system's consumers have committed every record and no outbox holds one:
/// the time since `started`.
pub(crate) async fn settle<T: Transport>(
    monitor: &tramline_orders::system::Monitor<T>,
    started: Instant,
) -> anyhow::Result<Duration> {
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if monitor
            .settled()
            .await
            .context("while checking whether the run settled")?
        {
            return Ok(started.elapsed());
        }
    }
}

/// Fills `transport` with the events of `orders` orders, driven through the real services.
async fn fill<T: Transport + Clone>(
    transport: T,
    names: &TopicNames,
    places: &mut Places,
    name: &str,
    orders: u64,
    duplicates: f64,
) -> anyhow::Result<World<T>> {
    let mut urls = Vec::new();
    for store in ["order", "payment", "delivery", "view"] {
        urls.push((store, places.store(&format!("{name}-{store}")).await?));
    }
    let url_of = async |store: &'static str| {
        urls.iter()
            .find(|(s, _)| *s == store)
            .map(|(_, u)| u.clone())
            .unwrap_or_default()
    };
    let stores = Stores::open(url_of, &DbOptions::default(), OutboxLayout::Tramline, names)
        .await
        .context("while opening the services' stores")?;
    let bus = Arc::new(Duplicating::new(transport.clone(), duplicates)?);
    let scenario = Scenario::default();
    let system = OrderSystem::builder(Arc::clone(&bus))
        .create_topics(PARTITIONS)
        .order(stores.orders.clone(), None)
        .payment(stores.payments.clone(), None)
        .delivery(stores.deliveries.clone(), None)
        .operator(scenario)
        .relays(stores.outboxes(), None)
        .start()
        .await
        .context("while starting the services that fill the log")?;
    let monitor = system.monitor();
    let placed = Arc::new(Placed::default());
    let service = OrderService::new(stores.orders.clone());
    let filled = system
        .run(
            async {
                drive(service, scenario, orders, 4, 50, 0.0, placed)
                    .await
                    .context("while placing orders")?;
                settle(&monitor, Instant::now()).await
            },
            Duration::from_secs(60),
        )
        .await
        .context("while filling the log")??;
    tracing::info!(
        orders,
        events = monitor.published(),
        secs = filled.as_secs_f64(),
        "log filled"
    );
    Ok(World {
        transport: Arc::new(transport),
        events: monitor.published(),
        stores,
        orders,
    })
}

/// One run of `strategy` over `world` on a new view table: events/s and anomalies.
async fn consume<T: Transport>(
    world: &World<T>,
    places: &mut Places,
    name: &str,
    strategy: Strategy,
    consumers: usize,
) -> anyhow::Result<Measured> {
    let url = places.store(name).await?;
    let db = view::open(&url, &DbOptions::default())
        .await
        .context("while opening the view's store")?;
    let outcome = async {
        let system = OrderSystem::builder(Arc::clone(&world.transport))
            .view(OrderStatusView {
                group: format!("bench-{name}"),
                workers: consumers,
                strategy,
                ..OrderStatusView::new(db.clone())
            })
            .start()
            .await
            .context("while starting the view")?;
        let monitor = system.monitor();
        let started = Instant::now();
        let elapsed = system
            .run(settle(&monitor, started), Duration::from_secs(60))
            .await
            .context("while running the view")??;
        let duplicate_key_errors = monitor
            .projection()
            .map_or(0, |p| p.duplicate_key_errors.load(Ordering::Relaxed));
        let parked = monitor
            .parked()
            .await
            .context("while counting parked messages")?;
        let mut anomalies = Anomalies {
            duplicate_key_errors,
            ..Anomalies::default()
        };
        let stores = Stores {
            view: db.clone(),
            ..world.stores.clone()
        };
        let verification = stores
            .verify_each(&mut |d| {
                let version = d.column.as_deref().is_some_and(|c| c.ends_with("Version"));
                if d.kind == "stale" && version {
                    match d.found {
                        Some(serde_json::Value::Null) | None => anomalies.lost_updates += 1,
                        Some(_) => anomalies.stale_overwrites += 1,
                    }
                }
            })
            .await
            .context("while verifying the view")?;
        anomalies.wrong_rows = verification.mismatched_rows as u64;
        Ok::<_, anyhow::Error>(Measured {
            rate: world.events as f64 / elapsed.as_secs_f64().max(1e-9),
            elapsed,
            correct: verification.is_correct() && duplicate_key_errors == 0 && parked == 0,
            anomalies: Some(anomalies),
            ..Measured::default()
        })
    }
    .await;
    db.db.close().await;
    places.drop_store(&url).await?;
    outcome
}

/// Runs `tramline bench projection`.
pub(crate) async fn run(args: BenchArgs, places: &mut Places) -> anyhow::Result<ExitCode> {
    match args.transport {
        TransportKind::Log => {
            let (main, names) = carrier_log(places, "log").await?;
            let (base, _) = carrier_log(places, "log-baseline").await?;
            run_on(args, places, (main, names.clone()), (base, names)).await
        }
        TransportKind::Kafka => {
            let main = carrier_kafka(&args.brokers, "main").await?;
            let base = carrier_kafka(&args.brokers, "base").await?;
            run_on(args, places, main, base).await
        }
    }
}

async fn run_on<T: Transport + Clone>(
    args: BenchArgs,
    places: &mut Places,
    main: (T, TopicNames),
    base: (T, TopicNames),
) -> anyhow::Result<ExitCode> {
    let baseline_orders = args.baseline_orders.unwrap_or(args.orders.min(10_000));
    let ceilings = ceiling::variants(args.consumers, false);
    let per_run = ceilings.len() + 3;
    let mut session = Session::new(args, per_run)?;
    let (runs, orders, consumers) = (
        session.args.runs,
        session.args.orders,
        session.args.consumers,
    );
    session
        .progress
        .set_message(format!("filling the log with {orders} orders"));
    let dup = session.args.duplicates;
    let world = fill(main.0, &main.1, places, "fill", orders, dup).await?;
    session.progress.set_message(format!(
        "filling the baseline's log with {baseline_orders} orders"
    ));
    let small = match session.args.wants("naive") {
        true => baseline_orders,
        false => 0,
    };
    let small = fill(base.0, &base.1, places, "fill-base", small, dup).await?;
    for run in 1..=runs {
        for (name, connections, upsert) in &ceilings {
            if !session.args.wants(name) {
                continue;
            }
            session.step(name, run);
            let m = ceiling::measure(
                places,
                &format!("ceiling-{name}-{run}"),
                world.orders,
                *connections,
                *upsert,
            )
            .await?;
            session.record(name, run, m)?;
        }
        let variants = [
            ("tramline", Strategy::Upsert, &world),
            ("whole-row", Strategy::WholeRow, &world),
            ("naive", Strategy::Naive, &small),
        ];
        for (name, strategy, world) in variants {
            if !session.args.wants(name) {
                continue;
            }
            session.step(name, run);
            let m = consume(world, places, &format!("{name}-{run}"), strategy, consumers)
                .await
                .with_context(|| format!("while measuring {name}"))?;
            session.record(name, run, m)?;
        }
    }
    let (_, ceiling) = ceiling::best_upsert(&session);
    let mut summary = session.summary("tramline", ceiling);
    session.baseline(&mut summary, "whole-row", world.orders);
    session.baseline(&mut summary, "naive", small.orders);
    world.stores.close().await;
    small.stores.close().await;
    session.finish(summary)
}
