//! The order system assembled in one place, for `tramline demo`, `tramline serve` and the
//! in-process end-to-end tests alike: the roles a process runs (command services with their
//! consumers, relays, the Order Status View, declared views, the back-office operator) and
//! their HTTP APIs, on one transport, under one [`Supervisor`] — the first failure stops the
//! rest, and stopping drains the listeners first (their last requests still reach the
//! outboxes), then relays and consumers (which commit their offsets), within a deadline.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tramline_orders::services::{order, payment, delivery, ServiceDb};
//! use tramline_orders::system::{OrderStatusView, OrderSystem};
//! use tramline_orders::view;
//! use tramline_sql::{DbOptions, SqlLog};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let options = DbOptions::default();
//! let log = Arc::new(SqlLog::open("sqlite://data/log.db", &options).await?);
//! let open = |url, m| ServiceDb::open(url, &options, m);
//! let orders = open("sqlite://data/order.db", order::migrations).await?;
//! let payments = open("sqlite://data/payment.db", payment::migrations).await?;
//! let deliveries = open("sqlite://data/delivery.db", delivery::migrations).await?;
//! let view_db = open("sqlite://data/view.db", view::migrations).await?;
//! let system = OrderSystem::builder(log)
//!     .create_topics(4)
//!     .order(orders.clone(), None)
//!     .payment(payments.clone(), None)
//!     .delivery(deliveries.clone(), None)
//!     .relays([("order", orders), ("payment", payments), ("delivery", deliveries)], None)
//!     .view(OrderStatusView::new(view_db))
//!     .start()
//!     .await?;
//! system.run(tokio::signal::ctrl_c(), Duration::from_secs(30)).await?;
//! # Ok(())
//! # }
//! ```

use crate::events::ALL_TOPICS;
use crate::http::{self, ApiOptions, Probe};
use crate::scenario::{Operator, Scenario};
use crate::services::delivery::{self, DeliveryReaction, DeliveryService};
use crate::services::order::{self, OrderReaction, OrderService};
use crate::services::payment::{self, PaymentReaction, PaymentService};
use crate::services::{Reaction, ServiceDb, Subscriber};
use crate::view::naive::NaiveProjection;
use crate::view::projection::{OrderStatusProjection, ProjectionStats};
use crate::view::verify::{verify_stores, verify_stores_each, Difference, Verification};
use crate::view::whole_row::WholeRowProjection;
use crate::view::{self, OrderStatusQuery};
use axum::Router;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tramline_core::changes::ChangeFeed;
use tramline_core::consumer::{ConsumerConfig, ConsumerRuntime, ConsumerStats, LaneBy};
use tramline_core::ports::{Handler, Transport};
use tramline_core::relay::{OutboxRelay, RelayConfig, RelayStats};
use tramline_core::retry::{RetryCounters, RetryPolicy};
use tramline_core::supervisor::{Stage, Supervisor, SupervisorError};
use tramline_core::topics::TopicNames;
use tramline_core::Error;
use tramline_sql::election::{holder_name, SqlElection};
use tramline_sql::parked::{ParkPolicy, ParkedOps};
use tramline_sql::readmodel::{ReadModelProjection, ReadModelTable};
use tramline_sql::retention::{Retention, RetentionPolicy, Table};
use tramline_sql::vacuum::Vacuum;
use tramline_sql::{Db, DbOptions, Inbox, OutboxLayout, SqlError, SqlOutbox};
use tramline_views::console::{self, ConsoleConfig, LiveRows};
use tramline_views::http::ViewQuery;
use utoipa::OpenApi;

