//! `tramline`: runs the order system, its demo and its checks.

use tramline::config;
mod bench;
mod chaos;
mod demo;
mod latency;
mod load;
mod migrate;
mod parked;
mod serve;
mod telemetry;
mod verify;
mod view;

use clap::{Parser, Subcommand};

/// mimalloc rather than glibc's malloc: the pipeline allocates and frees many small buffers
/// (rows, envelopes, statements) across threads, where glibc's arenas spent a fifth of the
/// projection's time (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
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
    /// Run one role of the order system (or `all`) as a long-running service with its HTTP
    /// API, until SIGTERM or Ctrl-C.
    Serve(serve::ServeArgs),
    /// Place orders through a running order service's HTTP API from concurrent clients and
    /// measure orders/s and the time until each shows in the Order Status View.
    Load(load::LoadArgs),
    /// Check a configuration file of `tramline serve`.
    Config(config::ConfigArgs),
    /// Operate on a declared view: `rebuild` it from its topics.
    View(view::ViewArgs),
    /// Compare the Order Status View with the services' own tables and print every row and
    /// column that differs; exit status 1 on any difference.
    Verify(verify::VerifyArgs),
    /// Look at, retry or skip the messages consumers parked: `list`, `show`, `retry`, `skip`.
    Parked(parked::ParkedArgs),
    /// Run the order system as separate processes, drive orders through its APIs while
    /// SIGKILLing processes and crashing its database and broker, then check nothing was lost
    /// or applied twice and the view is exact.
    Chaos(chaos::ChaosArgs),
    /// Measure what tramline costs: `ceiling`, `projection`, `relay`, `e2e` or `http`,
    /// against the database's own ceiling and two baselines, median of several runs.
    Bench(Box<bench::BenchArgs>),
    /// Apply a store's versioned schema migrations to its database (stores also migrate
    /// themselves when they open).
    Migrate(migrate::MigrateArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` installs the logger its configuration asks for.
    if !matches!(cli.command, Command::Serve(_)) {
        telemetry::init_command_logs();
    }
    let outcome = match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Load(args) => load::run(args).await,
        Command::Demo(args) => demo::run(*args).await,
        Command::Migrate(args) => migrate::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Config(args) => config::run(args),
        Command::View(args) => view::run(args).await,
        Command::Parked(args) => parked::run(args).await,
        Command::Verify(args) => verify::run(args).await,
        Command::Chaos(args) => chaos::run(args).await,
        Command::Bench(args) => bench::run(*args).await,
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            // Every error says its own part once; `{:#}` joins the chain.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
