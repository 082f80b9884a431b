//! A small shop that uses tramline as a library, shared by the three examples in `src/bin/`:
//!
//! - the shop keeps its own tables in its own SQLite database, written with plain sqlx and
//!   migrated by its own sqlx migrator (`migrations/0001_init.sql`);
//! - placing an order inserts the order row **and** an `OrderPlaced` message into tramline's
//!   outbox in one sqlx transaction ([`Shop::place_order`]): both commit or neither does;
//! - a relay publishes the outbox to a transport (the embedded log, or Kafka);
//! - a consumer with a custom handler ([`CustomerTotals`]) adds each order to its customer's
//!   totals with its own sqlx statements, in the same transaction as tramline's dedupe record
//!   of the message: a redelivered message is skipped, so no order is counted twice even
//!   though the handler's update (`orders = orders + 1`) is not idempotent.
//!
//! [`run`] assembles the relay and the consumers under one [`Supervisor`] and stops them
//! once every order is counted.

use anyhow::{bail, Context};
use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::SqlitePool;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tramline_core::consumer::{ConsumerConfig, ConsumerRuntime};
use tramline_core::ports::{Handler, Transport};
use tramline_core::relay::{OutboxRelay, RelayConfig};
use tramline_core::supervisor::{Stage, Supervisor};
use tramline_core::{Envelope, Error, Record};
use tramline_sql::{
    migrate, Apply, Conn, Db, DbOptions, Schema, SqlError, SqlLog, SqlOutbox,
    TransactionalConsumer, Tx,
};

/// The topic the shop publishes its orders to.
pub const TOPIC: &str = "shop.orders";
/// The event type of a placed order (the `event-type` header).
pub const ORDER_PLACED: &str = "OrderPlaced";
/// Partitions of [`TOPIC`]: records of one key (an order) keep their order within one.
pub const PARTITIONS: i32 = 4;

/// The shop's service: its own sqlx pool, and tramline's outbox on the same database.
#[derive(Debug, Clone)]
pub struct Shop {
    pool: SqlitePool,
    outbox: Arc<SqlOutbox>,
}