/// Why the system could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SystemError {
    /// A topic could not be created.
    #[error("cannot create topic {topic}")]
    Topic {
        /// The topic.
        topic: String,
        /// The transport's error.
        #[source]
        source: Error,
    },
    /// A consumer group could not join its topics.
    #[error("cannot subscribe consumer group {group} to {}", topics.join(", "))]
    Subscribe {
        /// The group.
        group: String,
        /// Its topics.
        topics: Vec<String>,
        /// The transport's error.
        #[source]
        source: Error,
    },
    /// A listener could not bind its address.
    #[error("cannot listen on {address}")]
    Listen {
        /// The listener (`order`, `view`, a declared view's name, …).
        name: String,
        /// The address asked for.
        address: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A role needs another that was not given.
    #[error("{0}")]
    Missing(&'static str),
    /// A store's database could not be opened or migrated.
    #[error("cannot open the {store} database")]
    Open {
        /// The store: `order`, `payment`, `delivery` or `view`.
        store: &'static str,
        /// Why.
        #[source]
        source: crate::OrderSystemError,
    },
}

/// The order system's four databases: the three services' (state, outbox, inbox) and the
/// Order Status View's.
#[derive(Debug, Clone)]
pub struct Stores {
    /// The order service's.
    pub orders: ServiceDb,
    /// The payment service's.
    pub payments: ServiceDb,
    /// The delivery service's.
    pub deliveries: ServiceDb,
    /// The Order Status View's.
    pub view: ServiceDb,
}

impl Stores {
    /// Opens and migrates each store at the URL `url_of` gives for its name (`order`,
    /// `payment`, `delivery`, `view`), the services' outboxes in `layout`, naming topics by
    /// `topics`.
    pub async fn open(
        url_of: impl AsyncFn(&'static str) -> String,
        options: &DbOptions,
        layout: OutboxLayout,
        topics: &TopicNames,
    ) -> Result<Stores, SystemError> {
        let open = async |store: &'static str, migrations| {
            let url = url_of(store).await;
            ServiceDb::open_with_layout(&url, options, migrations, layout, topics.clone())
                .await
                .map_err(|source| SystemError::Open { store, source })
        };
        Ok(Stores {
            orders: open("order", order::migrations).await?,
            payments: open("payment", payment::migrations).await?,
            deliveries: open("delivery", delivery::migrations).await?,
            view: open("view", view::migrations).await?,
        })
    }

    /// The three outboxes, named by their services, for [`SystemBuilder::relays`].
    pub fn outboxes(&self) -> [(&'static str, ServiceDb); 3] {
        [
            ("order", self.orders.clone()),
            ("payment", self.payments.clone()),
            ("delivery", self.deliveries.clone()),
        ]
    }

    /// Compares the whole view with the services' tables ([`verify_stores`]).
    pub async fn verify(&self) -> Result<Verification, crate::OrderSystemError> {
        verify_stores(
            &OrderService::new(self.orders.clone()),
            &PaymentService::new(self.payments.clone()),
            &DeliveryService::new(self.deliveries.clone()),
            &OrderStatusQuery::new(self.view.clone()),
        )
        .await
    }

    /// [`Stores::verify`], handing every difference to `out` as it is found
    /// ([`verify_stores_each`]).
    pub async fn verify_each(
        &self,
        out: &mut (dyn FnMut(Difference) + Send),
    ) -> Result<Verification, crate::OrderSystemError> {
        verify_stores_each(
            &OrderService::new(self.orders.clone()),
            &PaymentService::new(self.payments.clone()),
            &DeliveryService::new(self.deliveries.clone()),
            &OrderStatusQuery::new(self.view.clone()),
            out,
        )
        .await
    }

    /// Closes every pool.
    pub async fn close(&self) {
        for db in [&self.orders, &self.payments, &self.deliveries, &self.view] {
            db.db.close().await;
        }
    }
}

/// The order system's builder; see the [module](self).
#[derive(Debug)]
pub struct OrderSystem;

impl OrderSystem {
    /// A builder of the roles to run on `transport`.
    pub fn builder<T: Transport>(transport: Arc<T>) -> SystemBuilder<T> {
        SystemBuilder {
            transport,
            retry: RetryPolicy::default(),
            relay: RelayConfig::default(),
            partitions: None,
            http: None,
            order: None,
            payment: None,
            delivery: None,
            operator: None,
            relays: None,
            election: None,
            view: None,
            declared: Vec::new(),
            retention: None,
            sweeps: Vec::new(),
            vacuum: true,
            stand_ins: Vec::new(),
            parking: BTreeMap::new(),
        }
    }
}

/// How the Order Status View consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// tramline's projection: per-column guarded upserts (exact).
    #[default]
    Upsert,
    /// The seed's naive read-then-write, one consumer per topic (a baseline; it breaks).
    Naive,
    /// A Kafka Connect JDBC sink's unguarded upsert of each record's fields (a baseline: a
    /// redelivered older record overwrites a newer one).
    WholeRow,
}

/// The Order Status View role: its consumer and, with an address, its query API.
#[derive(Debug, Clone)]
pub struct OrderStatusView {
    /// The view's database (the consumer's pool).
    pub db: ServiceDb,
    /// A pool of its own for the query API, so readers never take the consumer's
    /// connections; `None`: the consumer's.
    pub queries: Option<ServiceDb>,
    /// Where the query API listens; `None`: no API.
    pub listen: Option<String>,
    /// The consumer group.
    pub group: String,
    /// Concurrent workers (lanes by key).
    pub workers: usize,
    /// How it applies events.
    pub strategy: Strategy,
    /// Shuffles each polled batch (a fault injection: reordering across keys).
    #[cfg(feature = "fault")]
    pub shuffle: bool,
}

impl OrderStatusView {
    /// The view on `db` as group [`view::GROUP`] with the default workers, no API.
    pub fn new(db: ServiceDb) -> Self {
        OrderStatusView {
            db,
            queries: None,
            listen: None,
            group: view::GROUP.to_owned(),
            workers: ConsumerConfig::default().workers,
            strategy: Strategy::Upsert,
            #[cfg(feature = "fault")]
            shuffle: false,
        }
    }

    /// Whether each polled batch is shuffled (only with the `fault` feature).
    fn shuffled(&self) -> bool {
        #[cfg(feature = "fault")]
        return self.shuffle;
        #[cfg(not(feature = "fault"))]
        false
    }
}

/// A declared view (see `tramline-views`): its consumer and, with an address, its query API.
#[derive(Debug, Clone)]
pub struct DeclaredView {
    /// The view's name (its listener and metrics label).
    pub name: String,
    /// The database its consumer writes.
    pub db: Db,
    /// The query API's pool.
    pub queries: Db,
    /// Its table.
    pub table: ReadModelTable,
    /// The consumer group.
    pub group: String,
    /// The topics it reads.
    pub topics: Vec<String>,
    /// Concurrent workers.
    pub workers: usize,
    /// The collection's path, e.g. `/order-status`.
    pub route: String,
    /// Where the query API listens; `None`: no API.
    pub listen: Option<String>,
}

/// What every listener shares.
#[derive(Clone, Default)]
pub struct HttpOptions {
    /// Bearer token and readiness probes of every API.
    pub api: ApiOptions,
    /// Requests running longer are answered 503.
    pub request_timeout: Duration,
    /// Routes merged into every listener (e.g. `/metrics`).
    pub extra: Option<Router>,
    /// How long `Idempotency-Key` records are kept; purged hourly by the command services.
    pub idempotency_retention: Duration,
    /// Whether view listeners serve the web console at `/` ([`tramline_views::console`]).
    pub console: bool,
}

impl std::fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpOptions")
            .field("api", &self.api)
            .field("request_timeout", &self.request_timeout)
            .field("idempotency_retention", &self.idempotency_retention)
            .field("console", &self.console)
            .finish_non_exhaustive()
    }
}

