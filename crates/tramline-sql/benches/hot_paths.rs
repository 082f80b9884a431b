//! Micro-benchmarks of tramline-sql's hot paths (docs/MICROBENCH.md): a declared read model's
//! batched multi-row upsert (building its SQL, and applying a batch to a SQLite file in a
//! transaction), and the embedded log's append and poll on a SQLite file.
//!
//! Every database is a SQLite file in a temporary directory, opened as the stores open it
//! (WAL, `synchronous = NORMAL`). `cargo bench --workspace --bench hot_paths` measures;
//! `cargo test --release --workspace --benches` runs each benchmark once, as a check.

use divan::counter::ItemsCount;
use divan::{black_box, Bencher};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;
use tempfile::TempDir;
use tokio::runtime::Runtime;
use tramline_core::envelope::{AGGREGATE_ID, AGGREGATE_TYPE, EVENT_TYPE};
use tramline_core::ports::{Subscription, Transport};
use tramline_core::readmodel::{
    Change, Column, ColumnType, Declaration, EventMapping, Group, ValueSource, VersionSource,
};
use tramline_core::Envelope;
use tramline_sql::db::{Arg, Tuple};
use tramline_sql::readmodel::KeyedChange;
use tramline_sql::{insert_rows, Db, DbOptions, Dialect, ReadModelTable, SqlError, SqlLog, Stmt};

fn main() {
    divan::main();
}

/// The order system's topics (tramline-orders' `events.rs`).
const TOPICS: [&str; 3] = ["order-events", "payment-events", "delivery-events"];

/// Changes in one read-model batch: the consumer's `batch_max`.
const BATCH: usize = 500;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A SQLite database URL in `dir`.
fn sqlite_url(dir: &TempDir, file: &str) -> String {
    format!("sqlite://{}", dir.path().join(file).display())
}

/// An order id as the services make them (a UUIDv7's text).
fn order_id(n: usize) -> String {
    format!("0190f1c2-7a1e-7c3b-9d2a-{n:012x}")
}

/// One source of the Order Status View: its group, its topic, its columns.
struct Source {
    group: &'static str,
    topic: &'static str,
    columns: &'static [(&'static str, ColumnType)],
}

/// The Order Status View's sources (tramline-orders' `view/projection.rs`); each group also
/// has `<group>_changed_at` and is ordered by its snapshots' version.
const GROUPS: [Source; 3] = [
    Source {
        group: "order",
        topic: "order-events",
        columns: &[
            ("order_status", ColumnType::Text),
            ("customer_id", ColumnType::Text),
            ("product_id", ColumnType::Text),
            ("quantity", ColumnType::Integer),
            ("amount_cents", ColumnType::Integer),
            ("shipping_address", ColumnType::Text),
            ("order_changed_at", ColumnType::Integer),
        ],
    },
    Source {
        group: "payment",
        topic: "payment-events",
        columns: &[
            ("payment_id", ColumnType::Text),
            ("payment_status", ColumnType::Text),
            ("payment_changed_at", ColumnType::Integer),
        ],
    },
    Source {
        group: "delivery",
        topic: "delivery-events",
        columns: &[
            ("delivery_id", ColumnType::Text),
            ("delivery_status", ColumnType::Text),
            ("delivery_changed_at", ColumnType::Integer),
        ],
    },
];

/// The Order Status View's declaration, with one snapshot event per group.
fn declaration() -> Declaration {
    let field = |name: &str| ValueSource::Field(vec![name.to_owned()]);
    Declaration {
        name: "order-status".into(),
        table: "order_status_view".into(),
        key: Column::new("order_id", ColumnType::Text),
        groups: GROUPS
            .iter()
            .map(|s| Group {
                name: s.group.into(),
                columns: s
                    .columns
                    .iter()
                    .map(|(c, ty)| Column::new(*c, *ty))
                    .collect(),
                version: VersionSource::Value(field("version")),
            })
            .collect(),
        events: GROUPS
            .iter()
            .map(|s| {
                s.columns.iter().fold(
                    EventMapping::new(s.topic, "Changed", s.group, field("orderId")),
                    |m, (c, _)| m.set(*c, field(c)),
                )
            })
            .collect(),
    }
}

/// A value of `column` for order `n`, as the view's decoder reads it from a snapshot.
fn value(column: &str, n: usize) -> String {
    match column {
        "order_status" => "APPROVED".into(),
        "payment_status" => "APPROVED".into(),
        "delivery_status" => "DISPATCHED".into(),
        "customer_id" => format!("customer-7f3c9a12-{:04}", n % 1000),
        "product_id" => "sku-espresso-grinder-burr-conical-64mm".into(),
        "quantity" => (1 + n % 5).to_string(),
        "amount_cents" => (1299 * (1 + n % 5)).to_string(),
        "shipping_address" => "Hauptstraße 17, Hinterhaus 3. OG, 10115 Berlin, Germany".into(),
        "order_changed_at" | "payment_changed_at" | "delivery_changed_at" => {
            (1_767_225_600_000 + n as i64).to_string()
        }
        other => format!("{other}-{n:06}"),
    }
}

