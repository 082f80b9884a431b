//! `tramline bench ceiling`: how fast the database itself takes view-shaped rows — the
//! Order Status View's own table, written with multi-row `INSERT`s and unguarded multi-row
//! upserts of every column, a transaction per [`BATCH`] rows, from 1 and `--consumers`
//! connections over disjoint keys. Nothing a projection does can be faster than this on the
//! same machine, so the projection and relay benches report their figure as a ratio to it.

use super::{BenchArgs, Measured, Places, Session};
use anyhow::Context;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tramline_orders::view;
use tramline_sql::dialect::Assign;
use tramline_sql::{insert_rows, Db, DbOptions};

/// Rows per transaction: about what one of the view's batches writes.
pub(crate) const BATCH: usize = 512;

/// The view's columns, the key first.
const COLUMNS: [&str; 14] = [
    "order_id",
    "order_status",
    "customer_id",
    "product_id",
    "quantity",
    "amount_cents",
    "shipping_address",
    "order_version",
    "payment_id",
    "payment_status",
    "payment_version",
    "delivery_id",
    "delivery_status",
    "delivery_version",
];

/// One view-shaped row, generation `g` of order `i`.
struct Row {
    id: String,
    i: u64,
    g: i64,
}

impl Row {
    fn new(i: u64, g: i64) -> Row {
        Row {
            // As long as the order ids are (UUIDs), in insertion order like UUID v7s.
            id: format!("0190a1b2-c3d4-7e5f-8a9b-{i:012x}"),
            i,
            g,
        }
    }
}

/// Writes rows `keys` in transactions of [`BATCH`], inserting or upserting.
async fn write(db: Db, keys: std::ops::Range<u64>, g: i64, upsert: bool) -> anyhow::Result<()> {
    let dialect = db.dialect();
    let insert = format!("INSERT INTO order_status_view ({})", COLUMNS.join(", "));
    let assigns: Vec<Assign<'_>> = COLUMNS[1..].iter().map(|c| Assign::New(c)).collect();
    let suffix = match upsert {
        true => dialect.upsert("order_status_view", &["order_id"], &assigns, None),
        false => String::new(),
    };
    let rows: Vec<Row> = keys.map(|i| Row::new(i, g)).collect();
    for chunk in rows.chunks(BATCH) {
        let mut tx = db.begin("ceiling").await?;
        insert_rows(
            &mut tx,
            "ceiling",
            "write rows",
            &insert,
            &suffix,
            chunk,
            |t, r| {
                let status = if r.g == 1 { "PENDING" } else { "APPROVED" };
                t.bind(&r.id)
                    .bind(status)
                    .bind(format!("customer-{}", r.i % 1000))
                    .bind(format!("product-{}", r.i % 50))
                    .bind((r.i % 5 + 1) as i64)
                    .bind((r.i % 5 + 1) as i64 * 1999)
                    .bind(format!("{} Tram Street", r.i + 1))
                    .bind(r.g)
                    .bind(format!("payment-{}", r.i))
                    .bind(status)
                    .bind(r.g)
                    .bind(format!("delivery-{}", r.i))
                    .bind(status)
                    .bind(r.g);
            },
        )
        .await?;
        tx.commit("ceiling").await?;
    }
    Ok(())
}

/// Writes `rows` rows from `connections` connections at once; the time it took.
async fn timed(
    db: &Db,
    rows: u64,
    connections: usize,
    g: i64,
    upsert: bool,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut set = JoinSet::new();
    let per = rows.div_ceil(connections as u64);
    for c in 0..connections as u64 {
        let keys = (c * per).min(rows)..((c + 1) * per).min(rows);
        set.spawn(write(db.clone(), keys, g, upsert));
    }
    while let Some(done) = set.join_next().await {
        done.context("a writer panicked")??;
    }
    Ok(started.elapsed())
}

/// One run of a variant on a fresh table: rows/s.
pub(crate) async fn measure(
    places: &mut Places,
    name: &str,
    rows: u64,
    connections: usize,
    upsert: bool,
) -> anyhow::Result<Measured> {
    let url = places.store(name).await?;
    let options = DbOptions {
        max_connections: Some(connections as u32),
        ..DbOptions::default()
    };
    let store = view::open(&url, &options)
        .await
        .context("while opening the ceiling's table")?;
    let db = store.db.clone();
    let outcome = async {
        if upsert {
            // The rows exist, as after an order's first event: the upserts update them.
            timed(&db, rows, connections, 1, false).await?;
        }
        timed(&db, rows, connections, 2, upsert).await
    }
    .await;
    db.close().await;
    places.drop_store(&url).await?;
    let elapsed = outcome?;
    Ok(Measured {
        rate: rows as f64 / elapsed.as_secs_f64().max(1e-9),
        elapsed,
        correct: true,
        ..Measured::default()
    })
}

/// The variants of a ceiling run with `consumers` connections: `(name, connections, upsert)`.
pub(crate) fn variants(consumers: usize, inserts: bool) -> Vec<(String, usize, bool)> {
    let mut connections = vec![1];
    if consumers > 1 {
        connections.push(consumers);
    }
    let mut out = Vec::new();
    for upsert in [false, true] {
        if !upsert && !inserts {
            continue;
        }
        for &c in &connections {
            let kind = if upsert { "upsert" } else { "insert" };
            out.push((format!("{kind}-{c}"), c, upsert));
        }
    }
    out
}

/// The ceiling: the upsert variant with the best median (the view's writes are upserts), and
/// that median.
pub(crate) fn best_upsert(session: &Session) -> (Option<String>, Option<f64>) {
    variants(session.args.consumers, false)
        .into_iter()
        .filter_map(|(name, _, _)| Some((session.median_of(&name)?, name)))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map_or((None, None), |(m, n)| (Some(n), Some(m)))
}

/// Runs `tramline bench ceiling`.
pub(crate) async fn run(args: BenchArgs, places: &mut Places) -> anyhow::Result<ExitCode> {
    let all = variants(args.consumers, true);
    let mut session = Session::new(args, all.len())?;
    let rows = session.args.orders;
    for run in 1..=session.args.runs {
        for (name, connections, upsert) in &all {
            session.step(name, run);
            let m = measure(
                places,
                &format!("ceiling-{name}-{run}"),
                rows,
                *connections,
                *upsert,
            )
            .await
            .with_context(|| format!("while measuring {name}"))?;
            session.record(name, run, m)?;
        }
    }
    // The main figure is the ceiling: the faster upsert variant (the view's writes are
    // upserts); the insert variants are reported beside it.
    let best = best_upsert(&session)
        .0
        .unwrap_or_else(|| "upsert-1".to_owned());
    let summary = session.summary(&best, None);
    session.finish(summary)
}
