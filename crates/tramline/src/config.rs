//! The configuration of `tramline serve`: one TOML file with a section per role, every key
//! overridable by an environment variable, defaults for everything, and a check that reports
//! every problem at once.
//!
//! An environment variable `TRAMLINE_<SECTION>__<KEY>` (two underscores between the levels,
//! e.g. `TRAMLINE_ORDER__LISTEN=0.0.0.0:8081`, `TRAMLINE_TRANSPORT__KAFKA__LINGER_MS=20`)
//! overrides the file. Variables without `__` (`TRAMLINE_LOG`, `TRAMLINE_TEST_…`) are not
//! configuration. Secrets (database passwords, the bearer token) are hidden whenever the
//! configuration is printed.

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Value};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use tramline_core::topics::TopicNames;
use tramline_orders::events::ALL_TOPICS;
use tramline_sql::{Dialect, ParkPolicy};
use tramline_views::ViewSpec;

/// Everything `tramline serve` needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// What carries events between the roles.
    pub transport: TransportConfig,
    /// The order service.
    pub order: ServiceConfig,
    /// The payment service.
    pub payment: ServiceConfig,
    /// The delivery service.
    pub delivery: ServiceConfig,
    /// The Order Status View.
    pub view: ViewConfig,
    /// The outbox relays.
    pub relay: RelayConfig,
    /// What every HTTP listener shares.
    pub http: HttpConfig,
    /// Logs.
    pub log: LogConfig,
    /// Stopping.
    pub shutdown: ShutdownConfig,
    /// Removing old outbox rows, dedupe records and log records.
    pub retention: RetentionConfig,
    /// Declared read models, by name (`[views.order_status]`): each its own table, consumer
    /// group and query API, run by the `view` role instead of the built-in Order Status View
    /// (docs/VIEWS.md).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub views: BTreeMap<String, ViewSpec>,
}

/// What carries events between the roles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TransportConfig {
    /// `log` (the DB-backed log at `log_url`) or `kafka` (the cluster at `brokers`).
    pub kind: TransportKind,
    /// The DB-backed log's database.
    pub log_url: String,
    /// Kafka bootstrap brokers.
    pub brokers: String,
    /// Partitions of each topic created.
    pub partitions: i32,
    /// Prefix of Kafka topic names (not added to renamed topics).
    pub topic_prefix: String,
    /// Kafka names of tramline's topics, e.g. `order-events = "com.example.order.Order"`: the
    /// names an existing Eventuate Tram system uses (its aggregate types). A renamed topic
    /// gets no prefix.
    #[serde(deserialize_with = "properties")]
    pub topics: BTreeMap<String, String>,
    /// Prefix of Kafka consumer group ids.
    pub group_prefix: String,
    /// A consumer that has not been heard of for this long leaves its group and its
    /// partitions move to the others (s); Kafka's classic default, so a killed view process
    /// is replaced quickly.
    pub session_timeout_secs: u64,
    /// librdkafka properties, e.g. `"linger.ms" = 20`.
    #[serde(deserialize_with = "properties")]
    pub kafka: BTreeMap<String, String>,
}

impl TransportConfig {
    /// How the topics are named on Kafka: `topic_prefix` and the `topics` renames.
    pub fn topic_names(&self) -> TopicNames {
        TopicNames {
            prefix: self.topic_prefix.clone(),
            renames: self.topics.clone(),
        }
    }
}

/// A map of string values (librdkafka properties, topic names), which may be written as
/// strings, numbers or booleans.
fn properties<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Int(i64),
        Float(f64),
        Bool(bool),
    }
    let raw = BTreeMap::<String, Scalar>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Scalar::Text(s) => s,
                Scalar::Int(i) => i.to_string(),
                Scalar::Float(f) => f.to_string(),
                Scalar::Bool(b) => b.to_string(),
            };
            (k, v)
        })
        .collect())
}

/// The transport's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// The DB-backed log.
    Log,
    /// A Kafka cluster.
    Kafka,
}

/// A command service (order, payment, delivery). Its defaults depend on the role (see
/// [`Config::default`]), and the loader fills every missing key from those.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceConfig {
    /// Where its HTTP API listens.
    pub listen: String,
    /// Its database.
    pub database_url: String,
    /// Connections of its pool (default: 1 on SQLite, 8 on servers).
    pub pool_size: Option<u32>,
    /// What a message its consumer parks does to the later messages of its key: `key` holds
    /// them behind it (the default), `message` parks only the message.
    #[serde(default)]
    pub parking: ParkPolicy,
}