/// An outbox's service database, by the name its relay has.
type NamedOutbox = (String, ServiceDb);

/// How relays of one outbox in several processes elect the one that publishes (see
/// [`SystemBuilder::relay_election`]).
#[derive(Debug, Clone)]
pub struct RelayElection {
    /// This process's name among the relays (unique: [`holder_name`] makes one).
    pub holder: String,
    /// How long a leader that stopped answering keeps the lead (see [`SqlElection::open`]).
    pub lease: Duration,
}

impl Default for RelayElection {
    fn default() -> Self {
        RelayElection {
            holder: holder_name(),
            lease: Duration::from_secs(5),
        }
    }
}

/// The roles one process runs; [`SystemBuilder::start`] starts them.
#[derive(Debug)]
pub struct SystemBuilder<T> {
    transport: Arc<T>,
    retry: RetryPolicy,
    relay: RelayConfig,
    partitions: Option<i32>,
    http: Option<HttpOptions>,
    order: Option<(ServiceDb, Option<String>)>,
    payment: Option<(ServiceDb, Option<String>)>,
    delivery: Option<(ServiceDb, Option<String>)>,
    operator: Option<Scenario>,
    relays: Option<(Vec<NamedOutbox>, Option<String>)>,
    election: Option<RelayElection>,
    view: Option<OrderStatusView>,
    declared: Vec<DeclaredView>,
    retention: Option<RetentionPolicy>,
    sweeps: Vec<Retention>,
    vacuum: bool,
    stand_ins: Vec<Vacuum>,
    parking: BTreeMap<String, ParkPolicy>,
}

impl<T: Transport> SystemBuilder<T> {
    /// Creates the topics the roles read and write, with `partitions` partitions, before
    /// anything starts (an existing topic is left as it is).
    pub fn create_topics(mut self, partitions: i32) -> Self {
        self.partitions = Some(partitions);
        self
    }

    /// The retry policy of every relay and consumer.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The relays' settings (batch size, idle poll); each relay's name is its outbox's.
    pub fn relay_config(mut self, config: RelayConfig) -> Self {
        self.relay = config;
        self
    }

    /// Serves the APIs of the roles given an address, with these options. Without it no
    /// listener starts, whatever the addresses.
    pub fn http(mut self, options: HttpOptions) -> Self {
        self.http = Some(options);
        self
    }

    /// The order service: its consumer of payment and delivery events, and its API at
    /// `listen`.
    pub fn order(mut self, db: ServiceDb, listen: Option<String>) -> Self {
        self.order = Some((db, listen));
        self
    }

    /// The payment service: its consumer of order events, and its API at `listen`.
    pub fn payment(mut self, db: ServiceDb, listen: Option<String>) -> Self {
        self.payment = Some((db, listen));
        self
    }

    /// The delivery service: its consumer of payment events, and its API at `listen`.
    pub fn delivery(mut self, db: ServiceDb, listen: Option<String>) -> Self {
        self.delivery = Some((db, listen));
        self
    }

    /// The back office deciding payments and moving deliveries by `scenario` (the demo's
    /// stand-in for people); needs the payment and delivery services.
    pub fn operator(mut self, scenario: Scenario) -> Self {
        self.operator = Some(scenario);
        self
    }

    /// One relay per outbox, named by its service; with `listen`, a listener with their
    /// health checks.
    pub fn relays<N: Into<String>>(
        mut self,
        outboxes: impl IntoIterator<Item = (N, ServiceDb)>,
        listen: Option<String>,
    ) -> Self {
        let outboxes = outboxes.into_iter().map(|(n, db)| (n.into(), db)).collect();
        self.relays = Some((outboxes, listen));
        self
    }

    /// Elects the leader among several relay processes of each outbox through the outbox's
    /// own database ([`SqlElection`]): only the leader publishes. Without it every relay
    /// publishes as if it ran alone.
    pub fn relay_election(mut self, election: RelayElection) -> Self {
        self.election = Some(election);
        self
    }

    /// The Order Status View.
    pub fn view(mut self, view: OrderStatusView) -> Self {
        self.view = Some(view);
        self
    }

    /// A declared view.
    pub fn declared_view(mut self, view: DeclaredView) -> Self {
        self.declared.push(view);
        self
    }

    /// Removes old rows by `policy` (see [`tramline_sql::retention`]): the published rows
    /// of every outbox a relay here drains, and the dedupe records of every consumer here.
    pub fn retention(mut self, policy: RetentionPolicy) -> Self {
        self.retention = Some(policy);
        self
    }

    /// What a message parked by consumer `group` does to the later messages of its key
    /// (by default it holds them: [`ParkPolicy::HoldKey`]).
    pub fn parking(mut self, group: impl Into<String>, policy: ParkPolicy) -> Self {
        self.parking.insert(group.into(), policy);
        self
    }

    /// Runs another retention sweep beside the roles' (e.g. the embedded log's).
    pub fn sweep(mut self, retention: Retention) -> Self {
        self.sweeps.push(retention);
        self
    }

