//! `tramline migrate`: applies a store's versioned migrations to its database, for operators
//! who create schemas ahead of deployment (every store also migrates itself when it opens).

use anyhow::Context;
use tramline_orders::services::{delivery, order, payment, ServiceDb};
use tramline_orders::view;
use tramline_sql::db::redact;
use tramline_sql::{DbOptions, SqlLog};

/// A store whose schema `tramline migrate` can create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Store {
    /// The order service: orders, its outbox and inbox.
    Order,
    /// The payment service: payments, its outbox and inbox.
    Payment,
    /// The delivery service: deliveries, its outbox and inbox.
    Delivery,
    /// The Order Status View: its table and inbox.
    View,
    /// The DB-backed log and consumer offsets.
    Log,
}

/// Options of `tramline migrate`.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The store's database: `sqlite://PATH`, `mysql://…` (or `mariadb://…`), `postgres://…`.
    #[arg(long, value_name = "URL")]
    database_url: String,
    /// The stores whose schema to apply (repeat, or separate with commas).
    #[arg(long, value_enum, value_delimiter = ',', required = true)]
    store: Vec<Store>,
}

/// Applies the migrations and says what it did.
pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let options = DbOptions {
        max_connections: Some(1),
        ..DbOptions::default()
    };
    let url = &args.database_url;
    for store in &args.store {
        let context = || format!("while migrating the {store:?} store on {}", redact(url));
        match store {
            Store::Log => {
                SqlLog::open(url, &options).await.with_context(context)?;
            }
            Store::Order | Store::Payment | Store::Delivery | Store::View => {
                let migrations = match store {
                    Store::Order => order::migrations,
                    Store::Payment => payment::migrations,
                    Store::Delivery => delivery::migrations,
                    _ => view::migrations,
                };
                ServiceDb::open(url, &options, migrations)
                    .await
                    .with_context(context)?;
            }
        }
        println!("{store:?} store: schema up to date on {}", redact(url));
    }
    Ok(())
}
