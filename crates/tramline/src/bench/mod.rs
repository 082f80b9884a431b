//! `tramline bench <ceiling|projection|relay|e2e|http>`: what tramline costs, measured against
//! the database's own ceiling and two baselines in the same invocation.
//!
//! Every bench runs its comparisons interleaved, run by run (a noisy stretch of a shared
//! machine then falls on all of them), reports the median and spread of `--runs` runs, and
//! ends every run with the view checked row by row: a run that leaves a wrong view fails the
//! bench (a baseline's wrong rows are its anomalies, counted and reported). With `--json` it
//! prints one object per run and, last, one summary object; docs/BENCHMARKS.md is generated
//! from those summaries by `scripts/benchmarks report`.

mod ceiling;
mod e2e;
mod http;
mod projection;
mod relay;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tramline_sql::provision::Scratch;
use tramline_sql::Dialect;

use crate::demo::drop_scratch;
pub(crate) use crate::demo::TransportKind;
use crate::latency::Latency;

/// The variants that are baselines: wrong by design, their anomalies counted, not failed.
const BASELINES: [&str; 2] = ["naive", "whole-row"];

/// Which bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bench {
    /// The database's own multi-row insert and upsert rate for view-shaped rows, with 1 and
    /// `--consumers` connections: the physical limit the others are compared with.
    Ceiling,
    /// Events/s applied to the Order Status View from a pre-filled log by tramline's
    /// projection, the seed's naive read-then-write and a JDBC sink's whole-row upsert.
    Projection,
    /// Outbox rows/s read, published and marked by the relay, against reading and marking
    /// alone.
    Relay,
    /// The whole pipeline (commands → outbox → relay → transport → view) at full speed, then
    /// its commit → view latency at `--rate-fraction` of that speed.
    E2e,
    /// Orders/s through `POST /orders` of a `tramline serve all` it starts, then 201 → view
    /// latency at `--rate-fraction` of that rate.
    Http,
}

/// Options of `tramline bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    bench: Bench,
    /// Run on this server instead of SQLite files: `mysql://` or `postgres://`; the bench
    /// creates its databases (or schemas) there and drops them afterwards.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// What carries the events: the embedded log or a Kafka cluster (`--brokers`).
    #[arg(long, value_enum, default_value_t = TransportKind::Log)]
    transport: TransportKind,
    /// Kafka bootstrap brokers (with --transport kafka).
    #[arg(long, default_value = "127.0.0.1:9092", value_name = "HOST:PORT[,…]")]
    brokers: String,
    /// Orders (the ceiling writes and the relay publishes one row per order).
    #[arg(long, default_value_t = 100_000)]
    orders: u64,
    /// Consumer lanes of the view (and connections of the ceiling's concurrent variant).
    #[arg(long, default_value_t = 3)]
    consumers: usize,
    /// Runs of each comparison; the summary gives their median and spread.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Print one JSON object per run and, last, a summary object.
    #[arg(long)]
    json: bool,
    /// projection: orders of the naive baseline's own, smaller log (it applies one event at
    /// a time; default: --orders, at most 10,000).
    #[arg(long)]
    baseline_orders: Option<u64>,
    /// projection: fraction of events the pre-filled log holds a second time, after newer
    /// events of the same key, as a relay killed between publish and mark leaves them.
    #[arg(long, default_value_t = 0.01)]
    duplicates: f64,
    /// e2e, http: the paced run's rate, as a fraction of the full-speed run's median.
    #[arg(long, default_value_t = 0.5)]
    rate_fraction: f64,
    /// e2e: orders of each paced (latency) run (default: --orders, at most 100,000).
    #[arg(long)]
    latency_orders: Option<u64>,
    /// http: concurrent clients, each placing one order at a time.
    #[arg(long, default_value_t = 64)]
    clients: u64,
    /// projection: run only these comparisons (`tramline`, `whole-row`, `naive`, `upsert-N`),
    /// e.g. under a profiler; the summary then lacks the others.
    #[arg(long, value_delimiter = ',', value_name = "VARIANT,…")]
    only: Vec<String>,
}

