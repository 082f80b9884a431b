//! `tramline load`: places orders through a running order service's `POST /orders` from many
//! concurrent clients and measures what a user sees: accepted orders per second, and how long
//! after its 201 an order shows in the Order Status View (`GET /order-status/{id}`).
//!
//! Latency is sampled: every `--sample`-th order is watched by polling the view, first every
//! `--poll-ms`, then every tenth of the time waited so far, so the watchers add little load
//! even when the view lags (polling a lagging view every few milliseconds from hundreds of
//! watchers would itself slow it down) and the figure's resolution is the larger of the poll
//! interval and 10 %. Before the clock starts, one order is placed and followed into the view, so the
//! figures measure a running system rather than consumer groups forming.

use anyhow::{bail, Context};
use serde::Serialize;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

/// Options of `tramline load`.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// The order service's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    pub(crate) order_url: String,
    /// The Order Status View's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8084")]
    pub(crate) view_url: String,
    /// Orders to place.
    #[arg(long, default_value_t = 5000)]
    pub(crate) orders: u64,
    /// Concurrent clients, each placing one order at a time.
    #[arg(long, default_value_t = 32)]
    pub(crate) clients: u64,
    /// Orders per second across all clients (0: as fast as the clients go). A rate the
    /// system sustains measures the view's latency rather than its backlog.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) rate: f64,
    /// Watch every N-th order until it shows in the view (0: none). Watching many orders of
    /// a lagging view loads it with reads and slows it down: keep this sparse.
    #[arg(long, default_value_t = 100)]
    pub(crate) sample: u64,
    /// How often a watcher asks the view at first (ms); later every tenth of its wait.
    #[arg(long, default_value_t = 10)]
    pub(crate) poll_ms: u64,
    /// Give up watching an order after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub(crate) watch_timeout_secs: u64,
    /// The bearer token, if the service requires one.
    #[arg(long)]
    pub(crate) token: Option<String>,
    /// Print one JSON object instead of a human summary.
    #[arg(long)]
    pub(crate) json: bool,
}

/// What a run measured.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) orders: u64,
    pub(crate) clients: u64,
    /// The requested rate (0: unlimited).
    pub(crate) rate: f64,
    pub(crate) accepted: u64,
    pub(crate) failed: u64,
    pub(crate) elapsed_ms: u64,
    pub(crate) orders_per_sec: f64,
    /// Milliseconds from the POST to its 201.
    pub(crate) create_p50_ms: f64,
    pub(crate) create_p99_ms: f64,
    /// Orders watched until they showed in the view.
    pub(crate) watched: usize,
    /// Milliseconds from the 201 to the view row, at the poll interval's resolution.
    pub(crate) view_p50_ms: f64,
    pub(crate) view_p95_ms: f64,
    pub(crate) view_p99_ms: f64,
    pub(crate) view_max_ms: f64,
    /// Watched orders that never showed within the watch timeout.
    pub(crate) never_seen: u64,
}

/// The body of the `i`-th order (also `tramline chaos`'s).
pub(crate) fn order(i: u64) -> serde_json::Value {
    let quantity = i % 5 + 1;
    serde_json::json!({
        "customerId": format!("customer-{}", i % 1000),
        "productId": format!("product-{}", i % 50),
        "quantity": quantity,
        "amountCents": quantity * 1999,
        "shippingAddress": format!("{} Tram Street", i + 1),
    })
}

/// Places one order and waits until the view shows it: the services, the relay and the
/// view's consumers are all up and assigned their partitions.
async fn warm_up(client: &reqwest::Client, args: &LoadArgs) -> anyhow::Result<()> {
    let mut request = client
        .post(format!("{}/orders", args.order_url.trim_end_matches('/')))
        .json(&order(u64::MAX / 2));
    if let Some(token) = &args.token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("while placing a first order at {}", args.order_url))?;
    if response.status() != reqwest::StatusCode::CREATED {
        bail!(
            "the order service refused a first order: {}",
            response.status()
        );
    }
    let placed: serde_json::Value = response
        .json()
        .await
        .context("while reading the first order's answer")?;
    let id = placed
        .get("orderId")
        .and_then(|v| v.as_str())
        .context("the first order's answer has no orderId")?;
    let url = format!("{}/order-status/{id}", args.view_url.trim_end_matches('/'));
    let deadline = Instant::now() + Duration::from_secs(args.watch_timeout_secs);
    while Instant::now() < deadline {
        let seen = client.get(&url).send().await;
        if seen.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!(
        "the first order did not show in the view at {} within {} s",
        args.view_url,
        args.watch_timeout_secs
    )
}

