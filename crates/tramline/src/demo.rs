//! `tramline demo`: the whole order system in one process — on SQLite files by default, or on
//! MariaDB/PostgreSQL databases it creates for the run and drops afterwards; events carried by
//! the embedded log or by a Kafka cluster — driven through its lifecycle, then checked row by
//! row against the services' own tables.
//!
//! Completion is detected, not timed: the run is over when every group has committed every
//! record (on Kafka: every record this process produced), every outbox is empty, and no relay published in between — at that point no
//! effect is pending anywhere, because each consumer commits its effects (and the messages
//! they emit) before its offset.

use crate::latency::{CommitLatency, Latency, Samples};
use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tramline_core::fault::Duplicating;
use tramline_core::ports::Transport;
use tramline_core::retry::RetryPolicy;
use tramline_core::topics::{NameProblem, TopicNames};
use tramline_kafka::{KafkaConfig, KafkaTransport};
use tramline_orders::domain::order::CreateOrder;
use tramline_orders::events::ALL_TOPICS;
use tramline_orders::scenario::{Fate, Scenario};
use tramline_orders::services::order::OrderService;
use tramline_orders::system::{self, OrderStatusView, OrderSystem, Stores};
use tramline_sql::provision::Scratch;
use tramline_sql::retention::{Retention, RetentionPolicy, Table};
use tramline_sql::vacuum::Vacuum;
use tramline_sql::{Db, DbOptions, Dialect, OutboxLayout, SqlLog};

/// How the view applies events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Column-scoped, version-guarded upserts: tramline's fix.
    Upsert,
    /// The seed's read-then-write-the-whole-row, one consumer per topic: the baseline.
    Naive,
    /// A Kafka Connect JDBC sink's unguarded upsert of each record's fields: the second
    /// baseline (a redelivered older record overwrites a newer one).
    WholeRow,
}

impl From<Strategy> for system::Strategy {
    fn from(s: Strategy) -> Self {
        match s {
            Strategy::Upsert => system::Strategy::Upsert,
            Strategy::Naive => system::Strategy::Naive,
            Strategy::WholeRow => system::Strategy::WholeRow,
        }
    }
}