impl BenchArgs {
    /// Whether comparison `variant` runs.
    pub(crate) fn wants(&self, variant: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|v| v == variant)
    }
}

impl BenchArgs {
    /// The kind of database the bench runs on.
    fn database(&self) -> anyhow::Result<&'static str> {
        Ok(match &self.database_url {
            None => "sqlite",
            Some(url) => match Dialect::from_url(url)? {
                Dialect::Sqlite => bail!("--database-url: give a server (mysql:// or postgres://); SQLite is the default"),
                Dialect::MySql => "mariadb",
                Dialect::Postgres => "postgres",
            },
        })
    }
}

/// The machine a bench ran on, for the report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    cpus: usize,
    memory_gib: f64,
    os: String,
    cpu_model: String,
    tramline: String,
}

impl Machine {
    fn here() -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let field = |text: &str, name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| {
                    v.trim_start_matches([' ', '\t', ':', '='])
                        .trim()
                        .trim_matches('"')
                })
                .unwrap_or("unknown")
                .to_owned()
        };
        let meminfo = read("/proc/meminfo");
        let mem_kib: f64 = field(&meminfo, "MemTotal")
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap_or(0.0);
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            os: field(&read("/etc/os-release"), "PRETTY_NAME"),
            cpu_model: field(&read("/proc/cpuinfo"), "model name"),
            tramline: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// The anomalies a projection left, counted from the finished view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Anomalies {
    /// Writes refused on a duplicate primary key (two handlers inserting one order's row).
    duplicate_key_errors: u64,
    /// A source's columns absent although the source exists: the write was lost.
    lost_updates: u64,
    /// A source's columns holding an older version than the source: overwritten by an
    /// older copy.
    stale_overwrites: u64,
    /// Rows that differ from the services' tables in any way (or are missing).
    wrong_rows: u64,
}

impl Anomalies {
    fn any(&self) -> bool {
        *self != Anomalies::default()
    }
}

/// The spread of a figure over the runs.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Spread {
    min: f64,
    max: f64,
}

/// One run of one comparison.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Run {
    kind: &'static str,
    bench: Bench,
    variant: String,
    run: usize,
    database: &'static str,
    transport: TransportKind,
    orders: u64,
    consumers: usize,
    elapsed_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    events_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rows_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    orders_per_sec: Option<f64>,
    /// Whether the view came out exact (the ceiling and relay write no view: true).
    correct: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    anomalies: Option<Anomalies>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rss_mb: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<Latency>,
    /// The paced rate of a latency run (events/s for e2e, orders/s for http).
    #[serde(skip_serializing_if = "Option::is_none")]
    rate: Option<f64>,
}

/// What a run measured, before it is labelled.
#[derive(Debug, Clone, Default)]
pub(crate) struct Measured {
    /// Events, rows or orders per second (by the bench's unit).
    pub rate: f64,
    pub elapsed: Duration,
    pub correct: bool,
    pub anomalies: Option<Anomalies>,
    pub rss_mb: Option<f64>,
    pub latency: Option<Latency>,
    /// The paced rate asked for, for latency runs.
    pub paced: Option<f64>,
}

/// A comparison's median over the runs.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Variant {
    #[serde(skip_serializing_if = "Option::is_none")]
    median_events_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    median_rows_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    median_orders_per_sec: Option<f64>,
    spread: Spread,
}

/// A baseline's median and anomalies.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Baseline {
    median_events_per_sec: f64,
    /// tramline's median ÷ the baseline's.
    ratio: f64,
    /// The most of each anomaly one run left.
    anomalies: Anomalies,
    orders: u64,
}

/// A latency summary: the median run's percentiles and the paced rate.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LatencySummary {
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
    rate_fraction: f64,
    rate: f64,
}

