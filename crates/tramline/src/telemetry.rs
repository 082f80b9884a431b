//! Logs and metrics of a serving process: `tracing` written as readable lines or JSON objects
//! (the `[log]` section), and a Prometheus recorder whose text every listener serves at
//! `/metrics`.
//!
//! The libraries emit through the `metrics` facade (names in docs/METRICS.md); this module
//! only installs the recorder and sets the histogram buckets (the HTTP metrics are counted by
//! `tramline_orders::http::instrumented`).

use crate::config::{LogConfig, LogFormat};
use anyhow::Context;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::io::IsTerminal;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

/// Logs of the commands other than `serve`: warnings and errors on stderr, or what
/// `TRAMLINE_LOG` asks for.
pub fn init_command_logs() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_env("TRAMLINE_LOG").unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .init();
}

/// Logs of `tramline serve`, on stderr, as `[log]` says.
pub fn init_service_logs(config: &LogConfig) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&config.level)
        .with_context(|| format!("log.level {:?} is not a log filter", config.level))?;
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not in files or log collectors.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter);
    let installed = match config.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("while installing the logger: {e}"))
}

/// Seconds: from a millisecond to a few minutes, for latencies and ages.
const SECONDS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Messages per relay round, up to the largest batch size anyone configures.
const BATCH_SIZES: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
];

/// Installs the process's Prometheus recorder and keeps its histograms trimmed; the handle
/// renders `/metrics`.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS)
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("tramline_relay_batch_size".into()),
                &BATCH_SIZES,
            )
        })
        .context("while configuring the metrics' buckets")?
        .install_recorder()
        .context("while installing the metrics recorder")?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// The `/metrics` route: every metric of the process in Prometheus' text format.
pub fn metrics_route(handle: PrometheusHandle) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let text = handle.render();
            std::future::ready(
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    text,
                )
                    .into_response(),
            )
        }),
    )
}
