//! `tramline bench http`: orders/s through `POST /orders` of a `tramline serve all` it starts
//! with the defaults (its stores in the bench's temporary directory or on `--database-url`'s
//! server, free loopback ports), from `--clients` concurrent clients (`tramline load`), then
//! the 201 → view row latency at `--rate-fraction` of that rate. Each run starts a new
//! system; it ends with `tramline verify` of the view against the services' tables.

use super::{this_program, BenchArgs, Measured, Places, Session, TransportKind};
use crate::chaos::servers::{free_port, Restartable};
use crate::latency::Latency;
use crate::load::{measure, LoadArgs};
use anyhow::{bail, Context};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How long the system may take to answer `/ready`, and the view to settle after the load.
const STARTUP: Duration = Duration::from_secs(60);
const SETTLE: Duration = Duration::from_secs(180);

/// A `serve all` of one run: its configuration file and its two addresses.
struct Serve {
    process: Restartable,
    config: std::path::PathBuf,
    order_url: String,
    view_url: String,
}

/// Writes run `run`'s configuration (the defaults, but for stores and ports) and starts it.
async fn start(args: &BenchArgs, places: &mut Places, run: usize) -> anyhow::Result<Serve> {
    let dir = places.dir().join(format!("serve-{run}"));
    std::fs::create_dir_all(&dir).context("while creating the run's directory")?;
    let mut store = async |name: &str| places.store(&format!("http-{run}-{name}")).await;
    let (order, payment, delivery, view, log) = (
        store("order").await?,
        store("payment").await?,
        store("delivery").await?,
        store("view").await?,
        store("log").await?,
    );
    let ports = [
        free_port()?,
        free_port()?,
        free_port()?,
        free_port()?,
        free_port()?,
    ];
    let transport = match args.transport {
        TransportKind::Log => format!("kind = \"log\"\nlog_url = \"{log}\"\n"),
        TransportKind::Kafka => {
            let tag = uuid::Uuid::now_v7().simple().to_string();
            let prefix = format!("tramline-bench-{}-http{run}.", &tag[tag.len() - 8..]);
            format!(
                "kind = \"kafka\"\nbrokers = \"{}\"\ntopic_prefix = \"{prefix}\"\ngroup_prefix = \"{prefix}\"\n",
                args.brokers
            )
        }
    };
    let section = |name: &str, port: u16, url: &str| {
        format!("[{name}]\nlisten = \"127.0.0.1:{port}\"\ndatabase_url = \"{url}\"\n")
    };
    let text = [
        format!("[transport]\n{transport}"),
        section("order", ports[0], &order),
        section("payment", ports[1], &payment),
        section("delivery", ports[2], &delivery),
        section("view", ports[3], &view),
        format!("[relay]\nlisten = \"127.0.0.1:{}\"\n", ports[4]),
    ]
    .join("\n");
    let config = dir.join("tramline.toml");
    std::fs::write(&config, text).context("while writing the configuration")?;
    let program = this_program()?;
    let serve_args = [
        "serve".to_owned(),
        "all".to_owned(),
        "--config".to_owned(),
        config.display().to_string(),
    ];
    let mut process = Restartable::new("serve", &program, &serve_args, &dir, &dir);
    process.start()?;
    let serve = Serve {
        process,
        config,
        order_url: format!("http://127.0.0.1:{}", ports[0]),
        view_url: format!("http://127.0.0.1:{}", ports[3]),
    };
    ready(&serve, &dir).await?;
    Ok(serve)
}

/// Waits until the order service and the view answer `/ready`.
async fn ready(serve: &Serve, dir: &Path) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + STARTUP;
    for base in [&serve.order_url, &serve.view_url] {
        loop {
            let answer = client.get(format!("{base}/ready")).send().await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "tramline serve all did not get ready within {} s (its log: {})",
                    STARTUP.as_secs(),
                    dir.join("serve.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// `tramline load` against the run's system.
fn load(serve: &Serve, orders: u64, clients: u64, rate: f64, sample: u64) -> LoadArgs {
    LoadArgs {
        order_url: serve.order_url.clone(),
        view_url: serve.view_url.clone(),
        orders,
        clients,
        rate,
        sample,
        poll_ms: 5,
        watch_timeout_secs: 120,
        token: None,
        json: true,
    }
}

/// Runs `tramline verify` on the run's configuration until the view is exact (the services
/// and the view may still be working through the last orders' reactions), or `SETTLE` passed.
async fn verified(serve: &Serve) -> anyhow::Result<bool> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let mut verify = std::process::Command::new(this_program()?);
        verify
            .args(["verify", "--json", "--config"])
            .arg(&serve.config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let status = tokio::task::spawn_blocking(move || verify.status())
            .await
            .context("the verifier's waiter panicked")?
            .context("while running tramline verify")?;
        if status.success() {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// One run: full speed, then paced; the two measurements.
async fn one_run(
    session: &Session,
    places: &mut Places,
    run: usize,
    paced_rate: Option<f64>,
) -> anyhow::Result<(Measured, Option<Measured>)> {
    let args = &session.args;
    let mut serve = start(args, places, run).await?;
    let outcome = async {
        let (full, _) = measure(&load(&serve, args.orders, args.clients, 0.0, 100)).await?;
        let rate = paced_rate.unwrap_or(full.orders_per_sec * args.rate_fraction);
        session.step("paced", run);
        let paced_orders = args.orders.min((rate * 20.0) as u64).max(1);
        let (paced, samples) = measure(&load(&serve, paced_orders, args.clients, rate, 10)).await?;
        let correct = verified(&serve).await?;
        let ok = |r: &crate::load::Report| r.failed == 0 && r.never_seen == 0;
        let full_m = Measured {
            rate: full.orders_per_sec,
            elapsed: Duration::from_millis(full.elapsed_ms),
            correct: correct && ok(&full),
            ..Measured::default()
        };
        let paced_m = Measured {
            rate: paced.orders_per_sec,
            elapsed: Duration::from_millis(paced.elapsed_ms),
            correct: correct && ok(&paced),
            latency: Some(Latency::from_sorted(&samples)),
            paced: Some(rate),
            ..Measured::default()
        };
        Ok::<_, anyhow::Error>((full_m, Some(paced_m)))
    }
    .await;
    serve.process.stop(Duration::from_secs(30));
    outcome
}

/// Runs `tramline bench http`.
pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let mut session = Session::new(args, 2)?;
    for run in 1..=session.args.runs {
        session.step("max", run);
        // Each run's stores, dropped with it.
        let mut own = Places::new(session.args.database_url.as_deref())?;
        // Every run paces at the first run's rate × the fraction, so paced runs compare.
        let paced_rate = session
            .median_of("max")
            .map(|m| m * session.args.rate_fraction);
        let measured = one_run(&session, &mut own, run, paced_rate).await;
        own.clean_up().await?;
        let (full, paced) = measured?;
        session.record("max", run, full)?;
        if let Some(paced) = paced {
            session.record("paced", run, paced)?;
        }
    }
    let summary = session.summary("max", None);
    session.finish(summary)
}