/// The last object a bench prints.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Summary {
    kind: &'static str,
    bench: Bench,
    database: &'static str,
    transport: TransportKind,
    orders: u64,
    consumers: usize,
    runs: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    clients: Option<u64>,
    command: String,
    started_at: String,
    machine: Machine,
    #[serde(skip_serializing_if = "Option::is_none")]
    median_events_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    median_rows_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    median_orders_per_sec: Option<f64>,
    spread: Spread,
    #[serde(skip_serializing_if = "Option::is_none")]
    ceiling_rows_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio_to_ceiling: Option<f64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    baselines: BTreeMap<String, Baseline>,
    #[serde(skip_serializing_if = "Option::is_none")]
    anomalies: Option<Anomalies>,
    variants: BTreeMap<String, Variant>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rss_mb: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<LatencySummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_cdf_ms: Option<Vec<[f64; 2]>>,
    /// Whether every run of tramline left an exact view.
    correct: bool,
}

/// The unit of a bench's main figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    Events,
    Rows,
    Orders,
}

impl Unit {
    /// The unit of comparison `variant` of `bench`: the ceiling's variants count rows
    /// whichever bench runs them.
    fn of_variant(bench: Bench, variant: &str) -> Unit {
        match variant.starts_with("upsert-") || variant.starts_with("insert-") {
            true => Unit::Rows,
            false => Unit::of(bench),
        }
    }

    fn of(bench: Bench) -> Unit {
        match bench {
            Bench::Ceiling | Bench::Relay => Unit::Rows,
            Bench::Projection | Bench::E2e => Unit::Events,
            Bench::Http => Unit::Orders,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Unit::Events => "events/s",
            Unit::Rows => "rows/s",
            Unit::Orders => "orders/s",
        }
    }
}

/// The median of `values` (the mean of the middle two for an even count); 0 when empty.
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The run whose figure is the median's (the lower middle for an even count).
fn median_run(runs: &[&Measured]) -> Option<usize> {
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by(|&a, &b| runs[a].rate.total_cmp(&runs[b].rate));
    order.get(runs.len().saturating_sub(1) / 2).copied()
}

/// A bench in progress: its options, its runs so far, its progress bar.
pub(crate) struct Session {
    pub args: BenchArgs,
    pub database: &'static str,
    started_at: String,
    runs: Vec<(String, Measured)>,
    pub progress: ProgressBar,
    failures: Vec<String>,
}