/// The Order Status View.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ViewConfig {
    /// Where its query API listens.
    pub listen: String,
    /// Its database.
    pub database_url: String,
    /// Connections of the projection's pool.
    pub pool_size: Option<u32>,
    /// Connections of the query API's own pool, so readers never starve the projection.
    pub query_pool_size: u32,
    /// Concurrent lanes applying events.
    pub consumers: usize,
    /// Its consumer group; view processes of one group share the partitions.
    pub group: String,
    /// What a message its consumer parks does to the later messages of its key: `key` holds
    /// them behind it (the default), `message` parks only the message.
    pub parking: ParkPolicy,
}

/// The outbox relays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RelayConfig {
    /// Where the relay process serves `/health`, `/ready` and `/metrics`.
    pub listen: String,
    /// Messages per publish round.
    pub batch_size: usize,
    /// Longest wait, when idle, before looking at an outbox again (ms). A relay in the same
    /// process as its service is woken by each commit; one in its own process (`serve relay`)
    /// learns of new messages only by looking, so this bounds the latency it adds.
    pub idle_poll_ms: u64,
    /// Elect one leader among the relay processes of each outbox, through the outbox's own
    /// database (docs/OPERATIONS.md); only the leader publishes. Off, every relay publishes.
    pub elect: bool,
    /// How long a leader that stopped answering keeps the lead (ms): a SIGKILLed leader's
    /// lock goes at once on MariaDB and PostgreSQL, its lease on SQLite after at most this;
    /// standbys campaign every fifth of it. At least 1000.
    pub lease_ms: u64,
    /// This process's name among the relays; by default host/pid/random.
    pub holder: Option<String>,
}

/// What every HTTP listener shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    /// When set, command endpoints require `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
    /// Longest time one request may take (s).
    pub request_timeout_secs: u64,
    /// How long a command's `Idempotency-Key` is remembered (hours); older records are
    /// purged every hour.
    pub idempotency_retention_hours: u64,
    /// Whether view listeners serve the web console at `/`.
    pub console: bool,
}

/// Logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `tramline=debug,warn`.
    pub level: String,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per event.
    Json,
}

/// Stopping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShutdownConfig {
    /// After a stop signal, the longest time to finish requests and drain consumers (s).
    pub deadline_secs: u64,
}

/// Removing old rows (docs/OPERATIONS.md): published outbox rows (by the relay role), dedupe
/// records (by each consumer's role) and the embedded log's records (by the relay role), in
/// small batches. An age of 0 keeps those rows for ever.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetentionConfig {
    /// Whether anything is removed at all.
    pub enabled: bool,
    /// Age of a published outbox row when it is removed (s).
    pub outbox_secs: u64,
    /// Age of a dedupe record when it is removed (s). It must exceed the longest redelivery:
    /// the longest a consumer may stay stopped plus its commit interval, and the longest a
    /// relay may be down between publishing and marking; at least an hour.
    pub inbox_secs: u64,
    /// Age of a log record when it is removed (s), once every group read it.
    pub log_secs: u64,
    /// Keep the newest log record of each key per topic, whatever its age.
    pub log_compaction: bool,
    /// Rows per statement.
    pub batch_size: usize,
    /// Time between sweeps (s).
    pub interval_secs: u64,
    /// On a PostgreSQL server with autovacuum off, vacuum and analyze tramline's schemas
    /// ourselves, by autovacuum's thresholds; deletes free nothing and plans go stale
    /// otherwise (docs/OPERATIONS.md). Independent of `enabled`.
    pub vacuum_stand_in: bool,
}

impl RetentionConfig {
    /// The policy, or `None` when retention is off.
    pub fn policy(&self) -> Option<tramline_sql::RetentionPolicy> {
        let age = |secs: u64| (secs > 0).then(|| std::time::Duration::from_secs(secs));
        self.enabled.then(|| tramline_sql::RetentionPolicy {
            outbox: age(self.outbox_secs),
            inbox: age(self.inbox_secs),
            log: age(self.log_secs),
            compact_log: self.log_compaction,
            batch_size: self.batch_size,
            interval: std::time::Duration::from_secs(self.interval_secs),
        })
    }
}