    /// On a PostgreSQL server with autovacuum off, vacuums and analyzes the tables of every
    /// role's database itself ([`tramline_sql::vacuum`]); on by default. Off, such a
    /// server's tables bloat and keep an empty table's plans as they grow.
    pub fn vacuum_stand_in(mut self, on: bool) -> Self {
        self.vacuum = on;
        self
    }

    /// Runs another autovacuum stand-in beside the roles' (e.g. the embedded log's
    /// database's), whatever [`SystemBuilder::vacuum_stand_in`] says.
    pub fn stand_in(mut self, vacuum: Vacuum) -> Self {
        self.stand_ins.push(vacuum);
        self
    }

    /// The retention sweeps of the roles' databases, one per database, by `policy`.
    fn retentions(&self, policy: &RetentionPolicy) -> Vec<Retention> {
        self.stores()
            .into_iter()
            .map(|(name, db, tables)| Retention::new(db, name, tables, policy.clone()))
            .collect()
    }

    /// The roles' databases, by store name, with the tables retention sweeps in each.
    fn stores(&self) -> Vec<(String, Db, Vec<Table>)> {
        let mut stores: Vec<(String, Db, Vec<Table>)> = Vec::new();
        let mut add =
            |name: &str, db: &Db, table: Table| match stores.iter_mut().find(|(n, _, _)| n == name)
            {
                Some((_, _, tables)) => tables.push(table),
                None => stores.push((name.to_owned(), db.clone(), vec![table])),
            };
        for (name, role) in [
            ("order", &self.order),
            ("payment", &self.payment),
            ("delivery", &self.delivery),
        ] {
            if let Some((db, _)) = role {
                add(name, &db.db, Table::Inbox);
            }
        }
        if let Some((outboxes, _)) = &self.relays {
            for (name, db) in outboxes {
                add(name, &db.db, Table::Outbox(db.outbox.layout()));
            }
        }
        if let Some(v) = &self.view {
            add("view", &v.db.db, Table::Inbox);
        }
        for v in &self.declared {
            add(&v.name, &v.db, Table::Inbox);
        }
        stores
    }

    /// The topics the roles read and write.
    fn topics(&self) -> Vec<String> {
        let order_system = self.order.is_some()
            || self.payment.is_some()
            || self.delivery.is_some()
            || self.relays.is_some()
            || self.view.is_some();
        let mut topics: Vec<String> = Vec::new();
        if order_system {
            topics.extend(ALL_TOPICS.iter().map(|t| t.to_string()));
        }
        for v in &self.declared {
            for t in &v.topics {
                if !topics.contains(t) {
                    topics.push(t.clone());
                }
            }
        }
        topics
    }

