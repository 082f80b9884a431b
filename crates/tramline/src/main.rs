//! `tramline`: runs the order system, its demo and its checks.

mod config;
mod demo;
mod migrate;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Transactional messaging and CQRS read models: the order system of the seed, done right.
#[derive(Debug, Parser)]
#[command(name = "tramline", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run order, payment and delivery services, their relays, the embedded log (or Kafka) and
    /// the Order Status View in one process, drive orders through their lifecycle and verify
    /// the view.
    Demo(Box<demo::DemoArgs>),
    /// Check a configuration file of `tramline serve`.
    Config(config::ConfigArgs),
    /// Apply a store's versioned schema migrations to its database (stores also migrate
    /// themselves when they open).
    Migrate(migrate::MigrateArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TRAMLINE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Demo(args) => demo::run(*args).await,
        Command::Migrate(args) => migrate::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Config(args) => config::run(args),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", sentence(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes as one sentence, each cause once: store errors repeat their
/// driver's message in their own, so a cause already said by the layer above is skipped.
fn sentence(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let message = cause.to_string();
        if out.contains(&message) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&message);
    }
    out
}
