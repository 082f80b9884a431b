//! `tramline chaos`: crash anywhere, lose nothing — checked.
//!
//! Runs the order system as separate `tramline serve` processes (order, payment, delivery, two
//! relays, the view) on SQLite files and the embedded log, or on a MariaDB server and a Kafka
//! broker of the run's own; drives orders through the HTTP APIs, with an operator that
//! approves, rejects, ships and cancels; and meanwhile, again and again, SIGKILLs a randomly
//! chosen process at a random moment and starts it again, crashes and restarts MariaDB,
//! restarts the broker, and kills the services' database connections server-side
//! (`KILL CONNECTION`). At the end, with everything running again, it waits for the system to
//! settle and checks: every order answered 201 exists with the status its fate implies, no
//! order has two payments or two deliveries, no consumer applied a message id twice, nothing
//! was parked, and `tramline verify` reports zero differences.
//!
//! The seed fixes each order's fate and the sequence of chaos actions (which process, which
//! pause, which connections); the moments they hit depend on the machine's timing, so two
//! runs of one seed crash the system at different instructions — which is the point.

pub(crate) mod servers;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::Value;
use servers::{free_port, Broker, MariaDb, Restartable};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tramline_sql::{Db, DbOptions};

/// Where the services keep their state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Store {
    /// SQLite files (the embedded default).
    Sqlite,
    /// A MariaDB server the run starts, crashes and restarts.
    Mariadb,
}

/// What carries the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Carrier {
    /// The embedded log, in the store.
    Log,
    /// A Kafka-protocol broker the run starts and restarts.
    Kafka,
}

/// Options of `tramline chaos`.
#[derive(Debug, Clone, clap::Args)]
pub struct ChaosArgs {
    /// Where the services keep their state.
    #[arg(long, value_enum, default_value = "sqlite")]
    store: Store,
    /// What carries the events between the processes.
    #[arg(long, value_enum, default_value = "log")]
    transport: Carrier,
    /// Orders to place.
    #[arg(long, default_value_t = 300)]
    orders: u64,
    /// Concurrent clients, each driving one order at a time through its whole life.
    #[arg(long, default_value_t = 16)]
    clients: u64,
    /// Processes to SIGKILL at least (the run goes on killing until it has, after the last
    /// order too).
    #[arg(long, default_value_t = 10)]
    kills: u64,
    /// Least time between two chaos actions (ms); by default 300 on the embedded log, 1500
    /// on Kafka, whose consumer groups take seconds to hand a killed member's partitions on.
    #[arg(long)]
    min_pause_ms: Option<u64>,
    /// Most time between two chaos actions (ms); by default 1500 on the log, 4000 on Kafka.
    #[arg(long)]
    max_pause_ms: Option<u64>,
    /// The seed of fates and chaos actions (random when not given; printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// Keep the run's files (configuration, databases, every process's log) here; without
    /// it a temporary directory, kept only when the run fails.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Longest wait for the system to settle after the last action (s).
    #[arg(long, default_value_t = 300)]
    settle_secs: u64,
    /// Print one JSON object instead of a human summary.
    #[arg(long)]
    json: bool,
}

/// What an order is driven to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Cancel,
    Reject,
    Complete,
}

impl Fate {
    /// Order `i`'s fate under `seed`: a quarter cancelled, a quarter rejected, half completed.
    fn of(seed: u64, i: u64) -> Fate {
        match splitmix(seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15)) % 4 {
            0 => Fate::Cancel,
            1 => Fate::Reject,
            _ => Fate::Complete,
        }
    }

    /// The order's status at the end.
    fn final_status(self) -> &'static str {
        match self {
            Fate::Cancel => "CANCELLED",
            Fate::Reject => "REJECTED",
            Fate::Complete => "COMPLETED",
        }
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// What the chaos did, by kind.
#[derive(Debug, Default, Clone, Serialize)]
struct Actions {
    /// SIGKILLs, by process.
    killed: BTreeMap<String, u64>,
    mariadb_restarts: u64,
    broker_restarts: u64,
    connections_killed: u64,
    /// Processes that exited by themselves (a database gone longer than their retries) and
    /// were started again.
    exited_by_themselves: BTreeMap<String, u64>,
}

impl Actions {
    fn kills(&self) -> u64 {
        self.killed.values().sum()
    }
}