    /// Creates the topics (if asked), subscribes every consumer, binds every listener and
    /// starts it all; nothing runs until [`System::run`].
    pub async fn start(self) -> Result<System<T>, SystemError> {
        if let Some(partitions) = self.partitions {
            // Processes starting together create the same topics at once: a deadlock or a
            // lost race on the embedded log's tables is retried, like any transient error.
            let retries = RetryCounters::default();
            for topic in self.topics() {
                self.retry
                    .run(&retries, || self.transport.create_topic(&topic, partitions))
                    .await
                    .map_err(|source| SystemError::Topic { topic, source })?;
            }
        }
        let mut supervisor = Supervisor::new();
        let http_stage = supervisor.stage("listeners");
        let work = supervisor.stage("relays and consumers");
        let mut s = Starting {
            transport: Arc::clone(&self.transport),
            retry: self.retry.clone(),
            http: self.http.clone(),
            supervisor,
            http_stage,
            work,
            listeners: Vec::new(),
            parking: self.parking.clone(),
            console_stop: CancellationToken::new(),
            monitor: Monitor {
                transport: Arc::clone(&self.transport),
                relays: Vec::new(),
                consumers: Vec::new(),
                view: None,
            },
        };
        let api = self
            .http
            .as_ref()
            .map(|h| h.api.clone())
            .unwrap_or_default();
        if let Some((db, listen)) = &self.order {
            let ops = s
                .service(order::GROUP, order::TOPICS, db, OrderReaction)
                .await?;
            // Concurrent requests share transactions; SQLite has one writer anyway.
            let committers = match db.db.dialect() {
                tramline_sql::Dialect::Sqlite => 1,
                _ => 4,
            };
            let orders = OrderService::new(db.clone()).with_group_commit(committers);
            let routes = http::order::router(orders, &admin(&api, ops));
            s.listen("order", listen, routes);
        }
        if let Some((db, listen)) = &self.payment {
            let ops = s
                .service(payment::GROUP, payment::TOPICS, db, PaymentReaction)
                .await?;
            let routes = http::payment::router(PaymentService::new(db.clone()), &admin(&api, ops));
            s.listen("payment", listen, routes);
        }
        if let Some((db, listen)) = &self.delivery {
            let ops = s
                .service(delivery::GROUP, delivery::TOPICS, db, DeliveryReaction)
                .await?;
            let routes =
                http::delivery::router(DeliveryService::new(db.clone()), &admin(&api, ops));
            s.listen("delivery", listen, routes);
        }
        if let Some(scenario) = self.operator {
            let (Some((payments, _)), Some((deliveries, _))) = (&self.payment, &self.delivery)
            else {
                return Err(SystemError::Missing(
                    "the operator needs the payment and delivery services",
                ));
            };
            let operator = Operator::new(
                scenario,
                PaymentService::new(payments.clone()),
                DeliveryService::new(deliveries.clone()),
            );
            let topics = [
                crate::events::PAYMENT_EVENTS,
                crate::events::DELIVERY_EVENTS,
            ];
            let config = s.config("operator", ConsumerConfig::default().workers);
            s.consume("operator", &topics, Arc::new(operator), config, None)
                .await?;
        }
        for v in &self.declared {
            let feed = s.console_on(&v.listen).then(ChangeFeed::default);
            let projection = ReadModelProjection::new(v.db.clone(), &v.group, v.table.clone())
                .with_parking(s.parking_of(&v.group));
            let projection = match &feed {
                Some(feed) => projection.with_changes(feed.clone()),
                None => projection,
            };
            let projection = Arc::new(projection);
            let parking = Parking::of(&projection);
            let ops: Arc<dyn ParkedOps> = projection.clone();
            let topics: Vec<&str> = v.topics.iter().map(String::as_str).collect();
            let config = s.config(&v.group, v.workers);
            s.consume(&v.group, &topics, projection, config, Some(parking))
                .await?;
            let document = tramline_views::http::openapi(&v.name, &v.route, &v.table)
                .merge_from(http::OperationsApi::openapi());
            let query = ViewQuery::new(
                v.queries.clone(),
                Arc::new(v.table.clone()),
                v.route.clone(),
            );
            let mut routes = tramline_views::http::router(query.clone());
            if let Some(feed) = feed {
                let config = ConsoleConfig {
                    parked: true,
                    auth: api.bearer_token.is_some(),
                    ..ConsoleConfig::declared(&v.name, &v.route, &v.table, &v.group)
                };
                let live = LiveRows::new(feed, move |key| {
                    let query = query.clone();
                    async move {
                        query
                            .row(&key)
                            .await
                            .map_err(|e| tramline_core::error::sentence(&e))
                    }
                });
                routes = routes.merge(console::router(config, Some(live), s.console_stop.clone()));
            }
            let routes = http::service(routes, document, v.queries.clone(), &admin(&api, ops));
            s.listen(&v.name, &v.listen, routes);
        }
        if let Some(v) = &self.view {
            s.order_status_view(v, &api).await?;
        }
        if let Some((outboxes, listen)) = &self.relays {
            for (name, db) in outboxes {
                let config = RelayConfig {
                    name: name.clone(),
                    retry: self.retry.clone(),
                    ..self.relay.clone()
                };
                s.relay(name, db, config, self.election.clone());
            }
            if let Some(first) = outboxes.first() {
                // Ready when the transport and every outbox's database answer.
                let mut options = ApiOptions {
                    bearer_token: None,
                    probes: api.probes.clone(),
                    parked: Default::default(),
                };
                for (name, db) in &outboxes[1..] {
                    let db = db.db.clone();
                    options
                        .probes
                        .push(Probe::new(format!("the {name} database"), move || {
                            ping(db.clone())
                        }));
                }
                let document = http::OperationsApi::openapi();
                let routes = http::service(Router::new(), document, first.1.db.clone(), &options);
                s.listen("relay", listen, routes);
            }
        }
        let mut stand_ins: Vec<Vacuum> = match self.vacuum {
            true => self
                .stores()
                .into_iter()
                .map(|(name, db, _)| Vacuum::new(db, name))
                .collect(),
            false => Vec::new(),
        };
        let mut sweeps = match &self.retention {
            Some(policy) => self.retentions(policy),
            None => Vec::new(),
        };
        sweeps.extend(self.sweeps);
        for retention in sweeps {
            s.sweep(retention);
        }
        stand_ins.extend(self.stand_ins);
        for vacuum in stand_ins {
            s.stand_in(vacuum);
        }
        if let Some(options) = &self.http {
            let retention = options.idempotency_retention;
            for (name, db) in [("order", &self.order), ("payment", &self.payment)]
                .into_iter()
                .chain([("delivery", &self.delivery)])
            {
                if let Some((db, Some(_))) = db {
                    s.purge_idempotency_keys(name, db, retention);
                }
            }
        }
        s.bind().await
    }
}

/// The operations on the messages the order system's consumer `group` parked in `db` (its
/// service's or the view's database), handled as that consumer would under `policy`:
/// `tramline parked` uses them. `None` for a group that is not one of the services' or
/// `view_group` (the Order Status View's).
pub fn parked_ops(
    group: &str,
    db: &ServiceDb,
    view_group: &str,
    policy: ParkPolicy,
) -> Option<Arc<dyn ParkedOps>> {
    let db = db.clone();
    Some(match group {
        g if g == order::GROUP => {
            Arc::new(Subscriber::new(db, g, OrderReaction).with_parking(policy))
        }
        g if g == payment::GROUP => {
            Arc::new(Subscriber::new(db, g, PaymentReaction).with_parking(policy))
        }
        g if g == delivery::GROUP => {
            Arc::new(Subscriber::new(db, g, DeliveryReaction).with_parking(policy))
        }
        g if g == view_group => {
            Arc::new(OrderStatusProjection::consumer(&db, g).with_parking(policy))
        }
        _ => return None,
    })
}

/// `api` with an admin API over `consumer`'s parked messages.
fn admin(api: &ApiOptions, consumer: Arc<dyn ParkedOps>) -> ApiOptions {
    ApiOptions {
        parked: http::admin::ParkedConsumers(vec![consumer]),
        ..api.clone()
    }
}