impl Default for RetentionConfig {
    fn default() -> Self {
        let policy = tramline_sql::RetentionPolicy::default();
        let secs = |age: Option<std::time::Duration>| age.map_or(0, |a| a.as_secs());
        RetentionConfig {
            enabled: true,
            outbox_secs: secs(policy.outbox),
            inbox_secs: secs(policy.inbox),
            log_secs: secs(policy.log),
            log_compaction: policy.compact_log,
            batch_size: policy.batch_size,
            interval_secs: policy.interval.as_secs(),
            vacuum_stand_in: true,
        }
    }
}

fn service(port: u16, store: &str) -> ServiceConfig {
    ServiceConfig {
        listen: format!("127.0.0.1:{port}"),
        database_url: format!("sqlite://tramline-data/{store}.db"),
        pool_size: None,
        parking: ParkPolicy::default(),
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            transport: TransportConfig::default(),
            order: service(8081, "order"),
            payment: service(8082, "payment"),
            delivery: service(8083, "delivery"),
            view: ViewConfig::default(),
            relay: RelayConfig::default(),
            http: HttpConfig::default(),
            log: LogConfig::default(),
            shutdown: ShutdownConfig::default(),
            retention: RetentionConfig::default(),
            views: BTreeMap::new(),
        }
    }
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            kind: TransportKind::Log,
            log_url: "sqlite://tramline-data/log.db".into(),
            brokers: "127.0.0.1:9092".into(),
            partitions: 8,
            topic_prefix: String::new(),
            topics: BTreeMap::new(),
            group_prefix: String::new(),
            session_timeout_secs: 10,
            kafka: BTreeMap::new(),
        }
    }
}

impl Default for ViewConfig {
    fn default() -> Self {
        ViewConfig {
            listen: "127.0.0.1:8084".into(),
            database_url: "sqlite://tramline-data/view.db".into(),
            pool_size: None,
            query_pool_size: 4,
            consumers: 3,
            group: tramline_orders::view::GROUP.into(),
            parking: ParkPolicy::default(),
        }
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            listen: "127.0.0.1:8085".into(),
            batch_size: 1000,
            idle_poll_ms: 50,
            elect: true,
            lease_ms: 5000,
            holder: None,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            bearer_token: None,
            request_timeout_secs: 30,
            idempotency_retention_hours: 24,
            console: true,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Human,
            level: "info".into(),
        }
    }
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig { deadline_secs: 30 }
    }
}

/// One thing wrong with a configuration: where (a dotted key path) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key, e.g. `order.listen`.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Keys whose contents are free-form maps (any key is allowed inside).
/// (`views` is checked by the declaration format itself, which refuses unknown keys.)
const OPEN_MAPS: [&str; 3] = ["transport.kafka", "transport.topics", "views"];

