//! `tramline parked list|show|retry|skip`: the messages the order system's consumers parked,
//! against the configuration of `serve` (docs/OPERATIONS.md). A parked message is named
//! `<store>/<number>`, e.g. `view/12`: the database it is in (`order`, `payment`,
//! `delivery`, `view`) and its number there.

use crate::config::{Config, ServiceConfig};
use crate::serve::prepare_sqlite;
use anyhow::{bail, Context};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tramline_orders::services::{delivery, order, payment, Migrations, ServiceDb};
use tramline_orders::system::parked_ops;
use tramline_orders::view;
use tramline_sql::parked::{self, ParkPolicy, ParkedFilter, ParkedMessage, ParkedOps, Released};
use tramline_sql::DbOptions;

/// `tramline parked …`.
#[derive(Debug, clap::Args)]
pub struct ParkedArgs {
    #[command(subcommand)]
    command: ParkedCommand,
    /// The configuration of `tramline serve` (without it: the defaults and the
    /// `TRAMLINE_<SECTION>__<KEY>` variables).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, clap::Subcommand)]
enum ParkedCommand {
    /// List parked messages, oldest first (held ones marked).
    List {
        /// Only this store's (`order`, `payment`, `delivery`, `view`).
        #[arg(long)]
        store: Option<String>,
        /// Only this consumer group's.
        #[arg(long)]
        consumer: Option<String>,
        /// Only this key's (an order id).
        #[arg(long)]
        key: Option<String>,
    },
    /// Show one parked message: payload, headers and error.
    Show {
        /// The message, as `list` names it (`view/12`).
        message: String,
    },
    /// Apply a parked message again (and, when it holds its key, the messages held behind
    /// it, in order) once its cause is fixed.
    Retry {
        /// The message, as `list` names it (`view/12`).
        message: String,
    },
    /// Record a parked message as handled without applying it, then apply the messages held
    /// behind it.
    Skip {
        /// The message, as `list` names it (`view/12`).
        message: String,
    },
}

/// The stores that hold parked messages.
const STORES: [&str; 4] = ["order", "payment", "delivery", "view"];

/// Runs `tramline parked`.
pub async fn run(args: ParkedArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load_or_explain(args.config.as_deref())?;
    match args.command {
        ParkedCommand::List {
            store,
            consumer,
            key,
        } => {
            let stores: Vec<&str> = match &store {
                Some(s) => vec![store_name(s)?],
                None => STORES.to_vec(),
            };
            let filter = ParkedFilter {
                consumer,
                key,
                ..ParkedFilter::default()
            };
            let mut all = Vec::new();
            for store in stores {
                let db = open(&config, store).await?;
                let listed = parked::list(&db.db, &filter).await;
                db.db.close().await;
                let listed =
                    listed.with_context(|| format!("while listing the {store} store's"))?;
                all.extend(listed.into_iter().map(|m| (store, m)));
            }
            if args.json {
                let rows: Vec<serde_json::Value> =
                    all.iter().map(|(store, m)| as_json(store, m)).collect();
                println!("{}", serde_json::Value::Array(rows));
            } else if all.is_empty() {
                println!("no parked messages");
            } else {
                for (store, m) in &all {
                    let state = if m.held { "held" } else { "parked" };
                    println!(
                        "{store}/{}\t{}\t{state}\tkey {}\t{} {}/{}\t{}",
                        m.id, m.consumer, m.key, m.topic, m.partition, m.offset, m.reason
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ParkedCommand::Show { message } => {
            let (store, id) = reference(&message)?;
            let db = open(&config, store).await?;
            let found = parked::get(&db.db, id).await;
            db.db.close().await;
            let Some(m) = found.context("while reading the parked message")? else {
                bail!("no parked message {message}");
            };
            if args.json {
                println!("{}", as_json(store, &m));
            } else {
                println!("message    {store}/{}", m.id);
                println!("consumer   {}", m.consumer);
                println!(
                    "state      {}",
                    if m.held {
                        "held behind an earlier message of its key"
                    } else {
                        "parked"
                    }
                );
                println!("message id {}", m.message_id);
                println!(
                    "topic      {} (partition {}, offset {})",
                    m.topic, m.partition, m.offset
                );
                println!("key        {}", m.key);
                println!("parked at  {} ms", m.parked_at);
                println!("reason     {}", m.reason);
                println!("headers    {}", m.headers);
                println!("payload    {}", m.payload);
            }
            Ok(ExitCode::SUCCESS)
        }
        ParkedCommand::Retry { message } => act(&config, &message, args.json, Action::Retry).await,
        ParkedCommand::Skip { message } => act(&config, &message, args.json, Action::Skip).await,
    }
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Retry,
    Skip,
}

async fn act(
    config: &Config,
    message: &str,
    json: bool,
    action: Action,
) -> anyhow::Result<ExitCode> {
    let (store, id) = reference(message)?;
    let db = open(config, store).await?;
    let outcome = async {
        let found = parked::get(&db.db, id)
            .await
            .context("while reading the parked message")?;
        let Some(m) = found else {
            bail!("no parked message {message}");
        };
        let ops = ops_for(config, store, &db, &m)?;
        let released = match action {
            Action::Retry => ops.retry(id).await,
            Action::Skip => ops.skip(id).await,
        };
        released.with_context(|| format!("while handling parked message {message}"))
    }
    .await;
    db.db.close().await;
    let released = outcome?;
    report(store, &released, json);
    Ok(match released.still_parked {
        Some(_) => ExitCode::FAILURE,
        None => ExitCode::SUCCESS,
    })
}

fn report(store: &str, released: &Released, json: bool) {
    if json {
        let names = |ids: &[i64]| {
            ids.iter()
                .map(|id| format!("{store}/{id}"))
                .collect::<Vec<_>>()
        };
        let value = serde_json::json!({
            "applied": names(&released.applied),
            "duplicates": names(&released.duplicates),
            "skipped": released.skipped.map(|id| format!("{store}/{id}")),
            "still_parked": released.still_parked.as_ref().map(|(id, reason)| {
                serde_json::json!({ "message": format!("{store}/{id}"), "reason": reason })
            }),
        });
        println!("{value}");
        return;
    }
    if let Some(id) = released.skipped {
        println!("skipped {store}/{id}");
    }
    for id in &released.applied {
        println!("applied {store}/{id}");
    }
    for id in &released.duplicates {
        println!("removed {store}/{id} (applied before)");
    }
    if let Some((id, reason)) = &released.still_parked {
        println!("{store}/{id} failed again and stays parked: {reason}");
    }
}

fn as_json(store: &str, m: &ParkedMessage) -> serde_json::Value {
    let mut value = serde_json::to_value(m).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("ref".into(), format!("{store}/{}", m.id).into());
        object.insert("store".into(), store.into());
    }
    value
}

/// The operations of the consumer that parked `m`, as `serve` runs it.
fn ops_for(
    config: &Config,
    store: &str,
    db: &ServiceDb,
    m: &ParkedMessage,
) -> anyhow::Result<Arc<dyn ParkedOps>> {
    let policy: ParkPolicy = match m.consumer.as_str() {
        g if g == order::GROUP => config.order.parking,
        g if g == payment::GROUP => config.payment.parking,
        g if g == delivery::GROUP => config.delivery.parking,
        _ => config.view.parking,
    };
    parked_ops(&m.consumer, db, &config.view.group, policy).with_context(|| {
        format!(
            "parked message {store}/{} belongs to consumer {}, which this configuration does not run",
            m.id, m.consumer
        )
    })
}

fn store_name(name: &str) -> anyhow::Result<&'static str> {
    STORES
        .into_iter()
        .find(|s| *s == name)
        .with_context(|| format!("no store {name:?}: one of {}", STORES.join(", ")))
}

/// `view/12` → (`view`, 12).
fn reference(message: &str) -> anyhow::Result<(&'static str, i64)> {
    let (store, id) = message
        .split_once('/')
        .with_context(|| format!("{message:?} is not a parked message's name like view/12"))?;
    let id = id
        .parse()
        .with_context(|| format!("{message:?}: {id:?} is not a number"))?;
    Ok((store_name(store)?, id))
}

/// Opens `store`'s database as the configuration says (migrated, as `serve` would).
async fn open(config: &Config, store: &str) -> anyhow::Result<ServiceDb> {
    let (service, migrations): (ServiceConfig, Migrations) = match store {
        "order" => (config.order.clone(), order::migrations),
        "payment" => (config.payment.clone(), payment::migrations),
        "delivery" => (config.delivery.clone(), delivery::migrations),
        _ => (
            ServiceConfig {
                listen: config.view.listen.clone(),
                database_url: config.view.database_url.clone(),
                pool_size: Some(1),
                parking: config.view.parking,
            },
            view::migrations,
        ),
    };
    prepare_sqlite(&service.database_url)?;
    let options = DbOptions {
        max_connections: Some(1),
        ..DbOptions::default()
    };
    ServiceDb::open(&service.database_url, &options, migrations)
        .await
        .with_context(|| {
            format!(
                "while opening the {store} database at {} ({store}.database_url)",
                tramline_sql::db::redact(&service.database_url)
            )
        })
}