/// Whether `db` answers, for `/ready`.
async fn ping(db: Db) -> Result<(), String> {
    db.ping("ready")
        .await
        .map_err(|e| tramline_core::error::sentence(&e))
}

/// A system being started.
struct Starting<T> {
    transport: Arc<T>,
    retry: RetryPolicy,
    http: Option<HttpOptions>,
    supervisor: Supervisor,
    http_stage: Stage,
    work: Stage,
    listeners: Vec<(String, String, Router)>,
    parking: BTreeMap<String, ParkPolicy>,
    monitor: Monitor<T>,
    /// Cancelled when the listeners stop: ends the consoles' live streams.
    console_stop: CancellationToken,
}

/// Where a consumer parks, and the operations on what it parked.
#[derive(Clone)]
struct Parking {
    inbox: Inbox,
    db: Db,
    ops: Option<Arc<dyn ParkedOps>>,
    shuffle: bool,
}

impl Parking {
    fn of<P: ParkedOps + 'static>(consumer: &Arc<P>) -> Self {
        Parking {
            inbox: Inbox::new(consumer.consumer()),
            db: consumer.db().clone(),
            ops: Some(Arc::clone(consumer) as Arc<dyn ParkedOps>),
            shuffle: false,
        }
    }

    /// A baseline view's: it parks into `inbox` in the view's `db`, and has no operations
    /// on its parked messages.
    fn baseline(inbox: &Inbox, db: &ServiceDb) -> Self {
        Parking {
            inbox: inbox.clone(),
            db: db.db.clone(),
            ops: None,
            shuffle: false,
        }
    }
}

impl std::fmt::Debug for Parking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parking")
            .field("consumer", &self.inbox.consumer())
            .finish_non_exhaustive()
    }
}

impl<T: Transport> Starting<T> {
    fn parking_of(&self, group: &str) -> ParkPolicy {
        self.parking.get(group).copied().unwrap_or_default()
    }

    fn config(&self, group: &str, workers: usize) -> ConsumerConfig {
        ConsumerConfig {
            name: group.to_owned(),
            workers,
            retry: self.retry.clone(),
            ..ConsumerConfig::default()
        }
    }

    /// Subscribes `handler` as `group` to `topics` and runs it in the work stage.
    async fn consume<H: Handler>(
        &mut self,
        group: &str,
        topics: &[&str],
        handler: Arc<H>,
        config: ConsumerConfig,
        parking: Option<Parking>,
    ) -> Result<Arc<ConsumerStats>, SystemError> {
        let shuffle = parking.as_ref().is_some_and(|p| p.shuffle);
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        let subscription = self
            .transport
            .subscribe(group, &topics)
            .await
            .map_err(|source| SystemError::Subscribe {
                group: group.to_owned(),
                topics: topics.clone(),
                source,
            })?;
        let runtime = ConsumerRuntime::new(handler, config);
        let stats = runtime.stats();
        self.monitor.consumers.push(ConsumerInfo {
            group: group.to_owned(),
            topics,
            stats: Arc::clone(&stats),
            parking,
        });
        #[cfg(feature = "fault")]
        let subscription = tramline_core::fault::Shuffled::new(subscription, shuffle);
        #[cfg(not(feature = "fault"))]
        let _ = shuffle;
        self.supervisor.spawn(
            self.work,
            format!("{group} consumer"),
            move |stop| async move { runtime.run(subscription, stop).await },
        );
        Ok(stats)
    }

    /// A command service's reaction to upstream events, as `group` on `topics`.
    async fn service<R: Reaction>(
        &mut self,
        group: &str,
        topics: &[&str],
        db: &ServiceDb,
        reaction: R,
    ) -> Result<Arc<dyn ParkedOps>, SystemError> {
        let handler =
            Subscriber::new(db.clone(), group, reaction).with_parking(self.parking_of(group));
        let handler = Arc::new(handler);
        let parking = Some(Parking::of(&handler));
        let config = self.config(group, ConsumerConfig::default().workers);
        self.consume(group, topics, Arc::clone(&handler), config, parking)
            .await?;
        Ok(handler)
    }

    /// The Order Status View's consumer of every topic, with `handler` (either strategy).
    async fn view_consumer<H: Handler>(
        &mut self,
        v: &OrderStatusView,
        handler: Arc<H>,
        mut parking: Parking,
        config: ConsumerConfig,
    ) -> Result<Arc<ConsumerStats>, SystemError> {
        parking.shuffle = v.shuffled();
        self.consume(&v.group, &ALL_TOPICS, handler, config, Some(parking))
            .await
    }