/// Options of `tramline demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Orders to place.
    #[arg(long, default_value_t = 10_000)]
    orders: u64,
    /// Concurrent consumer lanes of the Order Status View.
    #[arg(long, default_value_t = 3)]
    consumers: usize,
    /// Fraction of published events (0..=1) delivered a second time.
    #[arg(long, default_value_t = 0.0)]
    duplicates: f64,
    /// Hand the view each poll of events in random order.
    #[arg(long)]
    shuffle: bool,
    /// How the view applies events.
    #[arg(long, value_enum, default_value_t = Strategy::Upsert)]
    strategy: Strategy,
    /// Keep the SQLite databases in this directory (default: a temporary one, removed
    /// afterwards).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Run every store on this server instead of SQLite files: `mysql://` (or `mariadb://`)
    /// or `postgres://`. The demo creates its own database (MariaDB) or schema (PostgreSQL)
    /// per store and drops them afterwards.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// The order service's server (overrides --database-url for it).
    #[arg(long, value_name = "URL")]
    order_db: Option<String>,
    /// The payment service's server.
    #[arg(long, value_name = "URL")]
    payment_db: Option<String>,
    /// The delivery service's server.
    #[arg(long, value_name = "URL")]
    delivery_db: Option<String>,
    /// The Order Status View's server.
    #[arg(long, value_name = "URL")]
    view_db: Option<String>,
    /// The DB-backed log's server.
    #[arg(long, value_name = "URL")]
    log_db: Option<String>,
    /// Keep the databases created on servers instead of dropping them.
    #[arg(long)]
    keep_databases: bool,
    /// Connections per store's pool (default: 1 on SQLite, 8 on servers).
    #[arg(long)]
    pool_size: Option<u32>,
    /// Cancel a statement running longer than this on a server (0: no limit).
    #[arg(long, default_value_t = 60)]
    statement_timeout_secs: u64,
    /// Retries of a transient failure (deadlock, busy, lost connection) before giving up.
    #[arg(long, default_value_t = 20)]
    max_retries: usize,
    /// Print one JSON object instead of a human summary.
    #[arg(long)]
    json: bool,
    /// Partitions per topic (on the embedded log and on Kafka).
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// What carries the events between the services: the DB-backed log, or a Kafka cluster.
    #[arg(long, value_enum, default_value_t = TransportKind::Log)]
    transport: TransportKind,
    /// Kafka bootstrap brokers (with --transport kafka).
    #[arg(long, default_value = "127.0.0.1:9092", value_name = "HOST:PORT[,…]")]
    brokers: String,
    /// A librdkafka property for every Kafka client, e.g. `--kafka-property
    /// security.protocol=SSL`; repeatable.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE", value_parser = key_value)]
    kafka_properties: Vec<(String, String)>,
    /// A Kafka topic's name on the cluster, e.g. `--kafka-topic
    /// order-events=net.example.Order` (no prefix is added to it); repeatable.
    #[arg(long = "kafka-topic", value_name = "TOPIC=NAME", value_parser = key_value)]
    kafka_topics: Vec<(String, String)>,
    /// Prefix of the run's Kafka topic names and group ids (default: `tramline-demo-<run>.`,
    /// so each run starts from empty topics).
    #[arg(long)]
    kafka_prefix: Option<String>,
    /// The services' outbox table: tramline's own, or Eventuate Tram's `message` table (which
    /// Eventuate's CDC can publish too).
    #[arg(long, value_enum, default_value_t = Layout::Tramline)]
    outbox_layout: Layout,
    /// Delete the run's Kafka topics afterwards. Off by default: on the nisshi test broker a
    /// topic deletion fails other clients' requests at that moment (see docs/KAFKA.md).
    #[arg(long)]
    delete_topics: bool,
    /// Give up connecting to Kafka after this many seconds.
    #[arg(long, default_value_t = 10)]
    kafka_connect_timeout_secs: u64,
    /// Concurrent clients placing orders.
    #[arg(long, default_value_t = 4)]
    clients: u64,
    /// Orders each client places per request (a bulk import; each order still gets its own
    /// event). 1 places them one by one.
    #[arg(long, default_value_t = 50)]
    order_batch: u64,
    /// Place at most this many orders per second across the clients (0: as fast as they
    /// go): a rate the system sustains measures its latency rather than its backlog.
    #[arg(long, default_value_t = 0.0, value_name = "ORDERS_PER_SEC")]
    rate: f64,
    /// Give up when the system has not settled after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
    /// Remove published outbox rows, dedupe records and (compacted) log records this many
    /// seconds old while the demo runs; without it the defaults of `serve` apply (a day, a
    /// week), which a demo never reaches.
    #[arg(long, value_name = "S")]
    retention_secs: Option<u64>,
    /// Do not vacuum and analyze the stores' tables on a PostgreSQL server whose autovacuum
    /// is off (`retention.vacuum_stand_in = false` of `serve`): to measure what it saves.
    #[arg(long)]
    no_vacuum_stand_in: bool,
}

/// What carries the events between the services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// The DB-backed log (its own SQLite file by default): nothing to set up.
    Log,
    /// A Kafka cluster (`--brokers`).
    Kafka,
}

/// The outbox table layout, as a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// `tramline_outbox`.
    Tramline,
    /// Eventuate Tram's `message` table.
    Eventuate,
}

impl From<Layout> for OutboxLayout {
    fn from(l: Layout) -> Self {
        match l {
            Layout::Tramline => OutboxLayout::Tramline,
            Layout::Eventuate => OutboxLayout::Eventuate,
        }
    }
}

fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// What a run measured; printed as JSON with `--json`.
#[derive(Debug, Serialize)]
struct Report {
    strategy: Strategy,
    transport: TransportKind,
    orders: u64,
    consumers: usize,
    shuffle: bool,
    duplicate_fraction: f64,
    events_published: u64,
    duplicates_injected: u64,
    events_applied: u64,
    duplicates_skipped: u64,
    view_rows: usize,
    mismatched_rows: usize,
    missing_rows: usize,
    lost_updates: usize,
    corrupt_columns: usize,
    duplicate_key_errors: u64,
    parked: i64,
    /// Retries of transient failures by every consumer and relay, by cause.
    retries: std::collections::BTreeMap<&'static str, u64>,
    /// Where each store lived (URL, password hidden).
    databases: std::collections::BTreeMap<&'static str, String>,
    relay_batches: u64,
    view_batches: u64,
    elapsed_ms: u64,
    events_per_sec: f64,
    /// The orders per second asked for (0: unlimited).
    rate: f64,
    /// Milliseconds from each event's outbox commit to the commit of the view transaction
    /// that applied it.
    commit_to_view_ms: Latency,
    /// The process's peak resident set, MiB.
    peak_rss_mb: Option<f64>,
    correct: bool,
    mismatched_examples: Vec<String>,
    data_dir: Option<PathBuf>,
}

/// Expected view events per order of each fate (before any duplicates); an estimate for the
/// progress bar only, since the order service may see a delivery complete before the payment
/// approval and then emit one event fewer.
fn events_of(fate: Fate) -> u64 {
    match fate {
        Fate::Complete => 8,
        Fate::Reject | Fate::Cancel => 4,
    }
}

/// The stores of a run, in the order they are opened.
const STORES: [&str; 5] = ["log", "order", "payment", "delivery", "view"];

/// Where each store of a run lives, and the server databases created for it.
struct Placement {
    urls: Vec<(&'static str, String)>,
    created: Vec<Scratch>,
}

impl Placement {
    /// SQLite files in `dir`, unless a server URL is given for the store.
    async fn new(args: &DemoArgs, dir: &Path, run: &str) -> anyhow::Result<Placement> {
        let mut placement = Placement {
            urls: Vec::new(),
            created: Vec::new(),
        };
        for store in STORES {
            if store == "log" && args.transport != TransportKind::Log {
                continue;
            }
            let server = match store {
                "order" => &args.order_db,
                "payment" => &args.payment_db,
                "delivery" => &args.delivery_db,
                "view" => &args.view_db,
                _ => &args.log_db,
            }
            .as_ref()
            .or(args.database_url.as_ref());
            let url = match server {
                None => format!("sqlite://{}", dir.join(format!("{store}.db")).display()),
                Some(server) => {
                    let dialect = Dialect::from_url(server)?;
                    if dialect == Dialect::Sqlite {
                        bail!("{store}: give a SQLite location with --data-dir, not a URL");
                    }
                    let name = format!("tramline_demo_{run}_{store}");
                    let scratch = match Scratch::create(server, &name).await {
                        Ok(scratch) => scratch,
                        Err(e) => {
                            // Leave nothing behind: drop the stores created before this one.
                            let created = std::mem::take(&mut placement.created);
                            for scratch in created {
                                let _ = scratch.drop().await;
                            }
                            return Err(e).with_context(|| {
                                format!(
                                    "while creating database {name} for the {store} store on {}",
                                    tramline_sql::db::redact(server)
                                )
                            });
                        }
                    };
                    let url = scratch.url().to_owned();
                    placement.created.push(scratch);
                    url
                }
            };
            placement.urls.push((store, url));
        }
        Ok(placement)
    }

    fn url(&self, store: &str) -> &str {
        self.urls
            .iter()
            .find(|(s, _)| *s == store)
            .map(|(_, u)| u.as_str())
            .expect("every store of the run is placed")
    }

    /// Each store's URL with its password hidden, for the report.
    fn redacted(&self) -> std::collections::BTreeMap<&'static str, String> {
        self.urls
            .iter()
            .map(|(store, url)| (*store, tramline_sql::db::redact(url)))
            .collect()
    }