impl Shop {
    /// Opens (creating it if missing) the shop's database at `path`: the shop's own
    /// migrations, then tramline's outbox and inbox schemas beside them.
    pub async fn open(path: &Path) -> anyhow::Result<Shop> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10));
        // One writer at a time on SQLite: one connection, shared in turn.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .with_context(|| format!("cannot open {}", path.display()))?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .context("cannot migrate the shop's own tables")?;
        // tramline on the shop's own pool; its migrations keep their own history table.
        let db = Db::from_pool(pool.clone());
        migrate(&db, &[Schema::Outbox, Schema::Inbox]).await?;
        Ok(Shop {
            pool,
            outbox: Arc::new(SqlOutbox::new(db)),
        })
    }

    /// tramline's handle on the shop's database (the same pool).
    pub fn db(&self) -> Db {
        Db::from_pool(self.pool.clone())
    }

    /// The shop's outbox, for its relay.
    pub fn outbox(&self) -> Arc<SqlOutbox> {
        Arc::clone(&self.outbox)
    }

    /// Places an order: the order row and its `OrderPlaced` message commit in one
    /// transaction. Returns the order's id.
    pub async fn place_order(&self, customer: &str, amount_cents: i64) -> anyhow::Result<String> {
        let id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO orders (id, customer, amount_cents) VALUES (?, ?, ?)")
            .bind(&id)
            .bind(customer)
            .bind(amount_cents)
            .execute(&mut *tx)
            .await?;
        let amount = format!("{}.{:02}", amount_cents / 100, amount_cents % 100);
        let payload = json!({
            "orderId": id,
            "customer": customer,
            "amount": amount,
            "amountCents": amount_cents,
        });
        let message = Envelope::new(TOPIC, id.as_str(), payload.to_string())
            .with_header(tramline_core::envelope::EVENT_TYPE, ORDER_PLACED);
        self.outbox.append_in(&mut *tx, &[message]).await?;
        tx.commit().await?;
        // Wakes this process's relay at once instead of at its next poll.
        self.outbox.notify();
        Ok(id)
    }

    /// Orders placed, from the shop's own table.
    pub async fn orders(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM orders")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Every order: id, customer, amount in cents.
    pub async fn all_orders(&self) -> anyhow::Result<Vec<(String, String, i64)>> {
        Ok(
            sqlx::query_as("SELECT id, customer, amount_cents FROM orders ORDER BY id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Orders counted in the customers' totals.
    pub async fn counted(&self) -> anyhow::Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(SUM(orders), 0) FROM customer_totals")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Customers whose totals differ from what their orders add up to, with both figures.
    pub async fn wrong_totals(&self) -> anyhow::Result<Vec<(String, i64, i64, i64, i64)>> {
        Ok(sqlx::query_as(
            "SELECT o.customer, o.n, o.cents, COALESCE(t.orders, 0), COALESCE(t.amount_cents, 0) \
             FROM (SELECT customer, COUNT(*) AS n, SUM(amount_cents) AS cents \
                   FROM orders GROUP BY customer) o \
             LEFT JOIN customer_totals t ON t.customer = o.customer \
             WHERE t.orders IS NOT o.n OR t.amount_cents IS NOT o.cents",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}

/// A placed order, as the consumer decodes it.
#[derive(Debug)]
pub struct PlacedOrder {
    customer: String,
    amount_cents: i64,
}

/// The custom handler: adds each placed order to its customer's totals, with plain sqlx on
/// the consumer's transaction. [`TransactionalConsumer`] wraps it with the dedupe records.
#[derive(Debug, Default)]
pub struct CustomerTotals;

impl Apply for CustomerTotals {
    type Item = PlacedOrder;
    type Output = ();

    fn store(&self) -> &str {
        "customer totals"
    }

    fn decode(&self, record: &Record) -> Result<Option<PlacedOrder>, Error> {
        if record.envelope.event_type() != Some(ORDER_PLACED) {
            return Ok(None);
        }
        let payload: serde_json::Value = serde_json::from_str(&record.envelope.payload)
            .map_err(|e| Error::poison(&record.envelope, e))?;
        let customer = payload["customer"].as_str();
        let amount_cents = payload["amountCents"].as_i64();
        match (customer, amount_cents) {
            (Some(customer), Some(amount_cents)) => Ok(Some(PlacedOrder {
                customer: customer.to_owned(),
                amount_cents,
            })),
            _ => Err(Error::poison(
                &record.envelope,
                "an OrderPlaced event needs a customer and an amountCents",
            )),
        }
    }

    async fn apply(
        &self,
        tx: &mut Tx,
        items: Vec<PlacedOrder>,
        _batch: &[Record],
    ) -> Result<(), Error> {
        let Conn::Sqlite(conn) = tx.conn() else {
            return Err(Error::Config("the shop's totals live in SQLite".into()));
        };
        for order in items {
            sqlx::query(
                "INSERT INTO customer_totals (customer, orders, amount_cents) VALUES (?, 1, ?) \
                 ON CONFLICT (customer) DO UPDATE SET orders = orders + 1, \
                 amount_cents = amount_cents + excluded.amount_cents",
            )
            .bind(&order.customer)
            .bind(order.amount_cents)
            .execute(&mut *conn)
            .await
            // Classified as tramline's own errors are: a busy database is retried.
            .map_err(SqlError::at(self.store(), "add an order"))?;
        }
        Ok(())
    }
}

/// Runs `handler` as consumer group `group` on `topics` of `transport`, in `stage`.
pub async fn spawn_consumer<T: Transport, H: Handler>(
    supervisor: &mut Supervisor,
    stage: Stage,
    transport: &T,
    group: &str,
    topics: &[&str],
    handler: H,
) -> anyhow::Result<()> {
    let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
    let subscription = transport
        .subscribe(group, &topics)
        .await
        .with_context(|| format!("cannot subscribe {group}"))?;
    let config = ConsumerConfig {
        name: group.to_owned(),
        workers: 2,
        ..ConsumerConfig::default()
    };
    let runtime = ConsumerRuntime::new(Arc::new(handler), config);
    supervisor.spawn(stage, format!("{group} consumer"), move |stop| async move {
        runtime.run(subscription, stop).await
    });
    Ok(())
}

/// Places `orders` orders of a few customers while the shop's relay publishes them to
/// `transport` and the customer-totals consumer counts them; `more` adds further consumers
/// (example 2's read model) to the consumers' stage. Returns once `done` says every effect is
/// there, and fails if that takes longer than `within`.
pub async fn run<T, F, D>(
    shop: &Shop,
    transport: Arc<T>,
    orders: usize,
    more: impl AsyncFnOnce(&mut Supervisor, Stage) -> anyhow::Result<()>,
    done: D,
    within: Duration,
) -> anyhow::Result<()>
where
    T: Transport,
    D: Fn() -> F,
    F: Future<Output = anyhow::Result<bool>>,
{
    transport.create_topic(TOPIC, PARTITIONS).await?;
    let mut supervisor = Supervisor::new();
    // Stopping drains the relay first (its batch in flight is published and marked), then
    // the consumers (which commit their offsets).
    let relays = supervisor.stage("relays");
    let consumers = supervisor.stage("consumers");
    let relay = OutboxRelay::new(
        shop.outbox(),
        Arc::clone(&transport),
        RelayConfig {
            name: "shop".to_owned(),
            ..RelayConfig::default()
        },
    );
    supervisor.spawn(relays, "shop relay", move |stop| async move {
        relay.run(stop).await
    });
    let totals = TransactionalConsumer::new(shop.db(), "customer-totals", CustomerTotals);
    spawn_consumer(
        &mut supervisor,
        consumers,
        &*transport,
        "customer-totals",
        &[TOPIC],
        totals,
    )
    .await?;
    more(&mut supervisor, consumers).await?;

    let work = async {
        let customers = ["ada", "grace", "edsger", "barbara", "ken"];
        for n in 0..orders {
            let customer = customers[n % customers.len()];
            shop.place_order(customer, 100 + n as i64).await?;
        }
        let deadline = Instant::now() + within;
        while !done().await? {
            if Instant::now() > deadline {
                bail!("the effects were not all there within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::Ok(())
    };
    supervisor.run(work, Duration::from_secs(30)).await??;
    Ok(())
}

/// The examples' last two arguments: the data directory (created if missing; default
/// `shop-data`) and how many orders to place (default 1000).
pub fn dir_and_orders(mut args: impl Iterator<Item = String>) -> anyhow::Result<(PathBuf, usize)> {
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "shop-data".to_owned()));
    let orders = match args.next() {
        Some(n) => n
            .parse()
            .with_context(|| format!("ORDERS must be a count, not {n:?}"))?,
        None => 1000,
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok((dir, orders))
}

/// The shop in `dir/shop.db`, and the embedded log in `dir/log.db`: topics, partitions and
/// consumer offsets in a SQLite file of its own.
pub async fn open_on_the_log(dir: &Path) -> anyhow::Result<(Shop, Arc<SqlLog>)> {
    let shop = Shop::open(&dir.join("shop.db")).await?;
    let log_url = format!("sqlite://{}", dir.join("log.db").display());
    let log = SqlLog::open(&log_url, &DbOptions::default()).await?;
    Ok((shop, Arc::new(log)))
}

/// Prints what a run of `example` did (`before`: the orders there were before it) and fails
/// if any customer's totals differ from their orders.
pub async fn report(example: &str, shop: &Shop, before: i64) -> anyhow::Result<()> {
    let wrong = shop.wrong_totals().await?;
    let total = shop.orders().await?;
    println!(
        "{example}: {} orders placed ({total} in all), {} counted in the customers' totals",
        total - before,
        shop.counted().await?
    );
    if !wrong.is_empty() {
        bail!("customer totals differ from their orders: {wrong:?}");
    }
    println!("{example}: every customer's totals match their orders");
    Ok(())
}
