//! `tramline view rebuild NAME --config FILE`: replays a declared view's sources into a
//! shadow table while the live one keeps serving, then swaps them (`tramline_views::rebuild`).

use crate::config::Config;
use crate::serve::{kafka_config, open_view, prepare_sqlite};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use tramline_core::ports::Transport;
use tramline_kafka::KafkaTransport;
use tramline_sql::{Db, DbOptions, ReadModelTable, SqlLog};
use tramline_views::rebuild::{self, Phase, Progress};

/// `tramline view …`.
#[derive(Debug, clap::Args)]
pub struct ViewArgs {
    #[command(subcommand)]
    command: ViewCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ViewCommand {
    /// Rebuild a declared view from its topics' beginning into a shadow table while the live
    /// table keeps serving, then swap them atomically; running views carry on.
    Rebuild {
        /// The view's name (`[views.<name>]`).
        name: String,
        /// The configuration file that declares it.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

/// Runs `tramline view`.
pub async fn run(args: ViewArgs) -> anyhow::Result<ExitCode> {
    let ViewCommand::Rebuild { name, config } = args.command;
    let config = Config::load_or_explain(Some(&config))?;
    let Some(spec) = config.views.get(&name) else {
        let declared: Vec<&str> = config.views.keys().map(String::as_str).collect();
        anyhow::bail!(
            "no view {name:?} is declared (declared: {})",
            if declared.is_empty() {
                "none".to_owned()
            } else {
                declared.join(", ")
            }
        );
    };
    let (db, table) = open_view(&name, spec, None).await?;
    // A group of the rebuild's own, new each time, so it reads from the beginning.
    let group = format!(
        "{}-rebuild-{}",
        spec.group_name(&name),
        uuid::Uuid::now_v7().simple()
    );
    let topics = spec.all_topics();
    let outcome = match config.transport.kind {
        crate::config::TransportKind::Log => {
            let url = &config.transport.log_url;
            prepare_sqlite(url)?;
            let log = SqlLog::open(url, &DbOptions::default())
                .await
                .with_context(|| {
                    format!(
                        "while opening the log at {} (transport.log_url)",
                        tramline_sql::db::redact(url)
                    )
                })?;
            let outcome = replay(&log, &db, &table, &group, &topics, &name).await;
            log.db().close().await;
            outcome
        }
        crate::config::TransportKind::Kafka => {
            let kafka = KafkaTransport::connect(kafka_config(&config))
                .await
                .context("while connecting to Kafka (transport.brokers)")?;
            replay(&kafka, &db, &table, &group, &topics, &name).await
        }
    };
    db.close().await;
    outcome.map(|()| ExitCode::SUCCESS)
}

async fn replay<T: Transport>(
    transport: &T,
    db: &Db,
    table: &ReadModelTable,
    group: &str,
    topics: &[String],
    name: &str,
) -> anyhow::Result<()> {
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} records  {msg}",
            )
            .expect("the template is valid"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let started = Instant::now();
    let report = rebuild::rebuild(transport, db, table, group, topics, |p: Progress| {
        bar.set_length(p.total);
        bar.set_position(p.read);
        bar.set_message(match p.phase {
            Phase::Replay => "into the shadow table",
            Phase::CatchUp => "swapped; catching up",
            _ => "done",
        });
    })
    .await
    .with_context(|| format!("while rebuilding view {name}"))?;
    bar.finish_and_clear();
    println!(
        "rebuilt view {name}: {} records read, {} applied, {} skipped, {} rows at the swap, in {:.1} s",
        report.read,
        report.applied,
        report.skipped,
        report.rows_at_swap,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
