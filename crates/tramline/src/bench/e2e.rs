//! `tramline bench e2e`: the whole pipeline — commands → outbox → relay → transport → view —
//! as `tramline demo` runs it, each run a process of its own (so its peak RSS is its own):
//! first at full speed (`max`), then paced at `--rate-fraction` of the full-speed median
//! (`paced`), where the outbox commit → view commit latency is the pipeline's rather than a
//! backlog's. Every run ends with the demo's row-by-row check of the view.

use super::{this_program, BenchArgs, Measured, Session, TransportKind};
use crate::latency::Latency;
use anyhow::{bail, Context};
use serde::Deserialize;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

/// What the bench reads of a demo's report.
#[derive(Debug, Deserialize)]
struct DemoReport {
    orders: u64,
    events_applied: u64,
    elapsed_ms: u64,
    events_per_sec: f64,
    commit_to_view_ms: Latency,
    peak_rss_mb: Option<f64>,
    correct: bool,
}

/// Orders placed per request and clients of a paced run: small requests from more clients,
/// so the pace is even rather than bursts of the demo's bulk imports.
const PACED_BATCH: u64 = 10;
const PACED_CLIENTS: u64 = 8;

/// Runs one demo with `extra` arguments.
async fn demo(args: &BenchArgs, orders: u64, extra: &[String]) -> anyhow::Result<DemoReport> {
    let mut command = std::process::Command::new(this_program()?);
    command
        .arg("demo")
        .arg("--json")
        .args(["--orders", &orders.to_string()])
        .args(["--consumers", &args.consumers.to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(url) = &args.database_url {
        command.args(["--database-url", url]);
    }
    if args.transport == TransportKind::Kafka {
        command.args(["--transport", "kafka", "--brokers", &args.brokers]);
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .context("the demo's waiter panicked")?
        .context("while running tramline demo")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let Some(line) = text.lines().rev().find(|l| l.starts_with('{')) else {
        bail!("tramline demo printed no report ({})", output.status);
    };
    serde_json::from_str(line).context("while reading the demo's report")
}

impl From<&DemoReport> for Measured {
    fn from(r: &DemoReport) -> Measured {
        Measured {
            rate: r.events_per_sec,
            elapsed: Duration::from_millis(r.elapsed_ms),
            correct: r.correct,
            rss_mb: r.peak_rss_mb,
            ..Measured::default()
        }
    }
}

/// Runs `tramline bench e2e`.
pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let mut session = Session::new(args, 2)?;
    let runs = session.args.runs;
    let mut events_per_order = Vec::new();
    for run in 1..=runs {
        session.step("max", run);
        let r = demo(&session.args, session.args.orders, &[]).await?;
        events_per_order.push(r.events_applied as f64 / r.orders.max(1) as f64);
        session.record("max", run, Measured::from(&r))?;
    }
    let full = session.median_of("max").unwrap_or(0.0);
    let per_order = super::median(&events_per_order).max(1.0);
    let events_rate = full * session.args.rate_fraction;
    let orders_rate = events_rate / per_order;
    let latency_orders = session
        .args
        .latency_orders
        .unwrap_or(session.args.orders.min(100_000));
    for run in 1..=runs {
        session.step("paced", run);
        let extra = [
            "--rate".to_owned(),
            format!("{orders_rate:.1}"),
            "--order-batch".to_owned(),
            PACED_BATCH.to_string(),
            "--clients".to_owned(),
            PACED_CLIENTS.to_string(),
        ];
        let r = demo(&session.args, latency_orders, &extra).await?;
        let m = Measured {
            latency: Some(r.commit_to_view_ms.clone()),
            paced: Some(events_rate),
            ..Measured::from(&r)
        };
        session.record("paced", run, m)?;
    }
    let summary = session.summary("max", None);
    session.finish(summary)
}