    async fn order_status_view(
        &mut self,
        v: &OrderStatusView,
        api: &ApiOptions,
    ) -> Result<(), SystemError> {
        let mut config = self.config(&v.group, v.workers);
        let db = v.db.clone();
        let console = self.console_on(&v.listen);
        let mut feed = None;
        let (stats, handle) = match v.strategy {
            Strategy::Upsert => {
                let mut h = OrderStatusProjection::consumer(&v.db, &v.group)
                    .with_parking(self.parking_of(&v.group));
                if console {
                    let f = ChangeFeed::default();
                    h = h.with_changes(f.clone());
                    feed = Some(f);
                }
                let h = Arc::new(h);
                let parking = Parking::of(&h);
                let stats = self
                    .view_consumer(v, Arc::clone(&h), parking, config)
                    .await?;
                (stats, ViewStats::Upsert(h))
            }
            Strategy::Naive => {
                // The seed: one consumer thread per topic, one event at a time.
                config.lane_by = LaneBy::Topic;
                config.batch_max = 1;
                let h = Arc::new(NaiveProjection::new(db.clone(), &v.group));
                let parking = Parking::baseline(h.inbox(), &db);
                let stats = self
                    .view_consumer(v, Arc::clone(&h), parking, config)
                    .await?;
                (stats, ViewStats::Naive(h))
            }
            Strategy::WholeRow => {
                let h = Arc::new(WholeRowProjection::new(db.clone(), &v.group));
                let parking = Parking::baseline(h.inbox(), &db);
                let stats = self
                    .view_consumer(v, Arc::clone(&h), parking, config)
                    .await?;
                (stats, ViewStats::WholeRow(h))
            }
        };
        let ops = match &handle {
            ViewStats::Upsert(h) => vec![Arc::clone(h) as Arc<dyn ParkedOps>],
            ViewStats::Naive(_) | ViewStats::WholeRow(_) => Vec::new(),
        };
        self.monitor.view = Some((stats, Arc::new(handle)));
        let queries = OrderStatusQuery::new(v.queries.clone().unwrap_or(db));
        let config =
            http::view::console_config(&v.group, !ops.is_empty(), api.bearer_token.is_some());
        let api = ApiOptions {
            parked: http::admin::ParkedConsumers(ops),
            ..api.clone()
        };
        let mut routes = http::view::router(queries.clone(), &api);
        if console {
            let live = feed.map(|f| http::view::live_rows(queries, f));
            routes = routes.merge(console::router(config, live, self.console_stop.clone()));
        }
        self.listen("view", &v.listen, routes);
        Ok(())
    }

    fn relay(
        &mut self,
        name: &str,
        db: &ServiceDb,
        config: RelayConfig,
        election: Option<RelayElection>,
    ) {
        let relay = OutboxRelay::new(Arc::clone(&db.outbox), Arc::clone(&self.transport), config);
        self.monitor
            .relays
            .push((name.to_owned(), relay.stats(), Arc::clone(&db.outbox)));
        let (db, election_name) = (db.db.clone(), name.to_owned());
        self.supervisor
            .spawn(self.work, format!("{name} relay"), move |stop| async move {
                let Some(e) = election else {
                    return relay.run(stop).await;
                };
                let election = SqlElection::open(db, election_name, e.holder, e.lease).await?;
                relay.run_elected(&election, stop).await
            });
    }

    /// Runs `retention`'s sweeps in the work stage.
    fn sweep(&mut self, retention: Retention) {
        let name = format!("{} retention", retention.store());
        self.supervisor
            .spawn(self.work, name, move |stop| async move {
                retention.run(stop).await
            });
    }

    /// Runs `vacuum`, the autovacuum stand-in, in the work stage.
    fn stand_in(&mut self, vacuum: Vacuum) {
        let name = format!("{} vacuum", vacuum.store());
        self.supervisor
            .spawn(self.work, name, move |stop| async move {
                vacuum.run(stop).await
            });
    }

    /// Forgets the service's `Idempotency-Key` records older than `retention`, at start and
    /// every hour. A failed purge is retried at the next one: it never stops the service.
    fn purge_idempotency_keys(
        &mut self,
        service: &'static str,
        db: &ServiceDb,
        retention: Duration,
    ) {
        let store = db.idempotency.clone();
        let name = format!("{service} idempotency purge");
        self.supervisor.spawn(self.work, name, move |stop| async move {
            let mut every_hour = tokio::time::interval(Duration::from_secs(3600));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = every_hour.tick() => {}
                }
                match store.purge_older_than(retention).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(service, purged = n, "idempotency keys expired"),
                    Err(e) => tracing::warn!(service, error = %tramline_core::error::sentence(&e), "could not purge idempotency keys; retrying in an hour"),
                }
            }
            Ok::<(), SqlError>(())
        });
    }

    /// Whether a view listening on `address` serves the web console.
    fn console_on(&self, address: &Option<String>) -> bool {
        address.is_some() && self.http.as_ref().is_some_and(|h| h.console)
    }

    /// Prepares `routes` on `address`, if HTTP is on and the role has an address.
    fn listen(&mut self, name: &str, address: &Option<String>, routes: Router) {
        let (Some(options), Some(address)) = (&self.http, address) else {
            return;
        };
        let mut routes = routes;
        if let Some(extra) = &options.extra {
            routes = routes.merge(extra.clone());
        }
        let routes = http::instrumented(name, routes, options.request_timeout);
        self.listeners
            .push((name.to_owned(), address.clone(), routes));
    }

    /// Binds every listener and hands over the system.
    async fn bind(mut self) -> Result<System<T>, SystemError> {
        let mut addresses = BTreeMap::new();
        for (name, address, routes) in std::mem::take(&mut self.listeners) {
            let listener =
                TcpListener::bind(&address)
                    .await
                    .map_err(|source| SystemError::Listen {
                        name: name.clone(),
                        address: address.clone(),
                        source,
                    })?;
            let bound = listener
                .local_addr()
                .map_err(|source| SystemError::Listen {
                    name: name.clone(),
                    address: address.clone(),
                    source,
                })?;
            tracing::info!(service = %name, address = %bound, "listening");
            addresses.insert(name.clone(), bound);
            let console_stop = self.console_stop.clone();
            self.supervisor.spawn(
                self.http_stage,
                format!("{name} listener"),
                move |stop| async move {
                    // Open consoles' live streams never end by themselves: they end with it.
                    let stopped = async move {
                        stop.cancelled().await;
                        console_stop.cancel();
                    };
                    axum::serve(listener, routes)
                        .with_graceful_shutdown(stopped)
                        .await
                },
            );
        }
        Ok(System {
            supervisor: self.supervisor,
            monitor: self.monitor,
            addresses,
        })
    }
}