/// The run's outcome.
#[derive(Debug, Serialize)]
struct Report {
    seed: u64,
    store: Store,
    transport: Carrier,
    orders: u64,
    accepted: u64,
    kills: u64,
    actions: Actions,
    /// Seconds from the first order to the last order's last command.
    drive_secs: f64,
    /// Seconds from the last chaos action to a settled, verified system.
    settle_secs: f64,
    /// Orders answered 201 that the order service does not have.
    missing_orders: u64,
    /// Orders whose final status is not the one their fate implies.
    wrong_status: u64,
    /// Orders with more than one payment, or more than one delivery.
    doubled_effects: u64,
    /// Message ids a consumer recorded as applied more than once.
    doubled_messages: u64,
    /// Messages parked by any consumer.
    parked: u64,
    /// Differences `tramline verify` reported at the end.
    view_differences: u64,
    /// Whether every check held.
    ok: bool,
    /// The run's directory, when it is kept.
    dir: Option<String>,
}

/// The roles, in start order.
const ROLES: [&str; 6] = ["order", "payment", "delivery", "view", "relay-1", "relay-2"];

struct Layout {
    config: PathBuf,
    /// Base URLs by role.
    bases: BTreeMap<&'static str, String>,
    /// Database URLs by store name (order, payment, delivery, view, log).
    databases: BTreeMap<&'static str, String>,
}

fn write_config(
    dir: &Path,
    args: &ChaosArgs,
    seed: u64,
    mariadb: Option<&MariaDb>,
    broker: Option<&Broker>,
) -> anyhow::Result<Layout> {
    let mut databases = BTreeMap::new();
    for store in ["order", "payment", "delivery", "view", "log"] {
        let url = match mariadb {
            Some(m) => m.url(&format!("chaos_{store}")),
            None => format!("sqlite://{}", dir.join(format!("{store}.db")).display()),
        };
        databases.insert(store, url);
    }
    let mut bases = BTreeMap::new();
    let mut ports = BTreeMap::new();
    for role in ROLES {
        let port = free_port()?;
        ports.insert(role, port);
        bases.insert(role, format!("http://127.0.0.1:{port}"));
    }
    let transport = match (args.transport, broker) {
        (Carrier::Kafka, Some(b)) => format!(
            "kind = \"kafka\"\nbrokers = \"{}\"\ntopic_prefix = \"chaos-{seed}-\"\ngroup_prefix = \"chaos-{seed}-\"\nsession_timeout_secs = 6\n",
            b.brokers()
        ),
        _ => format!("kind = \"log\"\nlog_url = \"{}\"\n", databases["log"]),
    };
    let mut text = format!("[transport]\n{transport}partitions = 4\n\n");
    for role in ["order", "payment", "delivery", "view"] {
        text += &format!(
            "[{role}]\nlisten = \"127.0.0.1:{}\"\ndatabase_url = \"{}\"\n",
            ports[role], databases[role]
        );
        if role == "view" {
            text += "consumers = 2\n";
        }
        text += "\n";
    }
    text += &format!(
        "[relay]\nlisten = \"127.0.0.1:{}\"\nidle_poll_ms = 20\nlease_ms = 2000\n\n[shutdown]\ndeadline_secs = 10\n",
        ports["relay-1"]
    );
    let config = dir.join("tramline.toml");
    std::fs::write(&config, text).context("while writing the configuration")?;
    Ok(Layout {
        config,
        bases,
        databases,
    })
}

/// The HTTP side of a run: one client, retrying through the outages the chaos causes.
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    deadline: Duration,
}