impl Session {
    /// A bench of `per_run` comparisons, each run `args.runs` times.
    fn new(args: BenchArgs, per_run: usize) -> anyhow::Result<Session> {
        let database = args.database()?;
        let progress = if args.json || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            let pb = ProgressBar::new((args.runs * per_run) as u64);
            pb.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} runs  {msg}",
                )
                .expect("the template is valid"),
            );
            pb.enable_steady_tick(Duration::from_millis(200));
            pb
        };
        Ok(Session {
            database,
            started_at: now_rfc3339(),
            args,
            runs: Vec::new(),
            progress,
            failures: Vec::new(),
        })
    }

    /// Says what runs now.
    pub fn step(&self, what: &str, run: usize) {
        self.progress
            .set_message(format!("{what}, run {run} of {}", self.args.runs));
    }

    /// Records run `run` of `variant`, printing it.
    pub fn record(&mut self, variant: &str, run: usize, m: Measured) -> anyhow::Result<()> {
        let unit = Unit::of_variant(self.args.bench, variant);
        let line = Run {
            kind: "run",
            bench: self.args.bench,
            variant: variant.to_owned(),
            run,
            database: self.database,
            transport: self.args.transport,
            orders: self.args.orders,
            consumers: self.args.consumers,
            elapsed_ms: m.elapsed.as_millis() as u64,
            events_per_sec: (unit == Unit::Events).then_some(m.rate),
            rows_per_sec: (unit == Unit::Rows).then_some(m.rate),
            orders_per_sec: (unit == Unit::Orders).then_some(m.rate),
            correct: m.correct,
            anomalies: m.anomalies,
            rss_mb: m.rss_mb,
            latency_ms: m.latency.clone(),
            rate: m.paced,
        };
        if self.args.json {
            println!(
                "{}",
                serde_json::to_string(&line).context("while encoding a run")?
            );
        } else {
            let mut text = format!(
                "{variant:>14} run {run}: {:>10.0} {} in {:.1} s",
                m.rate,
                unit.name(),
                m.elapsed.as_secs_f64()
            );
            if let Some(a) = m.anomalies.filter(Anomalies::any) {
                text += &format!(
                    "; {} duplicate-key errors, {} lost updates, {} stale overwrites, {} wrong rows",
                    a.duplicate_key_errors, a.lost_updates, a.stale_overwrites, a.wrong_rows
                );
            }
            if let Some(l) = &m.latency {
                text += &format!(
                    "; latency p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
                    l.p50, l.p95, l.p99
                );
            }
            if let Some(rss) = m.rss_mb {
                text += &format!("; peak RSS {rss:.0} MiB");
            }
            match self.progress.is_hidden() {
                true => println!("{text}"),
                false => self.progress.println(text),
            }
        }
        if !m.correct && !BASELINES.contains(&variant) {
            self.failures.push(format!("{variant} run {run}"));
        }
        self.progress.inc(1);
        self.runs.push((variant.to_owned(), m));
        Ok(())
    }

    /// The runs of `variant`.
    fn of(&self, variant: &str) -> Vec<&Measured> {
        self.runs
            .iter()
            .filter(|(v, _)| v == variant)
            .map(|(_, m)| m)
            .collect()
    }

    /// The median figure of `variant`, if it ran.
    pub fn median_of(&self, variant: &str) -> Option<f64> {
        let runs = self.of(variant);
        (!runs.is_empty()).then(|| median(&runs.iter().map(|m| m.rate).collect::<Vec<_>>()))
    }

    fn variant(&self, variant: &str) -> Option<Variant> {
        let rates: Vec<f64> = self.of(variant).iter().map(|m| m.rate).collect();
        if rates.is_empty() {
            return None;
        }
        let m = Some(median(&rates));
        let unit = Unit::of_variant(self.args.bench, variant);
        Some(Variant {
            median_events_per_sec: m.filter(|_| unit == Unit::Events),
            median_rows_per_sec: m.filter(|_| unit == Unit::Rows),
            median_orders_per_sec: m.filter(|_| unit == Unit::Orders),
            spread: Spread {
                min: rates.iter().copied().fold(f64::INFINITY, f64::min),
                max: rates.iter().copied().fold(0.0, f64::max),
            },
        })
    }

    /// The summary, with `main` as the main figure's variant and `ceiling` (a rows/s median)
    /// to compare it with, if any.
    pub fn summary(&self, main: &str, ceiling: Option<f64>) -> Summary {
        let unit = Unit::of(self.args.bench);
        let main_variant = self.variant(main);
        let figure = main_variant.as_ref().map(|v| {
            v.median_events_per_sec
                .or(v.median_rows_per_sec)
                .or(v.median_orders_per_sec)
                .unwrap_or(0.0)
        });
        let mains = self.of(main);
        let median_run = median_run(&mains).map(|i| mains[i]);
        let variants: BTreeMap<String, Variant> = {
            let mut names: Vec<&String> = self.runs.iter().map(|(v, _)| v).collect();
            names.dedup();
            names
                .into_iter()
                .filter_map(|n| Some((n.clone(), self.variant(n)?)))
                .collect()
        };
        let anomalies = mains.iter().filter_map(|m| m.anomalies).reduce(worst);
        // Latency comes from the paced runs: the one whose p99 is the median's.
        let paced = {
            let mut paced: Vec<&Measured> = self
                .runs
                .iter()
                .filter(|(v, m)| v == "paced" && m.latency.is_some())
                .map(|(_, m)| m)
                .collect();
            paced.sort_by(|a, b| {
                let p99 = |m: &&Measured| m.latency.as_ref().map_or(0.0, |l| l.p99);
                p99(a).total_cmp(&p99(b))
            });
            paced.get(paced.len().saturating_sub(1) / 2).copied()
        };
        Summary {
            kind: "summary",
            bench: self.args.bench,
            database: self.database,
            transport: self.args.transport,
            orders: self.args.orders,
            consumers: self.args.consumers,
            runs: self.args.runs,
            clients: (self.args.bench == Bench::Http).then_some(self.args.clients),
            command: command_line(),
            started_at: self.started_at.clone(),
            machine: Machine::here(),
            median_events_per_sec: figure.filter(|_| unit == Unit::Events),
            median_rows_per_sec: figure.filter(|_| unit == Unit::Rows),
            median_orders_per_sec: figure.filter(|_| unit == Unit::Orders),
            spread: main_variant.map_or(Spread { min: 0.0, max: 0.0 }, |v| v.spread),
            ceiling_rows_per_sec: ceiling,
            ratio_to_ceiling: ceiling
                .zip(figure)
                .filter(|(c, _)| *c > 0.0)
                .map(|(c, f)| f / c),
            baselines: BTreeMap::new(),
            anomalies,
            variants,
            rss_mb: median_run.and_then(|m| m.rss_mb),
            latency_ms: paced.and_then(|m| {
                let l = m.latency.as_ref()?;
                Some(LatencySummary {
                    p50: l.p50,
                    p95: l.p95,
                    p99: l.p99,
                    max: l.max,
                    rate_fraction: self.args.rate_fraction,
                    rate: m.paced.unwrap_or(0.0),
                })
            }),
            latency_cdf_ms: paced.and_then(|m| Some(m.latency.as_ref()?.cdf.clone())),
            correct: self.failures.is_empty(),
        }
    }

    /// Adds baseline `name` (its runs recorded under that variant) to `summary`.
    pub fn baseline(&self, summary: &mut Summary, name: &str, orders: u64) {
        let runs = self.of(name);
        let Some(median) = self.median_of(name) else {
            return;
        };
        let mine = summary
            .median_events_per_sec
            .or(summary.median_rows_per_sec)
            .unwrap_or(0.0);
        summary.baselines.insert(
            name.to_owned(),
            Baseline {
                median_events_per_sec: median,
                ratio: if median > 0.0 { mine / median } else { 0.0 },
                anomalies: runs
                    .iter()
                    .filter_map(|m| m.anomalies)
                    .reduce(worst)
                    .unwrap_or_default(),
                orders,
            },
        );
    }

    /// Prints the summary and says whether every run of tramline was exact.
    pub fn finish(self, summary: Summary) -> anyhow::Result<ExitCode> {
        self.progress.finish_and_clear();
        if self.args.json {
            println!(
                "{}",
                serde_json::to_string(&summary).context("while encoding the summary")?
            );
        } else {
            print_human(&summary);
        }
        if !self.failures.is_empty() {
            eprintln!(
                "error: the view was wrong after {}",
                self.failures.join(", ")
            );
            return Ok(ExitCode::FAILURE);
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// The larger of each anomaly count.
fn worst(a: Anomalies, b: Anomalies) -> Anomalies {
    Anomalies {
        duplicate_key_errors: a.duplicate_key_errors.max(b.duplicate_key_errors),
        lost_updates: a.lost_updates.max(b.lost_updates),
        stale_overwrites: a.stale_overwrites.max(b.stale_overwrites),
        wrong_rows: a.wrong_rows.max(b.wrong_rows),
    }
}

fn print_human(s: &Summary) {
    println!(
        "{:?} on {} via {:?}, {} orders, {} consumers, median of {} runs:",
        s.bench, s.database, s.transport, s.orders, s.consumers, s.runs
    );
    for (name, v) in &s.variants {
        let unit = Unit::of_variant(s.bench, name);
        let m = v
            .median_events_per_sec
            .or(v.median_rows_per_sec)
            .or(v.median_orders_per_sec)
            .unwrap_or(0.0);
        println!(
            "  {name:>14}: {m:>10.0} {} ({:.0}–{:.0})",
            unit.name(),
            v.spread.min,
            v.spread.max
        );
    }
    if let (Some(c), Some(r)) = (s.ceiling_rows_per_sec, s.ratio_to_ceiling) {
        println!("  ceiling {c:.0} rows/s; ratio to the ceiling {r:.2}");
    }
    for (name, b) in &s.baselines {
        println!(
            "  tramline ÷ {name} = {:.1}; {name} left {} duplicate-key errors, {} lost updates, {} stale overwrites, {} wrong rows",
            b.ratio,
            b.anomalies.duplicate_key_errors,
            b.anomalies.lost_updates,
            b.anomalies.stale_overwrites,
            b.anomalies.wrong_rows
        );
    }
    if let Some(rss) = s.rss_mb {
        println!("  peak RSS {rss:.0} MiB");
    }
    if let Some(l) = &s.latency_ms {
        println!(
            "  latency at {:.0} % of full speed ({:.0}/s): p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            l.rate_fraction * 100.0,
            l.rate,
            l.p50,
            l.p95,
            l.p99,
            l.max
        );
    }
}

/// The command line as typed (arguments with spaces quoted).
fn command_line() -> String {
    std::env::args()
        .enumerate()
        .map(|(i, a)| match i {
            0 => "tramline".to_owned(),
            _ if a.contains(' ') => format!("{a:?}"),
            _ => a,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Now, as RFC 3339 UTC.
fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Where a bench's stores live: SQLite files in a temporary directory, or databases it
/// creates on `--database-url`'s server and drops afterwards.
pub(crate) struct Places {
    dir: tempfile::TempDir,
    server: Option<String>,
    created: Vec<Scratch>,
    tag: String,
}

impl Places {
    pub fn new(server: Option<&str>) -> anyhow::Result<Places> {
        let tag = uuid::Uuid::now_v7().simple().to_string();
        Ok(Places {
            dir: tempfile::tempdir().context("while creating a temporary directory")?,
            server: server.map(str::to_owned),
            created: Vec::new(),
            tag: tag[tag.len() - 8..].to_owned(),
        })
    }

    /// The temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A new, empty store called `name` (unique within the bench).
    pub async fn store(&mut self, name: &str) -> anyhow::Result<String> {
        match &self.server {
            None => Ok(format!(
                "sqlite://{}",
                self.dir.path().join(format!("{name}.db")).display()
            )),
            Some(server) => {
                let db = format!("tramline_bench_{}_{}", self.tag, name.replace('-', "_"));
                let scratch = Scratch::create(server, &db).await.with_context(|| {
                    format!(
                        "while creating database {db} on {}",
                        tramline_sql::db::redact(server)
                    )
                })?;
                let url = scratch.url().to_owned();
                self.created.push(scratch);
                Ok(url)
            }
        }
    }

    /// Drops the store created last under `url` (SQLite files are removed with the
    /// directory).
    pub async fn drop_store(&mut self, url: &str) -> anyhow::Result<()> {
        if let Some(i) = self.created.iter().position(|s| s.url() == url) {
            drop_scratch(self.created.remove(i)).await?;
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            for suffix in ["", "-wal", "-shm", ".migrate-lock"] {
                let _ = std::fs::remove_file(format!("{path}{suffix}"));
            }
        }
        Ok(())
    }

    /// Drops every database the bench created.
    pub async fn clean_up(self) -> anyhow::Result<()> {
        for scratch in self.created {
            drop_scratch(scratch).await?;
        }
        Ok(())
    }
}

/// Runs `tramline bench`.
pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.runs == 0 || args.orders == 0 || args.consumers == 0 || args.clients == 0 {
        bail!("--runs, --orders, --consumers and --clients must be at least 1");
    }
    if !(args.rate_fraction > 0.0 && args.rate_fraction <= 1.0) {
        bail!("--rate-fraction must be within (0, 1]");
    }
    if !(0.0..=1.0).contains(&args.duplicates) {
        bail!("--duplicates must be a fraction between 0 and 1");
    }
    // Refused before anything is created on it.
    args.database()?;
    let mut places = Places::new(args.database_url.as_deref())?;
    let outcome = match args.bench {
        Bench::Ceiling => ceiling::run(args, &mut places).await,
        Bench::Projection => projection::run(args, &mut places).await,
        Bench::Relay => relay::run(args, &mut places).await,
        Bench::E2e => e2e::run(args).await,
        Bench::Http => http::run(args).await,
    };
    let cleaned = places.clean_up().await;
    let code = outcome?;
    cleaned?;
    Ok(code)
}

/// This program, to run its other commands as child processes.
pub(crate) fn this_program() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("while finding the tramline program to run")
}