/// A started system: runs until told to stop; see [`System::run`].
#[derive(Debug)]
pub struct System<T> {
    supervisor: Supervisor,
    monitor: Monitor<T>,
    addresses: BTreeMap<String, SocketAddr>,
}

impl<T: Transport> System<T> {
    /// Where each listener is bound (by role: `order`, `view`, a declared view's name, …);
    /// an address with port 0 shows the port it got.
    pub fn address(&self, name: &str) -> Option<SocketAddr> {
        self.addresses.get(name).copied()
    }

    /// The system's counters and checks, usable while it runs.
    pub fn monitor(&self) -> Monitor<T> {
        self.monitor.clone()
    }

    /// Runs until `until` completes or any part fails, then stops in order within
    /// `deadline`: the listeners (finishing their requests), then relays and consumers.
    /// The value of `until`, or the first failure.
    pub async fn run<R>(
        self,
        until: impl Future<Output = R>,
        deadline: Duration,
    ) -> Result<R, SupervisorError> {
        self.supervisor.run(until, deadline).await
    }
}

/// The Order Status View's handler, for its counters.
#[derive(Debug)]
enum ViewStats {
    Upsert(Arc<crate::view::projection::ViewConsumer>),
    Naive(Arc<NaiveProjection>),
    WholeRow(Arc<WholeRowProjection>),
}

/// One consumer's group, topics, counters and inbox.
#[derive(Debug, Clone)]
pub struct ConsumerInfo {
    /// The consumer group.
    pub group: String,
    /// The topics it reads.
    pub topics: Vec<String>,
    /// Its counters.
    pub stats: Arc<ConsumerStats>,
    /// Where it parks messages, and the operations on them (none for the operator).
    parking: Option<Parking>,
}

impl ConsumerInfo {
    /// The operations on its parked messages (none for the operator and the naive view).
    pub fn parked_ops(&self) -> Option<Arc<dyn ParkedOps>> {
        self.parking.as_ref().and_then(|p| p.ops.clone())
    }
}

/// A running system's counters and checks.
#[derive(Debug)]
pub struct Monitor<T> {
    transport: Arc<T>,
    relays: Vec<(String, Arc<RelayStats>, Arc<SqlOutbox>)>,
    consumers: Vec<ConsumerInfo>,
    view: Option<(Arc<ConsumerStats>, Arc<ViewStats>)>,
}

impl<T> Clone for Monitor<T> {
    fn clone(&self) -> Self {
        Monitor {
            transport: Arc::clone(&self.transport),
            relays: self.relays.clone(),
            consumers: self.consumers.clone(),
            view: self.view.clone(),
        }
    }
}

impl<T: Transport> Monitor<T> {
    /// Messages the relays have published.
    pub fn published(&self) -> u64 {
        self.relays
            .iter()
            .map(|(_, r, _)| r.published.load(Ordering::SeqCst))
            .sum()
    }

    /// Relay batches published.
    pub fn relay_batches(&self) -> u64 {
        self.relays
            .iter()
            .map(|(_, r, _)| r.batches.load(Ordering::Relaxed))
            .sum()
    }

    /// Every consumer.
    pub fn consumers(&self) -> &[ConsumerInfo] {
        &self.consumers
    }

    /// The Order Status View consumer's counters.
    pub fn view(&self) -> Option<&ConsumerStats> {
        self.view.as_ref().map(|(s, _)| &**s)
    }

    /// The Order Status View projection's counters (duplicate-key errors, lost updates).
    pub fn projection(&self) -> Option<&ProjectionStats> {
        self.view.as_ref().map(|(_, h)| match &**h {
            ViewStats::Upsert(c) => c.applier().stats(),
            ViewStats::Naive(n) => n.stats(),
            ViewStats::WholeRow(w) => w.stats(),
        })
    }

    /// Retries of every relay and consumer, summed by cause.
    pub fn retries_by_cause(&self) -> BTreeMap<&'static str, u64> {
        let mut total = BTreeMap::new();
        let counters = self
            .relays
            .iter()
            .map(|(_, r, _)| &r.retries)
            .chain(self.consumers.iter().map(|c| &c.stats.retries));
        for counter in counters {
            for (cause, n) in counter.snapshot() {
                *total.entry(cause).or_insert(0) += n;
            }
        }
        total
    }

    /// Messages parked by every consumer with an inbox.
    pub async fn parked(&self) -> Result<i64, SqlError> {
        let mut parked = 0;
        for p in self.consumers.iter().filter_map(|c| c.parking.as_ref()) {
            parked += p.inbox.parked(&p.db).await?;
        }
        Ok(parked)
    }

    /// True when no record is uncommitted by any consumer, no outbox holds a message, and
    /// no relay published while this was being checked: the system has settled.
    pub async fn settled(&self) -> Result<bool, Error> {
        let before = self.published();
        for c in &self.consumers {
            if self.transport.lag(&c.group, &c.topics).await? > 0 {
                return Ok(false);
            }
        }
        for (_, _, outbox) in &self.relays {
            if outbox.backlog().await? > 0 {
                return Ok(false);
            }
        }
        Ok(self.published() == before)
    }
}