/// When the events of a batch at `version` were created, in ms since the Unix epoch.
fn changed_at(version: i64) -> String {
    (1_767_225_600_000 + version).to_string()
}

/// [`BATCH`] changes over half as many orders, at `version`: each order's snapshot, and its
/// payment's (even orders) or its delivery's (odd ones), each stamped with `changed_at(version)`.
/// `prefix` names the keys.
fn changes(d: &Declaration, prefix: &str, version: i64) -> Vec<KeyedChange> {
    (0..BATCH)
        .map(|i| {
            let n = i / 2;
            let group = match (i % 2, n % 2) {
                (0, _) => 0,
                (_, 0) => 1,
                _ => 2,
            };
            let columns = GROUPS[group].columns;
            let values: BTreeMap<String, Option<String>> = columns
                .iter()
                .map(|(c, _)| {
                    let v = if c.ends_with("_changed_at") {
                        changed_at(version)
                    } else {
                        value(c, n)
                    };
                    ((*c).to_owned(), Some(v))
                })
                .collect();
            let change = Change::of(d, &d.events[group], version, None, &values);
            (format!("{prefix}{}", order_id(n)), change)
        })
        .collect()
}

/// The read model's batched, version-guarded multi-row upsert.
mod readmodel {
    use super::*;

    /// Keeps each statement's SQL length and runs nothing.
    struct Discard {
        dialect: Dialect,
        sql_bytes: usize,
    }

    impl tramline_sql::Writer for Discard {
        fn dialect(&self) -> Dialect {
            self.dialect
        }

        fn execute(
            &mut self,
            stmt: &Stmt,
            _store: &str,
            _operation: &'static str,
        ) -> impl Future<Output = Result<u64, SqlError>> + Send {
            self.sql_bytes += black_box(stmt).sql().len();
            std::future::ready(Ok(0))
        }
    }

    /// Building the upsert statements of a batch of [`BATCH`] rows (one per key), as
    /// `ReadModelTable::apply` builds them for the Order Status View: the column list, the
    /// guarded assignments (`Dialect::register_upsert`) and the multi-row `VALUES` with every
    /// value bound (`insert_rows`, 100 rows a statement), handed to a writer that runs nothing.
    #[divan::bench(args = [Dialect::Sqlite, Dialect::MySql, Dialect::Postgres])]
    fn build_upsert_sql(bencher: Bencher, dialect: Dialect) {
        let rt = runtime();
        let table = "order_status_view";
        let versions: Vec<String> = GROUPS
            .iter()
            .map(|s| format!("{}_version", s.group))
            .collect();
        let rows: Vec<(String, Vec<Arg>)> = (0..BATCH)
            .map(|n| {
                let mut args = Vec::new();
                for (g, source) in GROUPS.iter().enumerate() {
                    // Each row carries the order's snapshot and one of its other two groups;
                    // the third is NULL, as in a batch that does not write it.
                    let writes = g == 0 || g == 1 + n % 2;
                    for (column, ty) in source.columns {
                        let v = writes.then(|| value(column, n));
                        args.push(match ty {
                            ColumnType::Integer => Arg::Int(v.and_then(|v| v.parse().ok())),
                            _ => Arg::Text(v),
                        });
                    }
                    args.push(Arg::Int(writes.then_some(7)));
                }
                (order_id(n), args)
            })
            .collect();
        bencher.counter(ItemsCount::new(BATCH)).bench_local(|| {
            let mut names = vec!["order_id"];
            let mut guarded: Vec<(&str, Vec<&str>)> = Vec::new();
            for (source, version) in GROUPS.iter().zip(&versions) {
                names.extend(source.columns.iter().map(|(c, _)| *c));
                names.push(version.as_str());
                guarded.push((
                    version.as_str(),
                    source.columns.iter().map(|(c, _)| *c).collect(),
                ));
            }
            let insert = format!("INSERT INTO {table} ({})", names.join(", "));
            let upsert = dialect.register_upsert(table, "order_id", &guarded);
            let mut writer = Discard {
                dialect,
                sql_bytes: 0,
            };
            rt.block_on(insert_rows(
                &mut writer,
                "bench",
                "upsert",
                &insert,
                &upsert,
                black_box(&rows),
                |row: &mut Tuple<'_>, (key, args)| {
                    row.bind(key);
                    for arg in args {
                        row.bind(arg.clone());
                    }
                },
            ))
            .expect("nothing runs, nothing fails");
            writer.sql_bytes
        });
    }

    /// Which rows a batch meets.
    #[derive(Debug, Clone, Copy)]
    enum Rows {
        /// Every key already has its row (the steady state): the upsert updates.
        Existing,
        /// No key has a row yet: the upsert inserts.
        New,
    }

    /// `ReadModelTable::apply` of [`BATCH`] changes (250 orders' snapshots plus a payment's
    /// or a delivery's each) to the Order Status View in a SQLite file: begin, apply,
    /// commit. Each batch carries newer versions than the last, so every guard passes.
    #[divan::bench(args = [Rows::Existing, Rows::New])]
    fn apply_batch(bencher: Bencher, rows: Rows) {
        let rt = runtime();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = rt
            .block_on(Db::connect(
                &sqlite_url(&dir, "view.db"),
                &DbOptions::default(),
            ))
            .expect("opens");
        let table = ReadModelTable::new(declaration()).expect("a safe declaration");
        rt.block_on(table.create(&db)).expect("creates the table");
        let apply = |changes: &[KeyedChange]| {
            rt.block_on(async {
                let mut tx = db.begin("bench").await.expect("begins");
                table.apply(&mut tx, changes).await.expect("applies");
                tx.commit("bench").await.expect("commits");
            })
        };
        let d = table.declaration().clone();
        // The rows the `Existing` batches meet, at version 1.
        apply(&changes(&d, "", 1));
        let mut round = 1;
        bencher
            .counter(ItemsCount::new(BATCH))
            .with_inputs(|| {
                round += 1;
                match rows {
                    Rows::Existing => changes(&d, "", round),
                    Rows::New => changes(&d, &format!("r{round}-"), round),
                }
            })
            .bench_local_refs(|changes| apply(changes));
        // The last batch's changes are there: its guards passed, its rows were written.
        let key = match rows {
            Rows::Existing => order_id(BATCH / 2 - 1),
            Rows::New => format!("r{round}-{}", order_id(BATCH / 2 - 1)),
        };
        let row = rt
            .block_on(table.get(&db, &key))
            .expect("reads")
            .expect("the row is there");
        assert_eq!(row["order_changed_at"], Some(changed_at(round)), "{row:?}");
    }
}

