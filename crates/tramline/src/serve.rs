//! `tramline serve <role>`: the order system as long-running services. Each role runs in its
//! own process on its own database and talks to the others only through the transport (Kafka
//! or the DB-backed log); `all` runs every role in one process.
//!
//! Stopping is ordered so that nothing is lost: on the first SIGTERM or Ctrl-C the listeners
//! stop accepting and finish the requests they have, then relays and consumers stop
//! (consumers drain their lanes and commit their offsets), all within
//! `shutdown.deadline_secs`. A second signal exits at once, which loses nothing either: a
//! command's effect and its outbox message commit together, and an offset is committed only
//! after the effects of its records, so whatever was cut short is simply redone.

use crate::config::{Config, ServiceConfig, TransportKind};
use crate::telemetry;
use anyhow::{bail, Context};
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tramline_core::consumer::{ConsumerConfig, ConsumerRuntime};
use tramline_core::ports::{Handler, Transport};
use tramline_core::relay::{OutboxRelay, RelayConfig};
use tramline_kafka::{KafkaConfig, KafkaTransport};
use tramline_orders::events::ALL_TOPICS;
use tramline_orders::http::problem::Problem;
use tramline_orders::http::{self, ApiOptions, Probe};
use tramline_orders::services::delivery::{self, DeliveryReaction, DeliveryService};
use tramline_orders::services::order::{self, OrderReaction, OrderService};
use tramline_orders::services::payment::{self, PaymentReaction, PaymentService};
use tramline_orders::services::{Migrations, Reaction, ServiceDb, Subscriber};
use tramline_orders::view::projection::OrderStatusProjection;
use tramline_orders::view::{self, OrderStatusQuery};
use tramline_sql::migrate::Schema;
use tramline_sql::readmodel::{ReadModelProjection, ReadModelTable};
use tramline_sql::{Db, DbOptions, Dialect, SqlLog};
use tramline_views::http::ViewQuery;
use tramline_views::ViewSpec;
use utoipa::OpenApi;

/// Options of `tramline serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The part of the system this process runs.
    #[arg(value_enum)]
    role: Role,
    /// The configuration file (without it: the defaults; `TRAMLINE_<SECTION>__<KEY>`
    /// variables apply either way).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// A part of the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// The order service: its API, and its consumer of payment and delivery events.
    Order,
    /// The payment service: its API, and its consumer of order events.
    Payment,
    /// The delivery service: its API, and its consumer of payment events.
    Delivery,
    /// The relays publishing the three services' outboxes.
    Relay,
    /// The Order Status View: its consumer of all three topics and its query API.
    View,
    /// Every role in one process.
    All,
}

impl Role {
    fn runs(self, role: Role) -> bool {
        self == Role::All || self == role
    }
}

/// Runs `tramline serve` until a stop signal; the exit code says whether it stopped cleanly.
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load_or_explain(args.config.as_deref())?;
    telemetry::init_service_logs(&config.log)?;
    let metrics = telemetry::install_metrics()?;
    let options = |pool_size| DbOptions {
        max_connections: pool_size,
        ..DbOptions::default()
    };
    match config.transport.kind {
        TransportKind::Log => {
            let url = &config.transport.log_url;
            prepare_sqlite(url)?;
            let log = SqlLog::open(url, &options(None)).await.with_context(|| {
                format!(
                    "while opening the log at {} (transport.log_url)",
                    tramline_sql::db::redact(url)
                )
            })?;
            let db = log.db().clone();
            let probe = {
                let db = db.clone();
                Probe::new("the log's database", move || ping(db.clone()))
            };
            let outcome = serve(args.role, &config, Arc::new(log), metrics, probe).await;
            db.close().await;
            outcome
        }
        TransportKind::Kafka => {
            let kafka = KafkaTransport::connect(kafka_config(&config))
                .await
                .context("while connecting to Kafka (transport.brokers)")?;
            let probe = {
                let kafka = kafka.clone();
                Probe::new("the Kafka brokers", move || {
                    let kafka = kafka.clone();
                    async move { kafka.reachable().await.map_err(|e| e.to_string()) }
                })
            };
            serve(args.role, &config, Arc::new(kafka), metrics, probe).await
        }
    }
}

/// Whether `db` answers, for `/ready`.
async fn ping(db: Db) -> Result<(), String> {
    db.ping("ready").await.map_err(|e| e.to_string())
}