/// The `q` quantile (0..=1) of sorted `values`, nearest rank.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs the load; fails when any order was refused or never showed in the view.
pub async fn run(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let (report, _) = measure(&args).await?;
    let elapsed = Duration::from_millis(report.elapsed_ms);
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).context("while encoding the report")?
        );
    } else {
        println!(
            "{} of {} orders accepted by {} clients in {:.1} s: {:.0} orders/s (201 in p50 {:.1} ms, p99 {:.1} ms)",
            report.accepted,
            report.orders,
            report.clients,
            elapsed.as_secs_f64(),
            report.orders_per_sec,
            report.create_p50_ms,
            report.create_p99_ms
        );
        println!(
            "  201 → view row, {} orders watched (every {} ms or 10 %): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; {} never seen",
            report.watched,
            args.poll_ms,
            report.view_p50_ms,
            report.view_p99_ms,
            report.view_max_ms,
            report.never_seen
        );
    }
    Ok(if report.failed == 0 && report.never_seen == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Places the orders and watches the sampled ones: the report, and the 201 → view times of
/// the watched orders in ms, ascending.
pub(crate) async fn measure(args: &LoadArgs) -> anyhow::Result<(Report, Vec<f64>)> {
    if args.clients == 0 || args.orders == 0 {
        bail!("--clients and --orders must be at least 1");
    }
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        bail!("--rate must be a number of orders per second (0: unlimited)");
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients as usize * 2)
        .timeout(Duration::from_secs(30))
        .build()
        .context("while building the HTTP client")?;
    warm_up(&client, args).await?;
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let never_seen = Arc::new(AtomicU64::new(0));
    let create_ms = Arc::new(Mutex::new(Vec::with_capacity(args.orders as usize)));
    let view_ms = Arc::new(Mutex::new(Vec::new()));
    let mut watchers = JoinSet::new();
    let (watch_tx, mut watch_rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();

    // Watchers: one task per sampled order, polling the view until the row is there.
    let watching = {
        let client = client.clone();
        let view_url = args.view_url.trim_end_matches('/').to_owned();
        let view_ms = Arc::clone(&view_ms);
        let never_seen = Arc::clone(&never_seen);
        let poll = Duration::from_millis(args.poll_ms.max(1));
        let timeout = Duration::from_secs(args.watch_timeout_secs);
        tokio::spawn(async move {
            while let Some((id, accepted)) = watch_rx.recv().await {
                let client = client.clone();
                let url = format!("{view_url}/order-status/{id}");
                let view_ms = Arc::clone(&view_ms);
                let never_seen = Arc::clone(&never_seen);
                watchers.spawn(async move {
                    loop {
                        let seen = client
                            .get(&url)
                            .send()
                            .await
                            .is_ok_and(|r| r.status().is_success());
                        if seen {
                            view_ms.lock().await.push(ms(accepted.elapsed()));
                            return;
                        }
                        if accepted.elapsed() > timeout {
                            never_seen.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        tokio::time::sleep(poll.max(accepted.elapsed() / 10)).await;
                    }
                });
            }
            while watchers.join_next().await.is_some() {}
        })
    };

    let started = Instant::now();
    let mut clients = JoinSet::new();
    for _ in 0..args.clients {
        let client = client.clone();
        let url = format!("{}/orders", args.order_url.trim_end_matches('/'));
        let token = args.token.clone();
        let next = Arc::clone(&next);
        let failed = Arc::clone(&failed);
        let create_ms = Arc::clone(&create_ms);
        let watch_tx = watch_tx.clone();
        let (orders, sample, rate) = (args.orders, args.sample, args.rate);
        clients.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= orders {
                    break;
                }
                if rate > 0.0 {
                    // The i-th order's slot on the schedule.
                    let slot = started + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(slot.into()).await;
                }
                let mut request = client.post(&url).json(&order(i));
                if let Some(token) = &token {
                    request = request.bearer_auth(token);
                }
                let sent = Instant::now();
                let response = request.send().await;
                let took = sent.elapsed();
                let id = match response {
                    Ok(r) if r.status() == reqwest::StatusCode::CREATED => r
                        .json::<serde_json::Value>()
                        .await
                        .ok()
                        .and_then(|v| v.get("orderId")?.as_str().map(str::to_owned)),
                    Ok(r) => {
                        tracing::warn!(status = %r.status(), "an order was refused");
                        None
                    }
                    Err(e) => {
                        tracing::warn!(error = %tramline_core::error::sentence(&e), "an order request failed");
                        None
                    }
                };
                match id {
                    Some(id) => {
                        mine.push(ms(took));
                        if sample > 0 && i.is_multiple_of(sample) {
                            let _ = watch_tx.send((id, Instant::now()));
                        }
                    }
                    None => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            create_ms.lock().await.extend(mine);
        });
    }
    drop(watch_tx);
    while let Some(joined) = clients.join_next().await {
        joined.context("an order client panicked")?;
    }
    let elapsed = started.elapsed();
    watching.await.context("the view watchers panicked")?;

    let mut create = std::mem::take(&mut *create_ms.lock().await);
    let mut view = std::mem::take(&mut *view_ms.lock().await);
    create.sort_by(f64::total_cmp);
    view.sort_by(f64::total_cmp);
    let accepted = create.len() as u64;
    let report = Report {
        orders: args.orders,
        clients: args.clients,
        rate: args.rate,
        accepted,
        failed: failed.load(Ordering::Relaxed),
        elapsed_ms: elapsed.as_millis() as u64,
        orders_per_sec: accepted as f64 / elapsed.as_secs_f64().max(1e-9),
        create_p50_ms: quantile(&create, 0.5),
        create_p99_ms: quantile(&create, 0.99),
        watched: view.len(),
        view_p50_ms: quantile(&view, 0.5),
        view_p95_ms: quantile(&view, 0.95),
        view_p99_ms: quantile(&view, 0.99),
        view_max_ms: view.last().copied().unwrap_or(0.0),
        never_seen: never_seen.load(Ordering::Relaxed),
    };
    Ok((report, view))
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&values, 0.5), 50.0);
        assert_eq!(quantile(&values, 0.99), 99.0);
        assert_eq!(quantile(&values, 1.0), 100.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
        assert_eq!(quantile(&[7.0], 0.99), 7.0);
    }
}