    /// Drops the server databases of the run (SQLite files go with their directory).
    async fn clean_up(self, keep: bool) -> anyhow::Result<()> {
        for scratch in self.created {
            if keep {
                eprintln!(
                    "kept database {} ({})",
                    scratch.name(),
                    tramline_sql::db::redact(scratch.url())
                );
                continue;
            }
            drop_scratch(scratch).await?;
        }
        Ok(())
    }
}

/// Drops a database a run created on a server, naming it if that fails.
pub(crate) async fn drop_scratch(scratch: Scratch) -> anyhow::Result<()> {
    let name = scratch.name().to_owned();
    scratch
        .drop()
        .await
        .with_context(|| format!("while dropping database {name}"))
}

/// Runs the demo; the exit code says whether the view came out exactly right.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    if args.consumers == 0 || args.clients == 0 {
        bail!("--consumers and --clients must be at least 1");
    }
    if !(0.0..=1.0).contains(&args.duplicates) {
        bail!(
            "--duplicates must be a fraction between 0 and 1, got {}",
            args.duplicates
        );
    }
    if args.transport == TransportKind::Log
        && (!args.kafka_topics.is_empty() || args.kafka_prefix.is_some())
    {
        bail!(
            "--kafka-topic and --kafka-prefix name Kafka topics: use them with --transport kafka"
        );
    }
    let temp;
    let dir = match &args.data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("while creating data directory {}", dir.display()))?;
            dir.clone()
        }
        None => {
            temp = tempfile::tempdir().context("while creating a temporary data directory")?;
            temp.path().to_owned()
        }
    };
    let run = uuid::Uuid::now_v7().simple().to_string();
    // The random tail of a v7 id: unique per run, short enough for identifiers.
    let run = &run[run.len() - 10..];
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        bail!("--rate must be a number of orders per second (0: unlimited)");
    }
    // The view's commit latency, kept by a recorder of this process (a process has one: if
    // another was installed first, the report shows no samples).
    let latency = CommitLatency::install(tramline_orders::view::GROUP).unwrap_or_default();
    let placement = Placement::new(&args, &dir, run).await?;
    let options = DbOptions {
        max_connections: args.pool_size,
        statement_timeout: Duration::from_secs(args.statement_timeout_secs),
        ..DbOptions::default()
    };
    let outcome = match args.transport {
        TransportKind::Log => match SqlLog::open(placement.url("log"), &options)
            .await
            .context("while opening the log")
        {
            Ok(log) => {
                let db = log.db().clone();
                let names = TopicNames::default();
                let outcome =
                    run_on(log, names, &args, &placement, &options, Some(&db), &latency).await;
                db.close().await;
                outcome
            }
            Err(e) => Err(e),
        },
        TransportKind::Kafka => match connect_kafka(&args, run).await {
            Ok(kafka) => {
                let names = kafka.config().topics.clone();
                let kafka_ = kafka.clone();
                let outcome =
                    run_on(kafka_, names, &args, &placement, &options, None, &latency).await;
                if args.delete_topics {
                    let topics: Vec<String> = ALL_TOPICS.iter().map(|t| t.to_string()).collect();
                    if let Err(e) = kafka.delete_topics(&topics).await {
                        eprintln!(
                            "could not delete the run's topics: {}",
                            tramline_core::error::sentence(&e)
                        );
                    }
                }
                outcome
            }
            Err(e) => Err(e),
        },
    };
    placement.clean_up(args.keep_databases).await?;
    outcome
}

/// The run's Kafka topic names: `--kafka-prefix` (by default one of the run's own) and the
/// `--kafka-topic` renames, refused with every problem if Kafka could not use them.
fn kafka_topic_names(args: &DemoArgs, prefix: &str) -> anyhow::Result<TopicNames> {
    let mut names = TopicNames::with_prefix(prefix);
    for (topic, name) in &args.kafka_topics {
        if names.renames.contains_key(topic) {
            bail!("--kafka-topic {topic}=…: given twice");
        }
        names.rename(topic, name);
    }
    let problems = names.problems(&ALL_TOPICS);
    if !problems.is_empty() {
        let flag = |p: &NameProblem| match p.renamed_topic(&names) {
            Some(topic) => format!("--kafka-topic {topic}={}", names.cluster_name(topic)),
            None => format!("--kafka-prefix {prefix:?}"),
        };
        let lines: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {p}", flag(p)))
            .collect();
        bail!("{}", lines.join("\n"));
    }
    Ok(names)
}