impl Client {
    /// `POST url` with `body` and `Idempotency-Key: key`, again and again while the service is
    /// unreachable, failing (5xx) or still running an earlier attempt (409
    /// idempotency-key-in-progress); the final status and body.
    async fn post(
        &self,
        url: &str,
        body: Option<&Value>,
        key: &str,
    ) -> anyhow::Result<(u16, Value)> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(20);
        loop {
            let mut request = self.http.post(url).header("Idempotency-Key", key);
            if let Some(body) = body {
                request = request.json(body);
            }
            if let Ok(response) = request.send().await {
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                let in_progress = status == 409
                    && body["type"]
                        .as_str()
                        .is_some_and(|t| t.ends_with("idempotency-key-in-progress"));
                if status < 500 && !in_progress {
                    return Ok((status, body));
                }
            }
            if started.elapsed() > self.deadline {
                bail!("POST {url} did not succeed within {:?}", self.deadline);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    /// `GET url`'s JSON once it answers 200 and `field` is set in it.
    async fn field(&self, url: &str, field: &str) -> anyhow::Result<String> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(10);
        loop {
            if let Ok(response) = self.http.get(url).send().await {
                if response.status().as_u16() == 200 {
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    if let Some(value) = body[field].as_str() {
                        return Ok(value.to_owned());
                    }
                }
            }
            if started.elapsed() > self.deadline {
                bail!("{field} never showed at {url} within {:?}", self.deadline);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(500));
        }
    }

    async fn ready(&self, base: &str, within: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Ok(r) = self.http.get(format!("{base}/ready")).send().await {
                if r.status().is_success() {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

/// Drives order `i` to its fate; its id once answered 201.
async fn drive(
    client: &Client,
    bases: &BTreeMap<&'static str, String>,
    seed: u64,
    i: u64,
) -> anyhow::Result<(String, Fate)> {
    let key = |step: &str| format!("chaos-{seed}-{i}-{step}");
    let (order, payment, delivery, view) = (
        &bases["order"],
        &bases["payment"],
        &bases["delivery"],
        &bases["view"],
    );
    let (status, body) = client
        .post(
            &format!("{order}/orders"),
            Some(&crate::load::order(i)),
            &key("place"),
        )
        .await?;
    if status != 201 {
        bail!("POST /orders answered {status}: {body}");
    }
    let id = body["orderId"]
        .as_str()
        .context("POST /orders answered no orderId")?
        .to_owned();
    let fate = Fate::of(seed, i);
    let expect_ok = |what: &str, (status, body): (u16, Value)| {
        if status == 200 {
            Ok(())
        } else {
            Err(anyhow::anyhow!(
                "{what} of order {id} answered {status}: {body}"
            ))
        }
    };
    match fate {
        Fate::Cancel => {
            let answer = client
                .post(&format!("{order}/orders/{id}/cancel"), None, &key("cancel"))
                .await?;
            expect_ok("cancel", answer)?;
        }
        Fate::Reject | Fate::Complete => {
            let payment_id = client
                .field(&format!("{view}/order-status/{id}"), "paymentId")
                .await?;
            let verb = if fate == Fate::Reject {
                "reject"
            } else {
                "approve"
            };
            let answer = client
                .post(
                    &format!("{payment}/payments/{payment_id}/{verb}"),
                    None,
                    &key(verb),
                )
                .await?;
            expect_ok(verb, answer)?;
        }
    }
    if fate == Fate::Complete {
        let delivery_id = client
            .field(&format!("{view}/order-status/{id}"), "deliveryId")
            .await?;
        for step in ["start", "complete"] {
            let answer = client
                .post(
                    &format!("{delivery}/deliveries/{delivery_id}/{step}"),
                    None,
                    &key(step),
                )
                .await?;
            expect_ok(step, answer)?;
        }
    }
    Ok((id, fate))
}

/// Everything the chaos thread can hit.
struct Fleet {
    processes: Vec<Restartable>,
    mariadb: Option<MariaDb>,
    broker: Option<Broker>,
}

impl Fleet {
    /// Starts any process that exited by itself.
    fn heal(&mut self, actions: &mut Actions) -> anyhow::Result<()> {
        for p in &mut self.processes {
            if !p.running() {
                *actions
                    .exited_by_themselves
                    .entry(p.name.clone())
                    .or_default() += 1;
                p.start()?;
            }
        }
        Ok(())
    }

    /// Kills about half of the services' connections on the run's MariaDB; how many.
    fn kill_connections(&self, rng: &mut StdRng) -> u64 {
        let Some(m) = &self.mariadb else { return 0 };
        let client = |sql: &str| {
            std::process::Command::new("mariadb")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-P",
                    &m.port.to_string(),
                    "-u",
                    "root",
                    "-N",
                    "-e",
                    sql,
                ])
                .output()
        };
        let Ok(out) = client(
            "SELECT id FROM information_schema.PROCESSLIST WHERE id <> CONNECTION_ID() AND db LIKE 'chaos\\_%'",
        ) else {
            return 0;
        };
        let ids: Vec<u64> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        let chosen: Vec<String> = ids
            .into_iter()
            .filter(|_| rng.gen_bool(0.5))
            .map(|id| format!("KILL CONNECTION {id};"))
            .collect();
        if chosen.is_empty() {
            return 0;
        }
        // A connection that ended meanwhile fails its KILL; the others still go.
        let mut killed = 0;
        for kill in &chosen {
            if client(kill).is_ok_and(|o| o.status.success()) {
                killed += 1;
            }
        }
        killed
    }
}

/// One chaos action.
#[derive(Debug, Clone, Copy)]
enum Action {
    /// SIGKILL a random process, start it again after a random pause.
    Kill,
    /// SIGKILL MariaDB, start it again (crash recovery).
    CrashDb,
    /// `KILL CONNECTION` about half the services' connections.
    KillConnections,
    /// SIGKILL the broker, start it again on its data.
    RestartBroker,
}

/// The chaos thread: actions until the drive is over, enough processes were killed and each
/// kind of action happened at least once.
fn rampage(
    fleet: &mut Fleet,
    rng: &mut StdRng,
    args: &ChaosArgs,
    driving: &AtomicBool,
    progress: &ProgressBar,
) -> anyhow::Result<Actions> {
    let mut actions = Actions::default();
    let (min, max) = match args.transport {
        Carrier::Log => (300, 1500),
        Carrier::Kafka => (1500, 4000),
    };
    let min = args.min_pause_ms.unwrap_or(min);
    let max = args.max_pause_ms.unwrap_or(max).max(min);
    let has_db = fleet.mariadb.is_some();
    let has_broker = fleet.broker.is_some();
    // Once the drive is over, the run goes on until each kind of action happened.
    let missing = |a: &Actions| {
        if a.kills() < args.kills {
            Some(Action::Kill)
        } else if has_db && a.mariadb_restarts == 0 {
            Some(Action::CrashDb)
        } else if has_db && a.connections_killed == 0 {
            Some(Action::KillConnections)
        } else if has_broker && a.broker_restarts == 0 {
            Some(Action::RestartBroker)
        } else {
            None
        }
    };
    loop {
        let forced = match (driving.load(Ordering::SeqCst), missing(&actions)) {
            (true, _) => None,
            (false, None) => break,
            (false, Some(action)) => Some(action),
        };
        let pause = rng.gen_range(min..=max);
        std::thread::sleep(Duration::from_millis(pause));
        fleet.heal(&mut actions)?;
        let roll: u32 = rng.gen_range(0..100);
        let action = forced.unwrap_or(match roll {
            0..8 if has_db => Action::CrashDb,
            8..20 if has_db => Action::KillConnections,
            20..28 if has_broker => Action::RestartBroker,
            _ => Action::Kill,
        });
        match action {
            Action::CrashDb => {
                progress.set_message("crashing MariaDB");
                if let Some(m) = fleet.mariadb.as_mut() {
                    m.crash_and_restart()?;
                }
                actions.mariadb_restarts += 1;
            }
            Action::KillConnections => {
                actions.connections_killed += fleet.kill_connections(rng);
            }
            Action::RestartBroker => {
                progress.set_message("restarting the broker");
                if let Some(b) = fleet.broker.as_mut() {
                    b.restart()?;
                }
                actions.broker_restarts += 1;
            }
            Action::Kill => {
                let victim = rng.gen_range(0..fleet.processes.len());
                let down = Duration::from_millis(rng.gen_range(0..800));
                let p = &mut fleet.processes[victim];
                progress.set_message(format!("killed {}", p.name));
                p.kill();
                std::thread::sleep(down);
                p.start()?;
                *actions.killed.entry(p.name.clone()).or_default() += 1;
            }
        }
    }
    fleet.heal(&mut actions)?;
    Ok(actions)
}

async fn count(db: &Db, sql: &str) -> anyhow::Result<i64> {
    db.fetch_i64(&db.stmt(sql), "chaos", "count")
        .await
        .with_context(|| format!("while counting: {sql}"))
}

/// Order id → status, as the order service holds them.
async fn order_statuses(db: &Db) -> anyhow::Result<BTreeMap<String, String>> {
    let stmt = db.stmt(&format!(
        "SELECT {} FROM orders",
        db.dialect().json_tuples(&["order_id", "status"])
    ));
    let rows: Vec<(String, String)> = db
        .fetch_json(&stmt, "chaos", "read orders")
        .await
        .context("while reading the orders")?;
    Ok(rows.into_iter().collect())
}

/// Runs `tramline verify --config --json` on the run's configuration: the differences it
/// printed (one JSON line each, before its summary line).
async fn verify(config: &Path) -> anyhow::Result<u64> {
    let exe = std::env::current_exe().context("while finding the tramline binary")?;
    let config = config.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(exe)
            .args(["verify", "--json", "--config"])
            .arg(config)
            .output()
    })
    .await
    .context("while running tramline verify")?
    .context("while running tramline verify")?;
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let Some(summary) = lines.iter().find(|l| l["summary"] == true) else {
        bail!(
            "tramline verify printed no summary: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let differences = lines.iter().filter(|l| l["summary"] != true).count() as u64;
    if summary["correct"] != true && differences == 0 {
        bail!("tramline verify found the view incorrect but printed no difference: {summary}");
    }
    Ok(differences)
}

/// Runs `tramline chaos`: exit status 0 when every check held, 1 otherwise.
pub async fn run(args: ChaosArgs) -> anyhow::Result<ExitCode> {
    let seed = args.seed.unwrap_or_else(rand::random);
    eprintln!("tramline chaos --seed {seed}");
    let temp = match &args.dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("tramline-chaos-")
                .tempdir()
                .context("while making the run's directory")?,
        ),
    };
    let dir = match (&args.dir, &temp) {
        (Some(d), _) => {
            std::fs::create_dir_all(d)?;
            if std::fs::read_dir(d)?.next().is_some() {
                bail!(
                    "{} is not empty: a run needs fresh databases (remove it or name another)",
                    d.display()
                );
            }
            d.canonicalize()?
        }
        (None, Some(t)) => t.path().to_owned(),
        (None, None) => unreachable!("a temporary directory when none is given"),
    };
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let outcome = run_in(&args, seed, &dir, &logs).await;
    let keep = args.dir.is_some() || !matches!(&outcome, Ok(r) if r.ok);
    let kept = if keep {
        if let Some(t) = temp {
            let _ = t.keep();
        }
        Some(dir.display().to_string())
    } else {
        None
    };
    let mut report = match outcome {
        Ok(report) => report,
        Err(e) => {
            if let Some(dir) = &kept {
                eprintln!("the run's files and logs are kept in {dir}");
            }
            return Err(e);
        }
    };
    report.dir = kept;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_report(r: &Report) {
    let verdict = if r.ok { "nothing lost" } else { "FAILED" };
    println!(
        "chaos --seed {} on {:?} + {:?}: {verdict}",
        r.seed, r.store, r.transport
    );
    println!(
        "  {} of {} orders accepted in {:.1} s; settled {:.1} s after the last action",
        r.accepted, r.orders, r.drive_secs, r.settle_secs
    );
    let killed: Vec<String> = r
        .actions
        .killed
        .iter()
        .map(|(name, n)| format!("{name} ×{n}"))
        .collect();
    println!("  SIGKILLed {} processes: {}", r.kills, killed.join(", "));
    println!(
        "  MariaDB crashed {} times, broker restarted {} times, {} connections killed, {} processes exited by themselves",
        r.actions.mariadb_restarts,
        r.actions.broker_restarts,
        r.actions.connections_killed,
        r.actions.exited_by_themselves.values().sum::<u64>()
    );
    println!(
        "  missing orders {}, wrong statuses {}, doubled payments/deliveries {}, messages applied twice {}, parked {}, view differences {}",
        r.missing_orders, r.wrong_status, r.doubled_effects, r.doubled_messages, r.parked, r.view_differences
    );
    if let Some(dir) = &r.dir {
        println!("  files and logs: {dir}");
    }
}

async fn run_in(args: &ChaosArgs, seed: u64, dir: &Path, logs: &Path) -> anyhow::Result<Report> {
    if args.orders == 0 || args.clients == 0 {
        bail!("--orders and --clients must be at least 1");
    }
    let mariadb = match args.store {
        Store::Mariadb => {
            Some(MariaDb::start(dir, logs).context("while starting the run's MariaDB")?)
        }
        Store::Sqlite => None,
    };
    let broker = match args.transport {
        Carrier::Kafka => {
            Some(Broker::start(dir, logs).context("while starting the run's broker")?)
        }
        Carrier::Log => None,
    };
    if let Some(m) = &mariadb {
        let admin = Db::connect(&m.url("mysql"), &DbOptions::default())
            .await
            .context("while connecting to the run's MariaDB")?;
        for store in ["order", "payment", "delivery", "view", "log"] {
            admin
                .execute(
                    &admin.stmt(&format!("CREATE DATABASE IF NOT EXISTS chaos_{store}")),
                    "chaos",
                    "create database",
                )
                .await?;
        }
        admin.close().await;
    }
    let layout = write_config(dir, args, seed, mariadb.as_ref(), broker.as_ref())?;
    let exe = std::env::current_exe().context("while finding the tramline binary")?;
    let mut processes = Vec::new();
    for role in ROLES {
        let serve_role = role.split('-').next().unwrap_or(role);
        let args = vec![
            "serve".to_owned(),
            serve_role.to_owned(),
            "--config".to_owned(),
            layout.config.display().to_string(),
        ];
        let mut p = Restartable::new(role, &exe, &args, dir, logs);
        if serve_role == "relay" {
            let address = layout.bases[role].trim_start_matches("http://").to_owned();
            p = p
                .env("TRAMLINE_RELAY__LISTEN", &address)
                .env("TRAMLINE_RELAY__HOLDER", role);
        }
        processes.push(p);
    }
    let client = Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .context("while making the HTTP client")?,
        deadline: Duration::from_secs(args.settle_secs.max(60)),
    };
    for p in &mut processes {
        p.start()?;
        let base = layout
            .bases
            .get(p.name.as_str())
            .cloned()
            .unwrap_or_default();
        if !client.ready(&base, Duration::from_secs(120)).await {
            bail!(
                "{} never became ready; its log ends:\n{}",
                p.name,
                p.tail(30)
            );
        }
    }
    let mut fleet = Fleet {
        processes,
        mariadb,
        broker,
    };

    let progress = if std::io::stderr().is_terminal() && !args.json {
        ProgressBar::new(args.orders).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} orders driven  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        )
    } else {
        ProgressBar::hidden()
    };
    let driving = Arc::new(AtomicBool::new(true));
    let started = Instant::now();
    let chaos = {
        let (driving, progress) = (Arc::clone(&driving), progress.clone());
        let mut rng = StdRng::seed_from_u64(seed);
        let chaos_args = args.clone();
        std::thread::spawn(move || {
            let actions = rampage(&mut fleet, &mut rng, &chaos_args, &driving, &progress);
            (fleet, actions)
        })
    };
    let accepted = Arc::new(AtomicU64::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..args.clients {
        let (client, bases, accepted, progress) = (
            client.clone(),
            layout.bases.clone(),
            Arc::clone(&accepted),
            progress.clone(),
        );
        let (orders, step) = (args.orders, args.clients);
        clients.spawn(async move {
            let mut driven = Vec::new();
            for i in (c..orders).step_by(step as usize) {
                let (id, fate) = drive(&client, &bases, seed, i).await?;
                accepted.fetch_add(1, Ordering::Relaxed);
                progress.inc(1);
                driven.push((id, fate));
            }
            Ok::<_, anyhow::Error>(driven)
        });
    }
    let mut driven = Vec::new();
    let mut failure = None;
    while let Some(joined) = clients.join_next().await {
        match joined {
            Ok(Ok(d)) => driven.extend(d),
            Ok(Err(e)) => {
                failure.get_or_insert(e);
            }
            Err(e) => {
                failure.get_or_insert(anyhow::anyhow!("a client panicked: {e}"));
            }
        }
    }
    let drive_secs = started.elapsed().as_secs_f64();
    driving.store(false, Ordering::SeqCst);
    progress.set_message("killing until enough processes were");
    let (mut fleet, actions) = tokio::task::spawn_blocking(move || chaos.join())
        .await
        .context("while waiting for the chaos thread")?
        .map_err(|_| anyhow::anyhow!("the chaos thread panicked"))?;
    let mut actions = actions?;
    if let Some(e) = failure {
        stop(&mut fleet);
        return Err(e.context("while driving the orders"));
    }

    // Settle: every fate reached in the services, and the view verified exact.
    progress.set_message("settling");
    let settled_from = Instant::now();
    let opts = DbOptions {
        max_connections: Some(2),
        ..DbOptions::default()
    };
    let order_db = Db::connect(&layout.databases["order"], &opts).await?;
    let expected: BTreeMap<String, Fate> = driven.iter().cloned().collect();
    let (mut missing, mut wrong, mut differences);
    loop {
        fleet.heal(&mut actions)?;
        let statuses = order_statuses(&order_db).await?;
        missing = expected
            .keys()
            .filter(|id| !statuses.contains_key(*id))
            .count() as u64;
        wrong = expected
            .iter()
            .filter(|(id, fate)| statuses.get(*id).is_some_and(|s| s != fate.final_status()))
            .count() as u64;
        differences = if missing == 0 && wrong == 0 {
            verify(&layout.config).await?
        } else {
            u64::MAX
        };
        if differences == 0 || settled_from.elapsed() > Duration::from_secs(args.settle_secs) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let settle_secs = settled_from.elapsed().as_secs_f64();
    if differences == u64::MAX {
        differences = verify(&layout.config).await.unwrap_or(u64::MAX);
    }
    progress.finish_and_clear();

    // No effect twice, nothing parked.
    let mut doubled_effects = 0;
    let mut doubled_messages = 0;
    let mut parked = 0;
    for store in ["order", "payment", "delivery", "view"] {
        let db = Db::connect(&layout.databases[store], &opts).await?;
        match store {
            "payment" => {
                doubled_effects += count(
                    &db,
                    "SELECT COUNT(*) - COUNT(DISTINCT order_id) FROM payments",
                )
                .await?;
            }
            "delivery" => {
                doubled_effects += count(
                    &db,
                    "SELECT COUNT(*) - COUNT(DISTINCT order_id) FROM deliveries",
                )
                .await?;
            }
            _ => {}
        }
        doubled_messages += count(
            &db,
            "SELECT COUNT(*) FROM (SELECT consumer, message_id FROM tramline_inbox \
             GROUP BY consumer, message_id HAVING COUNT(*) > 1) AS doubled",
        )
        .await?;
        parked += count(&db, "SELECT COUNT(*) FROM tramline_parked").await?;
        db.close().await;
    }
    order_db.close().await;
    stop(&mut fleet);
    let ok = missing == 0
        && wrong == 0
        && doubled_effects == 0
        && doubled_messages == 0
        && parked == 0
        && differences == 0
        && driven.len() as u64 == args.orders;
    if !ok {
        for p in &fleet.processes {
            eprintln!("--- {} (last lines)\n{}", p.name, p.tail(15));
        }
    }
    Ok(Report {
        seed,
        store: args.store,
        transport: args.transport,
        orders: args.orders,
        accepted: accepted.load(Ordering::Relaxed),
        kills: actions.kills(),
        actions,
        drive_secs,
        settle_secs,
        missing_orders: missing,
        wrong_status: wrong,
        doubled_effects: u64::try_from(doubled_effects).unwrap_or(u64::MAX),
        doubled_messages: u64::try_from(doubled_messages).unwrap_or(u64::MAX),
        parked: u64::try_from(parked).unwrap_or(u64::MAX),
        view_differences: differences,
        ok,
        dir: None,
    })
}

/// Stops every process politely, then the servers.
fn stop(fleet: &mut Fleet) {
    for p in fleet.processes.iter_mut().rev() {
        p.stop(Duration::from_secs(15));
    }
    if let Some(b) = fleet.broker.as_mut() {
        b.server.stop(Duration::from_secs(10));
    }
    if let Some(m) = fleet.mariadb.as_mut() {
        m.server.stop(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fates_follow_the_seed_in_the_stated_shares() {
        let fates: Vec<Fate> = (0..4000).map(|i| Fate::of(7, i)).collect();
        assert_eq!(fates, (0..4000).map(|i| Fate::of(7, i)).collect::<Vec<_>>());
        let completed = fates.iter().filter(|f| **f == Fate::Complete).count();
        assert!((1800..2200).contains(&completed), "{completed}");
        assert_ne!(
            fates[..64],
            (0..64).map(|i| Fate::of(8, i)).collect::<Vec<_>>()[..]
        );
    }
}
