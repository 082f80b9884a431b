//! `tramline verify --config FILE`: recomputes the Order Status View from the three services'
//! own tables of a running or stopped system and reports every row and column that differs,
//! a page of orders at a time (memory stays flat however many orders there are).

use crate::config::Config;
use anyhow::Context;
use indicatif::ProgressBar;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use tramline_orders::system::Stores;
use tramline_orders::view::verify::Difference;
use tramline_sql::{DbOptions, OutboxLayout};

/// Options of `tramline verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The configuration of `tramline serve` whose databases to compare (without it: the
    /// defaults and the `TRAMLINE_<SECTION>__<KEY>` variables).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print one JSON object per difference, then one summary object (JSON Lines).
    #[arg(long)]
    json: bool,
}

/// Runs `tramline verify`: exit status 0 when the view is exact, 1 on any difference.
pub async fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load_or_explain(args.config.as_deref())?;
    if !config.views.is_empty() {
        anyhow::bail!(
            "this configuration declares views ([views.…]); verify checks the built-in Order Status View ([view])"
        );
    }
    let url_of = async |store: &'static str| match store {
        "order" => config.order.database_url.clone(),
        "payment" => config.payment.database_url.clone(),
        "delivery" => config.delivery.database_url.clone(),
        _ => config.view.database_url.clone(),
    };
    let options = DbOptions {
        max_connections: Some(2),
        ..DbOptions::default()
    };
    let topics = config.transport.topic_names();
    let stores = Stores::open(url_of, &options, OutboxLayout::Tramline, &topics)
        .await
        .context("while opening the databases of the configuration")?;
    let progress = if std::io::stderr().is_terminal() && !args.json {
        ProgressBar::new_spinner().with_message("comparing the view with the services' tables")
    } else {
        ProgressBar::hidden()
    };
    let json = args.json;
    let mut stdout = std::io::BufWriter::new(std::io::stdout());
    let mut failed_write = None;
    let mut print = |d: Difference| {
        progress.inc(1);
        let line = if json {
            serde_json::to_string(&d).unwrap_or_default()
        } else {
            human(&d)
        };
        if let Err(e) = writeln!(stdout, "{line}") {
            failed_write.get_or_insert(e);
        }
    };
    let outcome = stores.verify_each(&mut print).await;
    if let Err(e) = stdout.flush() {
        failed_write.get_or_insert(e);
    }
    progress.finish_and_clear();
    stores.close().await;
    let verification = outcome.context("while reading the databases")?;
    if let Some(e) = failed_write {
        return Err(e).context("while printing the differences");
    }
    let correct = verification.is_correct();
    if json {
        let summary = serde_json::json!({
            "summary": true,
            "correct": correct,
            "orders": verification.orders,
            "view_rows": verification.view_rows,
            "mismatched_rows": verification.mismatched_rows,
            "missing_rows": verification.missing_rows,
            "lost_updates": verification.lost_updates,
            "corrupt_columns": verification.corrupt_columns,
        });
        println!("{summary}");
    } else if correct {
        println!(
            "the view is exact: {} orders, {} rows",
            verification.orders, verification.view_rows
        );
    } else {
        println!(
            "the view differs: {} of {} orders' rows ({} missing, {} stale columns, {} wrong values at the right version; {} rows in the view)",
            verification.mismatched_rows,
            verification.orders,
            verification.missing_rows,
            verification.lost_updates,
            verification.corrupt_columns,
            verification.view_rows
        );
    }
    Ok(if correct {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn human(d: &Difference) -> String {
    match (d.kind, &d.column) {
        ("missing", _) => format!(
            "{}\tmissing: the view has no row for this order",
            d.order_id
        ),
        ("extra", _) => format!(
            "{}\textra: the view has a row for an order that does not exist",
            d.order_id
        ),
        (kind, Some(column)) => format!(
            "{}\t{kind}\t{column}: expected {}, found {}",
            d.order_id,
            d.expected.clone().unwrap_or_default(),
            d.found.clone().unwrap_or_default()
        ),
        (kind, None) => format!("{}\t{kind}", d.order_id),
    }
}