/// Connects to the Kafka cluster of `--brokers`, with the run's topic names and group prefix.
async fn connect_kafka(args: &DemoArgs, run: &str) -> anyhow::Result<KafkaTransport> {
    let mut config = KafkaConfig::new(&args.brokers);
    let prefix = args
        .kafka_prefix
        .clone()
        .unwrap_or_else(|| format!("tramline-demo-{run}."));
    config.topics = kafka_topic_names(args, &prefix)?;
    config.group_prefix = prefix;
    config.connect_timeout = Duration::from_secs(args.kafka_connect_timeout_secs);
    // A new group's first assignment waits for about half of this on some brokers.
    config.session_timeout = Duration::from_secs(10);
    config
        .properties
        .extend(args.kafka_properties.iter().cloned());
    KafkaTransport::connect(config)
        .await
        .context("while connecting to Kafka (--brokers)")
}

/// Opens the stores on `transport` (whose topics are named by `names`), runs the demo and
/// closes them.
async fn run_on<T: Transport>(
    transport: T,
    names: TopicNames,
    args: &DemoArgs,
    placement: &Placement,
    options: &DbOptions,
    log: Option<&Db>,
    latency: &Samples,
) -> anyhow::Result<ExitCode> {
    let url_of = async |store| placement.url(store).to_owned();
    let stores = Stores::open(url_of, options, args.outbox_layout.into(), &names).await?;
    let outcome = run_system(transport, args, &stores, placement, log, latency).await;
    stores.close().await;
    outcome
}