impl Config {
    /// The configuration from `file` (if any) with the environment's overrides on top:
    /// either a valid configuration or every problem found.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, Vec<Problem>> {
        let Some(file) = file else {
            return Config::from_sources(None, env);
        };
        if !file.is_file() {
            return Err(vec![Problem {
                path: file.display().to_string(),
                message: "no such file".into(),
            }]);
        }
        Config::from_sources(
            Some((Toml::file_exact(file), file.display().to_string())),
            env,
        )
    }

    /// As [`Config::load`], with the file's contents given as text (problems of the text
    /// itself have an empty path): the same parsing and checks.
    ///
    /// ```
    /// use tramline::config::Config;
    ///
    /// let config = Config::from_toml("[order]\nlisten = \"127.0.0.1:9001\"\n", Vec::new())
    ///     .expect("valid");
    /// assert_eq!(config.order.listen, "127.0.0.1:9001");
    /// let problems = Config::from_toml("[order]\nlisten = 3\n", Vec::new()).expect_err("invalid");
    /// assert_eq!(problems[0].path, "order.listen");
    /// ```
    pub fn from_toml(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, Vec<Problem>> {
        Config::from_sources(Some((Toml::string(text), String::new())), env)
    }

    /// The configuration from `toml` (the TOML source and the path a problem of the source
    /// itself is reported at), if any, with the environment's overrides on top.
    fn from_sources(
        toml: Option<(figment::providers::Data<Toml>, String)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        let origin = match toml {
            Some((source, origin)) => {
                figment = figment.merge(source);
                origin
            }
            None => String::new(),
        };
        figment = figment.merge(env_overrides(env));
        let defaults = Value::serialize(Config::default()).expect("defaults serialise");
        match figment.extract::<Value>() {
            Ok(merged) => unknown_keys(&merged, &defaults, "", &mut problems),
            Err(e) => {
                // The file itself does not parse.
                return Err(e
                    .into_iter()
                    .map(|e| Problem {
                        path: origin.clone(),
                        message: e.to_string(),
                    })
                    .collect());
            }
        }
        // Each failed extraction reports one key; put its default in and try again, so that
        // every bad key is reported, not only the first.
        let config = loop {
            match figment.extract::<Config>() {
                Ok(config) => break Some(config),
                Err(errors) => {
                    let mut fixed = false;
                    for e in errors {
                        let path = e.path.join(".");
                        let message = e.kind.to_string();
                        problems.push(Problem {
                            path: path.clone(),
                            message,
                        });
                        if let Some(default) = lookup(&defaults, &e.path) {
                            figment = figment.merge(Serialized::default(&path, default.clone()));
                            fixed = true;
                        }
                    }
                    if !fixed || problems.len() > 100 {
                        break None;
                    }
                }
            }
        };
        if let Some(config) = &config {
            config.validate(&mut problems);
        }
        match config {
            Some(config) if problems.is_empty() => Ok(config),
            _ => Err(problems),
        }
    }

    /// As [`Config::load`] with the process's environment, every problem in one error.
    pub fn load_or_explain(file: Option<&Path>) -> anyhow::Result<Config> {
        Config::load(file, std::env::vars()).map_err(|problems| {
            let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("the configuration is not valid:\n  {}", lines.join("\n  "))
        })
    }

    /// Checks the values that parse but make no sense.
    fn validate(&self, problems: &mut Vec<Problem>) {
        let mut problem = |path: &str, message: String| {
            problems.push(Problem {
                path: path.into(),
                message,
            })
        };
        let listeners = [
            ("order.listen", &self.order.listen),
            ("payment.listen", &self.payment.listen),
            ("delivery.listen", &self.delivery.listen),
            ("view.listen", &self.view.listen),
            ("relay.listen", &self.relay.listen),
        ];
        for (path, listen) in listeners {
            if let Err(e) = listen.parse::<SocketAddr>() {
                problem(path, format!("not an address like 127.0.0.1:8081 ({e})"));
            }
        }
        let databases = [
            ("order.database_url", &self.order.database_url),
            ("payment.database_url", &self.payment.database_url),
            ("delivery.database_url", &self.delivery.database_url),
            ("view.database_url", &self.view.database_url),
            ("transport.log_url", &self.transport.log_url),
        ];
        for (path, url) in databases {
            if let Err(e) = Dialect::from_url(url) {
                problem(path, e.to_string());
            }
        }
        if !(1..=3600).contains(&self.transport.session_timeout_secs) {
            problem(
                "transport.session_timeout_secs",
                "must be between 1 and 3600".into(),
            );
        }
        if self.transport.partitions < 1 {
            problem("transport.partitions", "must be at least 1".into());
        }
        let names = self.transport.topic_names();
        for p in names.problems(&ALL_TOPICS) {
            match p.renamed_topic(&names) {
                Some(topic) => problem(&format!("transport.topics.{topic}"), p.to_string()),
                None => problem("transport.topic_prefix", p.to_string()),
            }
        }
        if self.transport.kind == TransportKind::Kafka && self.transport.brokers.trim().is_empty() {
            problem("transport.brokers", "required with kind = \"kafka\"".into());
        }
        if self.view.query_pool_size == 0 {
            problem("view.query_pool_size", "must be at least 1".into());
        }
        if self.view.consumers == 0 {
            problem("view.consumers", "must be at least 1".into());
        }
        if self.shutdown.deadline_secs == 0 {
            problem("shutdown.deadline_secs", "must be at least 1".into());
        }
        if self.http.idempotency_retention_hours == 0 {
            problem(
                "http.idempotency_retention_hours",
                "must be at least 1".into(),
            );
        }
        if self.http.request_timeout_secs == 0 {
            problem("http.request_timeout_secs", "must be at least 1".into());
        }
        let retention = &self.retention;
        if retention.inbox_secs != 0 && retention.inbox_secs < 3600 {
            problem(
                "retention.inbox_secs",
                "must be at least 3600 (or 0: kept for ever): a shorter dedupe window lets a redelivered message apply twice".into(),
            );
        }
        if retention.batch_size == 0 {
            problem("retention.batch_size", "must be at least 1".into());
        }
        if retention.interval_secs == 0 {
            problem("retention.interval_secs", "must be at least 1".into());
        }
        if self.relay.lease_ms < 1000 {
            problem("relay.lease_ms", "must be at least 1000".into());
        }
        if self.relay.batch_size == 0 {
            problem("relay.batch_size", "must be at least 1".into());
        }
        if self
            .http
            .bearer_token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            problem("http.bearer_token", "must not be empty when set".into());
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            problem("log.level", format!("not a log filter ({e})"));
        }
        self.validate_views(problems);
    }

    /// Checks the declared views: each declaration, and that no two views share a listener
    /// address and no topic is read in two envelope formats. (A clash with another role's
    /// listener is reported when it binds, by the role that runs both.)
    fn validate_views(&self, problems: &mut Vec<Problem>) {
        let mut listeners: BTreeMap<&str, String> = BTreeMap::new();
        let mut formats: BTreeMap<String, (String, tramline_core::wire::WireFormat)> =
            BTreeMap::new();
        for (name, spec) in &self.views {
            let at = format!("views.{name}");
            let plain = name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !plain || name.is_empty() {
                problems.push(Problem {
                    path: at.clone(),
                    message: "a view's name is lower-case letters, digits and '_' (so that TRAMLINE_VIEWS__<NAME>__<KEY> variables reach it)".into(),
                });
            }
            if let Err(found) = spec.declaration(name, &at) {
                problems.extend(found.into_iter().map(|p| Problem {
                    path: p.path,
                    message: p.message,
                }));
            }
            if let Some(other) = listeners.insert(&spec.listen, format!("{at}.listen")) {
                problems.push(Problem {
                    path: format!("{at}.listen"),
                    message: format!("{} is {other} already", spec.listen),
                });
            }
            let Ok(format) = spec.envelope.format() else {
                continue;
            };
            for topic in spec.all_topics() {
                match formats.get(&topic) {
                    Some((other, f)) if *f != format => problems.push(Problem {
                        path: format!("{at}.envelope"),
                        message: format!(
                            "topic {topic} is read by {other} in another envelope format"
                        ),
                    }),
                    _ => {
                        formats.insert(topic, (at.clone(), format.clone()));
                    }
                }
            }
        }
    }

    /// The envelope format of every declared view's topics on the cluster.
    pub fn topic_formats(&self) -> BTreeMap<String, tramline_core::wire::WireFormat> {
        let names = self.transport.topic_names();
        self.views
            .values()
            .filter_map(|spec| Some((spec, spec.envelope.format().ok()?)))
            .flat_map(|(spec, format)| {
                spec.all_topics()
                    .into_iter()
                    .map(move |t| (t, format.clone()))
            })
            .map(|(topic, format)| (names.cluster_name(&topic), format))
            .collect()
    }

    /// The configuration as TOML with every secret hidden.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        for url in [
            &mut shown.order.database_url,
            &mut shown.payment.database_url,
            &mut shown.delivery.database_url,
            &mut shown.view.database_url,
            &mut shown.transport.log_url,
        ] {
            *url = tramline_sql::db::redact(url);
        }
        for view in shown.views.values_mut() {
            view.database_url = tramline_sql::db::redact(&view.database_url);
        }
        if shown.http.bearer_token.is_some() {
            shown.http.bearer_token = Some("***".into());
        }
        for (key, value) in shown.transport.kafka.iter_mut() {
            if key.contains("password") || key.contains("secret") {
                *value = "***".into();
            }
        }
        toml_text(&shown)
    }
}