pub(crate) fn kafka_config(config: &Config) -> KafkaConfig {
    let t = &config.transport;
    let mut kafka = KafkaConfig::new(&t.brokers);
    kafka.topics = t.topic_names();
    kafka.formats = config.topic_formats();
    kafka.group_prefix = t.group_prefix.clone();
    kafka.session_timeout = Duration::from_secs(t.session_timeout_secs);
    kafka
        .properties
        .extend(t.kafka.iter().map(|(k, v)| (k.clone(), v.clone())));
    kafka
}

/// Creates the directory of a `sqlite://` database, so the defaults work from an empty
/// directory.
pub(crate) fn prepare_sqlite(url: &str) -> anyhow::Result<()> {
    if Dialect::from_url(url)? != Dialect::Sqlite {
        return Ok(());
    }
    let path = url
        .trim_start_matches("sqlite://")
        .split('?')
        .next()
        .unwrap_or_default();
    if let Some(dir) = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("while creating the directory {}", dir.display()))?;
    }
    Ok(())
}

type Tasks = JoinSet<(String, anyhow::Result<()>)>;

/// What one process runs, built role by role.
struct Process<T> {
    config: Config,
    transport: Arc<T>,
    api: ApiOptions,
    metrics: PrometheusHandle,
    /// Cancels relays and consumers (after the listeners stopped).
    work: CancellationToken,
    /// Relays and consumers.
    tasks: Tasks,
    /// Listeners not yet bound: name, configured address, routes.
    listeners: Vec<(&'static str, String, Router)>,
    /// Every database opened, by role, so `all` opens each once; closed at the end.
    opened: Vec<(&'static str, ServiceDb)>,
    /// The declared views' databases, closed at the end.
    view_dbs: Vec<Db>,
}

impl<T: Transport> Process<T> {
    async fn open(
        &mut self,
        role: &'static str,
        service: &ServiceConfig,
        migrations: Migrations,
    ) -> anyhow::Result<ServiceDb> {
        if let Some((_, db)) = self.opened.iter().find(|(r, _)| *r == role) {
            return Ok(db.clone());
        }
        prepare_sqlite(&service.database_url)?;
        let options = DbOptions {
            max_connections: service.pool_size,
            ..DbOptions::default()
        };
        let db = ServiceDb::open(&service.database_url, &options, migrations)
            .await
            .with_context(|| {
                // "view queries" is configured in [view].
                let section = role.split(' ').next().unwrap_or(role);
                format!(
                    "while opening the {role} database at {} ({section}.database_url)",
                    tramline_sql::db::redact(&service.database_url)
                )
            })?;
        self.opened.push((role, db.clone()));
        Ok(db)
    }

    /// Subscribes `handler` as `group` to `topics` and runs it until the work stops.
    async fn consume<H: Handler>(
        &mut self,
        group: &str,
        topics: &[&str],
        handler: H,
        workers: usize,
    ) -> anyhow::Result<()> {
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        let subscription = self
            .transport
            .subscribe(group, &topics)
            .await
            .with_context(|| format!("while subscribing {group} to {}", topics.join(", ")))?;
        let runtime = ConsumerRuntime::new(
            Arc::new(handler),
            ConsumerConfig {
                name: group.to_owned(),
                workers,
                ..ConsumerConfig::default()
            },
        );
        let cancel = self.work.clone();
        let name = format!("{group} consumer");
        self.tasks.spawn(async move {
            let outcome = runtime.run(subscription, cancel).await;
            (name, outcome.map_err(anyhow::Error::from))
        });
        Ok(())
    }

    /// Opens a command service's database and starts its reaction to upstream events (as
    /// consumer group `group` on `topics`) and its idempotency purge; the database, for its API.
    async fn command_service<R: Reaction>(
        &mut self,
        name: &'static str,
        service: &ServiceConfig,
        migrations: Migrations,
        group: &str,
        topics: &[&str],
        reaction: R,
    ) -> anyhow::Result<ServiceDb> {
        let db = self.open(name, service, migrations).await?;
        let handler = Subscriber::new(db.clone(), group, reaction);
        let workers = ConsumerConfig::default().workers;
        self.consume(group, topics, handler, workers).await?;
        self.purge_idempotency_keys(name, &db);
        Ok(db)
    }

    /// Forgets the service's `Idempotency-Key` records older than the retention, at start
    /// and every hour. A failed purge is retried at the next one: it never stops the service.
    fn purge_idempotency_keys(&mut self, service: &'static str, db: &ServiceDb) {
        let store = db.idempotency.clone();
        let retention = Duration::from_secs(self.config.http.idempotency_retention_hours * 3600);
        let cancel = self.work.clone();
        self.tasks.spawn(async move {
            let mut every_hour = tokio::time::interval(Duration::from_secs(3600));
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = every_hour.tick() => {}
                }
                match store.purge_older_than(retention).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(service, purged = n, "idempotency keys expired"),
                    Err(e) => tracing::warn!(service, error = %e, "could not purge idempotency keys; retrying in an hour"),
                }
            }
            (format!("{service} idempotency purge"), Ok(()))
        });
    }

    /// A service's routes on its listener, with `/metrics`, request metrics and the request
    /// time limit.
    fn listen(&mut self, name: &'static str, address: &str, routes: Router) {
        let limit = Duration::from_secs(self.config.http.request_timeout_secs);
        let routes = routes
            .merge(telemetry::metrics_route(self.metrics.clone()))
            .layer(axum::middleware::from_fn(move |r, n| {
                time_limit(limit, r, n)
            }))
            .layer(axum::middleware::from_fn(move |r, n| {
                telemetry::http_metrics(name, r, n)
            }));
        self.listeners.push((name, address.to_owned(), routes));
    }

    /// Runs the declared view `name`: installs its table (refusing one that does not match),
    /// starts its consumer and prepares its query API on its own listener and pool.
    async fn declared_view(&mut self, name: &str, spec: &ViewSpec) -> anyhow::Result<()> {
        let (db, table) = open_view(name, spec, spec.pool_size).await?;
        self.view_dbs.push(db.clone());
        let group = spec.group_name(name).to_owned();
        let topics = spec.all_topics();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        let projection = ReadModelProjection::new(db, &group, table.clone());
        self.consume(&group, &topics, projection, spec.consumers)
            .await?;
        let options = DbOptions {
            max_connections: Some(spec.query_pool_size),
            ..DbOptions::default()
        };
        let queries = Db::connect(&spec.database_url, &options)
            .await
            .with_context(|| database_context(name, spec))?;
        self.view_dbs.push(queries.clone());
        let route = spec.route(name);
        let document = tramline_views::http::openapi(name, &route, &table)
            .merge_from(http::OperationsApi::openapi());
        let routes =
            tramline_views::http::router(ViewQuery::new(queries.clone(), Arc::new(table), route));
        let routes = http::service(routes, document, queries, &self.api);
        // Listener names label metrics for the process's life.
        let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
        self.listen(name, &spec.listen, routes);
        Ok(())
    }

    /// Opens the databases of `role`, starts its consumers and relays and prepares its
    /// listeners.
    async fn build(&mut self, role: Role) -> anyhow::Result<()> {
        let config = self.config.clone();
        if role.runs(Role::Order) {
            let db = self
                .command_service(
                    "order",
                    &config.order,
                    order::migrations,
                    order::GROUP,
                    order::TOPICS,
                    OrderReaction,
                )
                .await?;
            let routes = http::order::router(OrderService::new(db), &self.api);
            self.listen("order", &config.order.listen, routes);
        }
        if role.runs(Role::Payment) {
            let db = self
                .command_service(
                    "payment",
                    &config.payment,
                    payment::migrations,
                    payment::GROUP,
                    payment::TOPICS,
                    PaymentReaction,
                )
                .await?;
            let routes = http::payment::router(PaymentService::new(db), &self.api);
            self.listen("payment", &config.payment.listen, routes);
        }
        if role.runs(Role::Delivery) {
            let db = self
                .command_service(
                    "delivery",
                    &config.delivery,
                    delivery::migrations,
                    delivery::GROUP,
                    delivery::TOPICS,
                    DeliveryReaction,
                )
                .await?;
            let routes = http::delivery::router(DeliveryService::new(db), &self.api);
            self.listen("delivery", &config.delivery.listen, routes);
        }
        for (name, spec) in &config.views {
            if role.runs(Role::View) {
                self.declared_view(name, spec).await?;
            }
        }
        if role.runs(Role::View) && config.views.is_empty() {
            let view = ServiceConfig {
                listen: config.view.listen.clone(),
                database_url: config.view.database_url.clone(),
                pool_size: config.view.pool_size,
            };
            let db = self.open("view", &view, view::migrations).await?;
            let group = config.view.group.clone();
            let handler = OrderStatusProjection::consumer(&db, &group);
            self.consume(&group, &ALL_TOPICS, handler, config.view.consumers)
                .await?;
            // The query API reads through a pool of its own, so a crowd of readers never
            // takes the connections the projection needs to keep up.
            let queries = ServiceConfig {
                pool_size: Some(config.view.query_pool_size),
                ..view
            };
            let queries = self
                .open("view queries", &queries, view::migrations)
                .await?;
            let routes = http::view::router(OrderStatusQuery::new(queries), &self.api);
            self.listen("view", &config.view.listen, routes);
        }
        if role.runs(Role::Relay) {
            let outboxes = [
                ("order", &config.order, order::migrations as Migrations),
                ("payment", &config.payment, payment::migrations),
                ("delivery", &config.delivery, delivery::migrations),
            ];
            let mut opened = Vec::new();
            for (name, service, migrations) in outboxes {
                let db = self.open(name, service, migrations).await?;
                let relay = OutboxRelay::new(
                    Arc::clone(&db.outbox),
                    Arc::clone(&self.transport),
                    RelayConfig {
                        name: name.to_owned(),
                        batch_size: config.relay.batch_size,
                        idle_poll: Duration::from_millis(config.relay.idle_poll_ms),
                        ..RelayConfig::default()
                    },
                );
                let cancel = self.work.clone();
                self.tasks.spawn(async move {
                    let outcome = relay.run(cancel).await;
                    (
                        format!("{name} relay"),
                        outcome.map_err(anyhow::Error::from),
                    )
                });
                opened.push(db);
            }
            // Ready when the broker and every outbox's database answer.
            let mut probes = self.api.probes.clone();
            let others = ["the payment database", "the delivery database"];
            for (db, name) in opened[1..].iter().zip(others) {
                let db = db.db.clone();
                probes.push(Probe::new(name, move || ping(db.clone())));
            }
            let options = ApiOptions {
                bearer_token: None,
                probes,
            };
            let document = http::OperationsApi::openapi();
            let routes = http::service(Router::new(), document, opened[0].db.clone(), &options);
            self.listen("relay", &config.relay.listen, routes);
        }
        Ok(())
    }
}