/// Runs the demo on opened stores: the whole system started by the library's builder,
/// orders placed until every one has settled, the view verified and reported.
async fn run_system<T: Transport>(
    transport: T,
    args: &DemoArgs,
    stores: &Stores,
    placement: &Placement,
    log: Option<&Db>,
    latency: &Samples,
) -> anyhow::Result<ExitCode> {
    let bus = Arc::new(Duplicating::new(transport, args.duplicates)?);
    let scenario = Scenario::default();
    let mut system = OrderSystem::builder(Arc::clone(&bus));
    let retention = args.retention_secs.map(|secs| RetentionPolicy {
        outbox: Some(Duration::from_secs(secs)),
        inbox: Some(Duration::from_secs(secs)),
        log: Some(Duration::from_secs(secs)),
        interval: Duration::from_secs((secs / 4).max(1)),
        ..RetentionPolicy::default()
    });
    if let Some(policy) = retention {
        if let Some(log) = log {
            let tables = [Table::Log];
            system = system.sweep(Retention::new(log.clone(), "log", tables, policy.clone()));
        }
        system = system.retention(policy);
    }
    system = system.vacuum_stand_in(!args.no_vacuum_stand_in);
    if let (Some(log), false) = (log, args.no_vacuum_stand_in) {
        system = system.stand_in(Vacuum::new(log.clone(), "log"));
    }
    let system = system
        .create_topics(args.partitions)
        .retry(RetryPolicy {
            max_retries: args.max_retries,
            ..RetryPolicy::default()
        })
        .order(stores.orders.clone(), None)
        .payment(stores.payments.clone(), None)
        .delivery(stores.deliveries.clone(), None)
        .operator(scenario)
        .relays(stores.outboxes(), None)
        .view(OrderStatusView {
            workers: args.consumers,
            strategy: args.strategy.into(),
            shuffle: args.shuffle,
            ..OrderStatusView::new(stores.view.clone())
        })
        .start()
        .await
        .context("while starting the system")?;
    let monitor = system.monitor();
    let view_stats = || monitor.view().expect("the demo runs the view");

    let progress = if args.json {
        ProgressBar::hidden()
    } else {
        let pb = ProgressBar::new(args.orders * 8);
        pb.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/~{len} events in the view  {msg}",
            )
            .expect("the template is valid"),
        );
        pb
    };

    let started = Instant::now();
    let expected = Arc::new(Placed::default());
    let settle = async {
        let placing = drive(
            OrderService::new(stores.orders.clone()),
            scenario,
            args.orders,
            args.clients,
            args.order_batch,
            args.rate,
            Arc::clone(&expected),
        );
        tokio::pin!(placing);
        let mut placed = false;
        let deadline = started + Duration::from_secs(args.timeout_secs);
        loop {
            tokio::select! {
                done = &mut placing, if !placed => {
                    done.context("while placing orders")?;
                    placed = true;
                    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "all orders placed");
                }
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = tokio::signal::ctrl_c() => bail!("interrupted{}", kept(&args.data_dir)),
            }
            let applied = view_stats().applied.load(Ordering::Relaxed);
            progress.set_length(expected.events.load(Ordering::Relaxed).max(args.orders));
            progress.set_position(applied);
            progress.set_message(format!(
                "{}/{} orders placed, {:.0} events/s",
                expected.orders.load(Ordering::Relaxed),
                args.orders,
                applied as f64 / started.elapsed().as_secs_f64().max(1e-3)
            ));
            if placed
                && monitor
                    .settled()
                    .await
                    .context("while checking whether the system settled")?
            {
                return Ok(started.elapsed());
            }
            if Instant::now() > deadline {
                bail!(
                    "the system did not settle within {} s (see --timeout-secs){}",
                    args.timeout_secs,
                    kept(&args.data_dir)
                );
            }
        }
    };
    let settled = system
        .run(settle, Duration::from_secs(60))
        .await
        .context("while running the system")??;
    progress.finish_and_clear();

    let verification = stores
        .verify()
        .await
        .context("while reading state for verification")?;
    let parked = monitor
        .parked()
        .await
        .context("while counting parked messages")?;
    let applied = view_stats().applied.load(Ordering::Relaxed);
    let duplicate_key_errors = monitor
        .projection()
        .map_or(0, |p| p.duplicate_key_errors.load(Ordering::Relaxed));
    let report = Report {
        strategy: args.strategy,
        transport: args.transport,
        orders: args.orders,
        consumers: args.consumers,
        shuffle: args.shuffle,
        duplicate_fraction: args.duplicates,
        events_published: monitor.published(),
        duplicates_injected: bus.injected(),
        events_applied: applied,
        duplicates_skipped: view_stats().duplicates.load(Ordering::Relaxed),
        view_rows: verification.view_rows,
        mismatched_rows: verification.mismatched_rows,
        missing_rows: verification.missing_rows,
        lost_updates: verification.lost_updates,
        corrupt_columns: verification.corrupt_columns,
        duplicate_key_errors,
        parked,
        retries: monitor.retries_by_cause(),
        databases: placement.redacted(),
        relay_batches: monitor.relay_batches(),
        view_batches: view_stats().batches.load(Ordering::Relaxed),
        elapsed_ms: settled.as_millis() as u64,
        events_per_sec: applied as f64 / settled.as_secs_f64().max(1e-9),
        rate: args.rate,
        commit_to_view_ms: latency.latency(),
        peak_rss_mb: crate::latency::peak_rss_mb(),
        correct: verification.is_correct() && duplicate_key_errors == 0 && parked == 0,
        mismatched_examples: verification.examples.clone(),
        data_dir: args.data_dir.clone(),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).context("while encoding the report")?
        );
    } else {
        print_human(&report);
    }
    Ok(if report.correct {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What the order clients have done so far, for the progress bar.
#[derive(Debug, Default)]
pub(crate) struct Placed {
    /// Orders placed.
    orders: AtomicU64,
    /// View events those orders will cause (an estimate, see [`events_of`]).
    events: AtomicU64,
}

/// Where the databases of a failed run can be looked at, if anywhere.
fn kept(data_dir: &Option<PathBuf>) -> String {
    match data_dir {
        Some(dir) => format!("; the databases are kept in {}", dir.display()),
        None => {
            "; rerun with --data-dir (SQLite) or --keep-databases (servers) to keep the databases"
                .to_owned()
        }
    }
}

/// Places `count` orders from `clients` concurrent clients, `batch` per request; cancels
/// those fated to be.
pub(crate) async fn drive(
    orders: OrderService,
    scenario: Scenario,
    count: u64,
    clients: u64,
    batch: u64,
    rate: f64,
    expected: Arc<Placed>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut set = JoinSet::new();
    for client in 0..clients {
        let orders = orders.clone();
        let expected = Arc::clone(&expected);
        set.spawn(async move {
            let mine: Vec<u64> = (client..count).step_by(clients as usize).collect();
            for chunk in mine.chunks(batch.max(1) as usize) {
                if rate > 0.0 {
                    // The chunk's first order's slot on the schedule.
                    let slot = started + Duration::from_secs_f64(chunk[0] as f64 / rate);
                    tokio::time::sleep_until(slot.into()).await;
                }
                let cmds = chunk
                    .iter()
                    .map(|&i| {
                        let quantity = (i % 5 + 1) as i64;
                        CreateOrder {
                            customer_id: format!("customer-{}", i % 1000),
                            product_id: format!("product-{}", i % 50),
                            quantity,
                            amount_cents: quantity * 1999,
                            shipping_address: format!("{} Tram Street", i + 1),
                        }
                    })
                    .collect();
                for order in orders.create_many(cmds).await? {
                    let fate = scenario.fate(&order.order_id);
                    if fate == Fate::Cancel {
                        orders.cancel(&order.order_id).await?;
                    }
                    expected
                        .events
                        .fetch_add(events_of(fate), Ordering::Relaxed);
                    expected.orders.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok::<_, tramline_orders::OrderSystemError>(())
        });
    }
    while let Some(joined) = set.join_next().await {
        joined.context("an order client panicked")??;
    }
    Ok(())
}

fn print_human(r: &Report) {
    println!(
        "{} orders through the {:?} transport, strategy {:?}, {} view consumers{}{}",
        r.orders,
        r.transport,
        r.strategy,
        r.consumers,
        if r.shuffle { ", shuffled" } else { "" },
        if r.duplicate_fraction > 0.0 {
            format!(", {:.0}% duplicated", r.duplicate_fraction * 100.0)
        } else {
            String::new()
        }
    );
    println!(
        "  events: {} published (+{} duplicates injected), {} applied to the view, {} duplicates skipped",
        r.events_published, r.duplicates_injected, r.events_applied, r.duplicates_skipped
    );
    println!(
        "  view: {} rows; {} mismatched, {} missing, {} lost updates, {} corrupt, {} duplicate-key errors, {} parked",
        r.view_rows, r.mismatched_rows, r.missing_rows, r.lost_updates, r.corrupt_columns, r.duplicate_key_errors, r.parked
    );
    for (store, url) in &r.databases {
        println!("  {store}: {url}");
    }
    println!("  retries of transient failures: {:?}", r.retries);
    println!(
        "  {:.1} s, {:.0} events/s applied to the view",
        r.elapsed_ms as f64 / 1000.0,
        r.events_per_sec
    );
    let l = &r.commit_to_view_ms;
    if l.count > 0 {
        println!(
            "  outbox commit → view commit: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            l.p50, l.p95, l.p99, l.max
        );
    }
    if let Some(rss) = r.peak_rss_mb {
        println!("  peak resident memory {rss:.0} MiB");
    }
    if r.correct {
        println!("  the view is exactly right");
    } else {
        println!(
            "  THE VIEW IS WRONG; e.g. orders {:?}",
            r.mismatched_examples
        );
    }
}