/// `TRAMLINE_<SECTION>__<KEY>` variables as a nested dictionary.
fn env_overrides(env: impl IntoIterator<Item = (String, String)>) -> Figment {
    let mut dict = Dict::new();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix("TRAMLINE_") else {
            continue;
        };
        if !rest.contains("__") {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        // librdkafka properties are dotted: TRAMLINE_TRANSPORT__KAFKA__LINGER_MS → linger.ms;
        // topics are hyphenated: TRAMLINE_TRANSPORT__TOPICS__ORDER_EVENTS → order-events.
        let path = match path.as_slice() {
            [t, k, prop] if t == "transport" && k == "kafka" => {
                vec![t.clone(), k.clone(), prop.replace('_', ".")]
            }
            [t, k, topic] if t == "transport" && k == "topics" => {
                vec![t.clone(), k.clone(), topic.replace('_', "-")]
            }
            _ => path,
        };
        insert(&mut dict, &path, parse_env_value(&value));
    }
    Figment::from(Serialized::defaults(Value::from(dict)))
}

/// An environment value as TOML would read it bare: a boolean, a number, else a string.
fn parse_env_value(value: &str) -> Value {
    if let Ok(b) = value.parse::<bool>() {
        return Value::from(b);
    }
    if let Ok(i) = value.parse::<i64>() {
        return Value::from(i);
    }
    Value::from(value.to_owned())
}

