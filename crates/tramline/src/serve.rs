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
use metrics_exporter_prometheus::PrometheusHandle;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tramline_core::ports::Transport;
use tramline_core::relay::RelayConfig;
use tramline_core::supervisor::SupervisorError;
use tramline_kafka::{KafkaConfig, KafkaTransport};
use tramline_orders::http::{ApiOptions, Probe};
use tramline_orders::services::{delivery, order, payment, Migrations, ServiceDb};
use tramline_orders::system::{
    DeclaredView, HttpOptions, OrderStatusView, OrderSystem, RelayElection, SystemBuilder,
    SystemError,
};
use tramline_orders::view;
use tramline_sql::migrate::Schema;
use tramline_sql::readmodel::ReadModelTable;
use tramline_sql::retention::{Retention, Table};
use tramline_sql::vacuum::Vacuum;
use tramline_sql::{Db, DbOptions, Dialect, SqlLog};
use tramline_views::ViewSpec;

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
            let transport = Transported {
                transport: Arc::new(log),
                probe,
                log: Some(db.clone()),
            };
            let outcome = serve(args.role, &config, transport, metrics).await;
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
                    async move {
                        kafka
                            .reachable()
                            .await
                            .map_err(|e| tramline_core::error::sentence(&e))
                    }
                })
            };
            let transport = Transported {
                transport: Arc::new(kafka),
                probe,
                log: None,
            };
            serve(args.role, &config, transport, metrics).await
        }
    }
}

/// The transport a process runs on.
struct Transported<T> {
    transport: Arc<T>,
    /// `/ready`'s check of it.
    probe: Probe,
    /// The embedded log's database, for its retention.
    log: Option<Db>,
}