/// The embedded log (`SqlLog`): three topics of four partitions in a SQLite file.
mod log {
    use super::*;

    /// A log with the order system's three topics, in `dir`.
    fn open(rt: &Runtime, dir: &TempDir) -> SqlLog {
        rt.block_on(async {
            let log = SqlLog::open(&sqlite_url(dir, "log.db"), &DbOptions::default())
                .await
                .expect("opens");
            for topic in TOPICS {
                log.create_topic(topic, 4).await.expect("creates the topic");
            }
            log
        })
    }

    /// `n` events of the order system over 200 orders and the three topics, with the headers
    /// and the ~300-byte snapshot payloads the order service writes.
    fn events(n: usize) -> Vec<Envelope> {
        (0..n)
            .map(|i| {
                let id = order_id(i % 200);
                let payload = format!(
                    concat!(
                        r#"{{"orderId":"{}","customerId":"customer-7f3c9a12-0042","#,
                        r#""productId":"sku-espresso-grinder-burr-conical-64mm","quantity":2,"#,
                        r#""amountCents":25980,"shippingAddress":"Hauptstraße 17, Hinterhaus "#,
                        r#"3. OG, 10115 Berlin, Germany","status":"PENDING","version":{}}}"#
                    ),
                    id,
                    1 + i / 200
                );
                Envelope::new(TOPICS[i % TOPICS.len()], id.clone(), payload)
                    .with_header(EVENT_TYPE, "OrderCreated")
                    .with_header(AGGREGATE_TYPE, "Order")
                    .with_header(AGGREGATE_ID, id)
            })
            .collect()
    }

    /// One `publish` of a batch of `records` events (what the relay hands the log): lock the
    /// topics' partitions, insert the records, advance the partitions, commit.
    #[divan::bench(args = [100, 1000])]
    fn append(bencher: Bencher, records: usize) {
        let rt = runtime();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log = open(&rt, &dir);
        let batch = events(records);
        bencher.counter(ItemsCount::new(records)).bench_local(|| {
            rt.block_on(log.publish(black_box(&batch)))
                .expect("appends")
        });
    }

    /// Records in the log the polls read from: every partition holds more than a poll of
    /// 1000 asks of it.
    const STORED: usize = 6000;

    /// One `poll` of up to `records` records by a new member of a group at the start of
    /// every partition: the partition ends, then one read of every ready partition.
    #[divan::bench(args = [100, 1000])]
    fn poll(bencher: Bencher, records: usize) {
        let rt = runtime();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log = open(&rt, &dir);
        for chunk in events(STORED).chunks(1000) {
            rt.block_on(log.publish(chunk)).expect("appends");
        }
        let topics: Vec<String> = TOPICS.iter().map(|t| (*t).to_owned()).collect();
        bencher
            .counter(ItemsCount::new(records))
            .with_inputs(|| {
                rt.block_on(log.subscribe("bench", &topics))
                    .expect("subscribes")
            })
            .bench_local_values(|mut member| {
                let polled = rt
                    .block_on(member.poll(records, Duration::ZERO))
                    .expect("polls");
                assert!(polled.len() >= records, "a full poll");
                (polled, member)
            });
    }
}