/// Opens declared view `name`'s database with a pool of `pool_size`, its inbox schema and
/// its table (created if missing; refused, naming the columns, if it does not match).
pub(crate) async fn open_view(
    name: &str,
    spec: &ViewSpec,
    pool_size: Option<u32>,
) -> anyhow::Result<(Db, ReadModelTable)> {
    let table = spec.table(name).map_err(|problems| {
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("the declaration is not valid:\n  {}", lines.join("\n  "))
    })?;
    prepare_sqlite(&spec.database_url)?;
    let options = DbOptions {
        max_connections: pool_size,
        ..DbOptions::default()
    };
    let db = Db::connect(&spec.database_url, &options)
        .await
        .with_context(|| database_context(name, spec))?;
    tramline_sql::migrate::migrate(&db, &[Schema::Inbox])
        .await
        .with_context(|| database_context(name, spec))?;
    table
        .install(&db)
        .await
        .with_context(|| format!("while installing view {name}'s table"))?;
    Ok((db, table))
}

fn database_context(name: &str, spec: &ViewSpec) -> String {
    format!(
        "while opening view {name}'s database at {} (views.{name}.database_url)",
        tramline_sql::db::redact(&spec.database_url)
    )
}

/// Answers 503 (a problem) when a request takes longer than `limit`.
async fn time_limit(limit: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request took longer than {} s (http.request_timeout_secs)",
                limit.as_secs()
            ),
        )
        .into_response(),
    }
}