/// Whether `db` answers, for `/ready`.
async fn ping(db: Db) -> Result<(), String> {
    db.ping("ready")
        .await
        .map_err(|e| tramline_core::error::sentence(&e))
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

/// The databases this process opened, by role, so `all` opens each once; closed at the end.
#[derive(Default)]
struct Opened {
    services: Vec<(&'static str, ServiceDb)>,
    views: Vec<Db>,
}

impl Opened {
    /// Opens (once) the database of `role` as `service` configures it.
    async fn service(
        &mut self,
        role: &'static str,
        service: &ServiceConfig,
        migrations: Migrations,
    ) -> anyhow::Result<ServiceDb> {
        if let Some((_, db)) = self.services.iter().find(|(r, _)| *r == role) {
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
        self.services.push((role, db.clone()));
        Ok(db)
    }

    /// Opens declared view `name`: its table installed, its consumer's and its queries' pools.
    async fn declared_view(&mut self, name: &str, spec: &ViewSpec) -> anyhow::Result<DeclaredView> {
        let (db, table) = open_view(name, spec, spec.pool_size).await?;
        self.views.push(db.clone());
        let options = DbOptions {
            max_connections: Some(spec.query_pool_size),
            ..DbOptions::default()
        };
        let queries = Db::connect(&spec.database_url, &options)
            .await
            .with_context(|| database_context(name, spec))?;
        self.views.push(queries.clone());
        Ok(DeclaredView {
            name: name.to_owned(),
            db,
            queries,
            table,
            group: spec.group_name(name).to_owned(),
            topics: spec.all_topics(),
            workers: spec.consumers,
            route: spec.route(name),
            listen: Some(spec.listen.clone()),
        })
    }

    async fn close(&self) {
        for (_, db) in &self.services {
            db.db.close().await;
        }
        for db in &self.views {
            db.close().await;
        }
    }
}

/// The roles of `role` on `transport`, their databases opened as `config` says.
async fn assemble<T: Transport>(
    role: Role,
    config: &Config,
    transport: Arc<T>,
    log: Option<Db>,
    http: HttpOptions,
    opened: &mut Opened,
) -> anyhow::Result<SystemBuilder<T>> {
    let mut system = OrderSystem::builder(transport)
        .create_topics(config.transport.partitions)
        .relay_config(RelayConfig {
            batch_size: config.relay.batch_size,
            idle_poll: Duration::from_millis(config.relay.idle_poll_ms),
            ..RelayConfig::default()
        })
        .http(http);
    let listen = |s: &ServiceConfig| Some(s.listen.clone());
    for (group, policy) in [
        (order::GROUP, config.order.parking),
        (payment::GROUP, config.payment.parking),
        (delivery::GROUP, config.delivery.parking),
        (config.view.group.as_str(), config.view.parking),
    ] {
        system = system.parking(group, policy);
    }
    if role.runs(Role::Order) {
        let db = opened
            .service("order", &config.order, order::migrations)
            .await?;
        system = system.order(db, listen(&config.order));
    }
    if role.runs(Role::Payment) {
        let db = opened
            .service("payment", &config.payment, payment::migrations)
            .await?;
        system = system.payment(db, listen(&config.payment));
    }
    if role.runs(Role::Delivery) {
        let db = opened
            .service("delivery", &config.delivery, delivery::migrations)
            .await?;
        system = system.delivery(db, listen(&config.delivery));
    }
    if role.runs(Role::View) {
        for (name, spec) in &config.views {
            system = system.declared_view(opened.declared_view(name, spec).await?);
        }
    }
    if role.runs(Role::View) && config.views.is_empty() {
        let view = ServiceConfig {
            listen: config.view.listen.clone(),
            database_url: config.view.database_url.clone(),
            pool_size: config.view.pool_size,
            parking: config.view.parking,
        };
        let db = opened.service("view", &view, view::migrations).await?;
        // The query API reads through a pool of its own, so a crowd of readers never takes
        // the connections the projection needs to keep up.
        let queries = ServiceConfig {
            pool_size: Some(config.view.query_pool_size),
            ..view
        };
        let queries = opened
            .service("view queries", &queries, view::migrations)
            .await?;
        system = system.view(OrderStatusView {
            queries: Some(queries),
            listen: Some(config.view.listen.clone()),
            group: config.view.group.clone(),
            workers: config.view.consumers,
            ..OrderStatusView::new(db)
        });
    }
    if role.runs(Role::Relay) {
        let mut outboxes = Vec::new();
        for (name, service, migrations) in [
            ("order", &config.order, order::migrations as Migrations),
            ("payment", &config.payment, payment::migrations),
            ("delivery", &config.delivery, delivery::migrations),
        ] {
            outboxes.push((name, opened.service(name, service, migrations).await?));
        }
        system = system.relays(outboxes, Some(config.relay.listen.clone()));
        if config.relay.elect {
            let defaults = RelayElection::default();
            system = system.relay_election(RelayElection {
                holder: config.relay.holder.clone().unwrap_or(defaults.holder),
                lease: Duration::from_millis(config.relay.lease_ms),
            });
        }
    }
    if let Some(policy) = config.retention.policy() {
        // The relay role sweeps the embedded log: one process does, however many read it.
        if let (Some(log), true) = (log.clone(), role.runs(Role::Relay)) {
            let tables = [Table::Log];
            system = system.sweep(Retention::new(log, "log", tables, policy.clone()));
        }
        system = system.retention(policy);
    }
    system = system.vacuum_stand_in(config.retention.vacuum_stand_in);
    if let (Some(log), true) = (
        log,
        role.runs(Role::Relay) && config.retention.vacuum_stand_in,
    ) {
        system = system.stand_in(Vacuum::new(log, "log"));
    }
    Ok(system)
}

/// Builds `role` on `transport`, serves until a signal or a failure, and stops in order.
async fn serve<T: Transport>(
    role: Role,
    config: &Config,
    transported: Transported<T>,
    metrics: PrometheusHandle,
) -> anyhow::Result<ExitCode> {
    let Transported {
        transport,
        probe: transport_probe,
        log,
    } = transported;
    let stop = stop_on_signals()?;
    let http = HttpOptions {
        api: ApiOptions {
            bearer_token: config.http.bearer_token.clone(),
            probes: vec![transport_probe],
            ..ApiOptions::default()
        },
        request_timeout: Duration::from_secs(config.http.request_timeout_secs),
        extra: Some(telemetry::metrics_route(metrics)),
        idempotency_retention: Duration::from_secs(config.http.idempotency_retention_hours * 3600),
        console: config.http.console,
    };
    let mut opened = Opened::default();
    let started = match assemble(role, config, transport, log, http, &mut opened).await {
        Ok(system) => system.start().await.map_err(|e| match &e {
            SystemError::Listen { name, .. } => {
                let section = match config.views.contains_key(name) {
                    true => format!("views.{name}"),
                    false => name.clone(),
                };
                let context = format!("while starting the {name} API ({section}.listen)");
                anyhow::Error::from(e).context(context)
            }
            _ => anyhow::Error::from(e),
        }),
        Err(e) => Err(e),
    };
    let outcome = match started {
        Ok(system) => {
            tracing::info!(role = ?role, "serving");
            let deadline = Duration::from_secs(config.shutdown.deadline_secs);
            system.run(stop.cancelled(), deadline).await
        }
        Err(e) => {
            opened.close().await;
            return Err(e);
        }
    };
    opened.close().await;
    match outcome {
        Ok(()) => {
            tracing::info!("stopped");
            Ok(ExitCode::SUCCESS)
        }
        Err(SupervisorError::Deadline { .. }) => bail!(
            "did not stop within {} s (shutdown.deadline_secs); whatever was cut short is redone on the next start",
            config.shutdown.deadline_secs
        ),
        Err(e) => Err(e.into()),
    }
}

/// A token cancelled by the first SIGTERM or SIGINT (Ctrl-C); a second one exits at once,
/// which loses nothing either (see the module).
fn stop_on_signals() -> anyhow::Result<CancellationToken> {
    let mut term =
        signal(SignalKind::terminate()).context("while installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("while installing the SIGINT handler")?;
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        let name = next_signal(&mut term, &mut int).await;
        tracing::info!(signal = name, "stopping");
        token.cancel();
        let name = next_signal(&mut term, &mut int).await;
        tracing::warn!(signal = name, "second signal: exiting at once");
        std::process::exit(130);
    });
    Ok(stop)
}

/// The next stop signal's name.
async fn next_signal(term: &mut Signal, int: &mut Signal) -> &'static str {
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
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