fn insert(dict: &mut Dict, path: &[String], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry(first.clone())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

fn lookup<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| match v {
        Value::Dict(_, d) => d.get(key),
        _ => None,
    })
}

/// Every key of `given` that `known` does not have, by path.
fn unknown_keys(given: &Value, known: &Value, prefix: &str, problems: &mut Vec<Problem>) {
    let (Value::Dict(_, given), Value::Dict(_, known)) = (given, known) else {
        return;
    };
    for (key, value) in given {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if OPEN_MAPS.contains(&path.as_str()) {
            continue;
        }
        match known.get(key) {
            Some(known) => unknown_keys(value, known, &path, problems),
            None => problems.push(Problem {
                path,
                message: "unknown key".into(),
            }),
        }
    }
}

fn toml_text(config: &Config) -> String {
    toml::to_string_pretty(config).expect("the configuration serialises as TOML")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("a temp file");
        f.write_all(text.as_bytes()).expect("written");
        f
    }

    fn paths(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.path.as_str()).collect()
    }

    #[test]
    fn no_file_gives_the_defaults() {
        let config = Config::load(None, Vec::new()).expect("valid");
        assert_eq!(config, Config::default());
        assert_eq!(config.order.listen, "127.0.0.1:8081");
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let f = file(
            r#"
            [order]
            listen = "nowhere"
            colour = "blue"
            [view]
            consumers = "three"
            pool_size = -1
            [transport]
            kind = "carrier-pigeon"
            [tranport]
            kind = "log"
            [transport.kafka]
            "linger.ms" = "20"
            "#,
        );
        let problems = Config::load(Some(f.path()), Vec::new()).expect_err("invalid");
        let found = paths(&problems);
        for expected in [
            "order.colour",
            "tranport",
            "view.consumers",
            "view.pool_size",
            "transport.kind",
            "order.listen",
        ] {
            assert!(
                found.contains(&expected),
                "{expected} missing from {problems:?}"
            );
        }
        assert!(
            !found.iter().any(|p| p.starts_with("transport.kafka")),
            "{problems:?}"
        );
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let f = file("[order]\nlisten = \"127.0.0.1:9001\"\n");
        let env = [
            (
                "TRAMLINE_ORDER__LISTEN".to_owned(),
                "127.0.0.1:9002".to_owned(),
            ),
            ("TRAMLINE_VIEW__CONSUMERS".to_owned(), "5".to_owned()),
            (
                "TRAMLINE_TRANSPORT__KAFKA__LINGER_MS".to_owned(),
                "20".to_owned(),
            ),
            ("TRAMLINE_LOG".to_owned(), "debug".to_owned()),
            (
                "TRAMLINE_TEST_MARIADB_URL".to_owned(),
                "mysql://x".to_owned(),
            ),
        ];
        let config = Config::load(Some(f.path()), env).expect("valid");
        assert_eq!(config.order.listen, "127.0.0.1:9002");
        assert_eq!(config.view.consumers, 5);
        assert_eq!(
            config.transport.kafka.get("linger.ms").map(String::as_str),
            Some("20")
        );
    }

    #[test]
    fn topics_are_renamed_by_the_file_and_the_environment() {
        let f = file(
            r#"
            [transport]
            kind = "kafka"
            topic_prefix = "bars."
            [transport.topics]
            order-events = "com.example.order.Order"
            payment-events = "com.example.payment.Payment"
            "#,
        );
        let env = [(
            "TRAMLINE_TRANSPORT__TOPICS__DELIVERY_EVENTS".to_owned(),
            "com.example.delivery.Delivery".to_owned(),
        )];
        let config = Config::load(Some(f.path()), env).expect("valid");
        let names = config.transport.topic_names();
        assert_eq!(
            names.cluster_name("order-events"),
            "com.example.order.Order"
        );
        assert_eq!(
            names.cluster_name("payment-events"),
            "com.example.payment.Payment"
        );
        assert_eq!(
            names.cluster_name("delivery-events"),
            "com.example.delivery.Delivery"
        );
        let mut partly = config.transport.clone();
        partly.topics.remove("delivery-events");
        assert_eq!(
            partly.topic_names().cluster_name("delivery-events"),
            "bars.delivery-events",
            "a topic not renamed keeps the prefix"
        );
    }

    #[test]
    fn bad_topic_names_are_reported_with_their_paths() {
        let f = file(
            r#"
            [transport.topics]
            order-events = "com.example.Shared"
            payment-events = "com.example.Shared"
            delivery-events = ""
            orders = "com.example.Order"
            "#,
        );
        let problems = Config::load(Some(f.path()), Vec::new()).expect_err("invalid");
        let found = paths(&problems);
        assert_eq!(
            found,
            [
                "transport.topics.orders",
                "transport.topics.delivery-events",
                "transport.topics.payment-events",
            ],
            "{problems:?}"
        );
        assert!(
            problems[0].message.contains("not one of the topics"),
            "{problems:?}"
        );
        assert!(problems[1].message.contains("empty"), "{problems:?}");
        assert!(
            problems[2]
                .message
                .contains("both be named \"com.example.Shared\""),
            "{problems:?}"
        );

        let env = [(
            "TRAMLINE_TRANSPORT__TOPIC_PREFIX".to_owned(),
            "no spaces ".to_owned(),
        )];
        let problems = Config::load(None, env).expect_err("invalid");
        assert_eq!(
            paths(&problems),
            ["transport.topic_prefix"; 3],
            "each topic's name is refused: {problems:?}"
        );
        let env = [(
            "TRAMLINE_TRANSPORT__TOPICS__ORDER_EVENTS".to_owned(),
            "com/example".to_owned(),
        )];
        let problems = Config::load(None, env).expect_err("invalid");
        assert_eq!(paths(&problems), ["transport.topics.order-events"]);
    }

    #[test]
    fn an_unknown_environment_key_is_reported() {
        let env = [("TRAMLINE_ORDER__LISTN".to_owned(), "x".to_owned())];
        let problems = Config::load(None, env).expect_err("invalid");
        assert_eq!(paths(&problems), ["order.listn"]);
    }

    #[test]
    fn secrets_are_hidden_when_printed() {
        let mut config = Config::default();
        config.order.database_url = "mysql://app:hunter2@db:3306/orders".into();
        config.http.bearer_token = Some("s3cret-token".into());
        config
            .transport
            .kafka
            .insert("sasl.password".into(), "kafka-pass".into());
        let text = config.to_redacted_toml();
        for secret in ["hunter2", "s3cret-token", "kafka-pass"] {
            assert!(!text.contains(secret), "{secret} shown in:\n{text}");
        }
        assert!(text.contains("[order]"), "{text}");
    }
}

/// `tramline config …`.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ConfigCommand {
    /// Check a configuration file (with the environment's `TRAMLINE_<SECTION>__<KEY>`
    /// overrides): report every unknown key and invalid value with its path.
    Check {
        /// The TOML file.
        file: std::path::PathBuf,
        /// Also print the effective configuration, secrets hidden.
        #[arg(long)]
        print: bool,
    },
}

/// Runs `tramline config`; the exit code says whether the configuration is valid.
pub fn run(args: ConfigArgs) -> anyhow::Result<std::process::ExitCode> {
    let ConfigCommand::Check { file, print } = args.command;
    match Config::load(Some(&file), std::env::vars()) {
        Ok(config) => {
            if print {
                print!("{}", config.to_redacted_toml());
            }
            println!("{}: valid", file.display());
            Ok(std::process::ExitCode::SUCCESS)
        }
        Err(problems) => {
            for p in &problems {
                eprintln!("{}: {p}", file.display());
            }
            eprintln!(
                "{}: {} problem{}",
                file.display(),
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
            Ok(std::process::ExitCode::FAILURE)
        }
    }
}