/// The stop signals: SIGTERM and SIGINT (Ctrl-C).
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate())
                .context("while installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("while installing the SIGINT handler")?,
        })
    }

    /// The next signal's name.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Builds `role` on `transport`, serves until a signal or a failure, and stops in order.
async fn serve<T: Transport>(
    role: Role,
    config: &Config,
    transport: Arc<T>,
    metrics: PrometheusHandle,
    transport_probe: Probe,
) -> anyhow::Result<ExitCode> {
    let mut signals = Signals::install()?;
    // The order system's topics unless only declared views run; the views' topics (a
    // topic that exists is left as it is).
    let mut topics: Vec<String> = Vec::new();
    if role != Role::View || config.views.is_empty() {
        topics.extend(ALL_TOPICS.iter().map(|t| t.to_string()));
    }
    if role.runs(Role::View) {
        topics.extend(config.views.values().flat_map(ViewSpec::all_topics));
    }
    for topic in &topics {
        transport
            .create_topic(topic, config.transport.partitions)
            .await
            .with_context(|| format!("while creating topic {topic}"))?;
    }
    let mut process = Process {
        config: config.clone(),
        transport,
        api: ApiOptions {
            bearer_token: config.http.bearer_token.clone(),
            probes: vec![transport_probe],
        },
        metrics,
        work: CancellationToken::new(),
        tasks: Tasks::new(),
        listeners: Vec::new(),
        opened: Vec::new(),
        view_dbs: Vec::new(),
    };
    let built = process.build(role).await;
    let stop_http = CancellationToken::new();
    let mut servers = JoinSet::new();
    let bound = match built {
        Ok(()) => bind(&mut process, &mut servers, &stop_http).await,
        Err(e) => Err(e),
    };
    let failure = match bound {
        Err(e) => Some(e),
        Ok(()) => {
            tracing::info!(role = ?role, "serving");
            tokio::select! {
                name = signals.next() => {
                    tracing::info!(signal = name, deadline_secs = config.shutdown.deadline_secs, "stopping");
                    None
                }
                Some(joined) = process.tasks.join_next() => Some(ended(joined)),
                Some(joined) = servers.join_next() => Some(match joined {
                    Ok(Ok(())) => anyhow::anyhow!("a listener stopped unexpectedly"),
                    Ok(Err(e)) => anyhow::Error::from(e).context("while serving HTTP"),
                    Err(e) => anyhow::Error::from(e).context("a listener panicked"),
                }),
            }
        }
    };
    let deadline = Duration::from_secs(config.shutdown.deadline_secs);
    let stopping = stop(&mut process, &mut servers, &stop_http);
    let stopped = tokio::select! {
        r = tokio::time::timeout(deadline, stopping) => r,
        name = signals.next() => {
            tracing::warn!(signal = name, "second signal: exiting at once");
            std::process::exit(130);
        }
    };
    if stopped.is_err() {
        // Past the deadline: cut the rest short (their transactions roll back, their
        // records are redelivered) so the databases can close.
        servers.abort_all();
        process.tasks.abort_all();
        while process.tasks.join_next().await.is_some() {}
    }
    for (_, db) in &process.opened {
        db.db.close().await;
    }
    for db in &process.view_dbs {
        db.close().await;
    }
    let errors = match stopped {
        Ok(errors) => errors,
        Err(_) => bail!(
            "did not stop within {} s (shutdown.deadline_secs); whatever was cut short is redone on the next start",
            config.shutdown.deadline_secs
        ),
    };
    if let Some(e) = failure {
        return Err(e);
    }
    if let Some(e) = errors.into_iter().next() {
        return Err(e);
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Binds every listener and starts serving it until `stop` fires.
async fn bind<T>(
    process: &mut Process<T>,
    servers: &mut JoinSet<std::io::Result<()>>,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    for (name, address, routes) in std::mem::take(&mut process.listeners) {
        let listener = TcpListener::bind(&address)
            .await
            .with_context(|| format!("while listening on {address} ({name}.listen)"))?;
        tracing::info!(service = name, address = %address, "listening");
        let stop = stop.clone();
        servers.spawn(async move {
            axum::serve(listener, routes)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
    }
    Ok(())
}

/// Stops in order: listeners (finishing their requests), then relays and consumers. Returns
/// what failed on the way.
async fn stop<T>(
    process: &mut Process<T>,
    servers: &mut JoinSet<std::io::Result<()>>,
    stop_http: &CancellationToken,
) -> Vec<anyhow::Error> {
    let mut errors = Vec::new();
    stop_http.cancel();
    while let Some(joined) = servers.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(anyhow::Error::from(e).context("while serving HTTP")),
            Err(e) => errors.push(anyhow::Error::from(e).context("a listener panicked")),
        }
    }
    process.work.cancel();
    while let Some(joined) = process.tasks.join_next().await {
        let (name, outcome) = match joined {
            Ok(r) => r,
            Err(e) => {
                errors.push(anyhow::Error::from(e).context("a relay or consumer panicked"));
                continue;
            }
        };
        match outcome {
            Ok(()) => tracing::info!(task = %name, "stopped"),
            Err(e) => errors.push(e.context(format!("while stopping the {name}"))),
        }
    }
    errors
}

/// The error of a relay or consumer that ended while the process was serving.
fn ended(joined: Result<(String, anyhow::Result<()>), tokio::task::JoinError>) -> anyhow::Error {
    match joined {
        Ok((name, Ok(()))) => anyhow::anyhow!("the {name} stopped unexpectedly"),
        Ok((name, Err(e))) => e.context(format!("while running the {name}")),
        Err(e) => anyhow::Error::from(e).context("a relay or consumer panicked"),
    }
}
