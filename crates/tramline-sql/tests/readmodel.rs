//! A declared read model's table on every database: snapshot and delta groups, clearing and
//! deleting, applied as duplicated, shuffled batches by concurrent workers that start each
//! round together, end equal to the merge rule's row (which equals the in-order fold, see
//! `tramline_core::readmodel`'s property test).

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Barrier;
use tramline_core::readmodel::{
    merge, visible, Change, Column, ColumnType, Declaration, Effect, EventMapping, Group, Origin,
    RowState, ValueSource, VersionSource,
};
use tramline_sql::{Db, DbOptions, ReadModelError, ReadModelTable};
use tramline_testkit::{on_every_database, Backend, TestDbs};

const WORKERS: usize = 3;

fn event(
    topic: &str,
    event_type: &str,
    group: &str,
    sets: &[&str],
    effect: Effect,
) -> EventMapping {
    let key = ValueSource::Field(vec!["orderId".into()]);
    sets.iter()
        .fold(EventMapping::new(topic, event_type, group, key), |m, c| {
            m.set(*c, ValueSource::Field(vec![c.to_string()]))
        })
        .with_effect(effect)
}

/// Orders as snapshots with a version field; payments as Eventuate-style deltas ordered by
/// position.
fn declaration() -> Declaration {
    let decimal = ColumnType::Decimal {
        precision: 12,
        scale: 2,
    };
    Declaration {
        name: "order-status".into(),
        table: "order_status".into(),
        key: Column::new("order_id", ColumnType::Text),
        groups: vec![
            Group {
                name: "ord".into(),
                columns: vec![
                    Column::new("order_status", ColumnType::Text),
                    Column::new("quantity", ColumnType::Integer),
                    Column::new("amount", decimal),
                ],
                version: VersionSource::Value(ValueSource::Field(vec!["version".into()])),
            },
            Group {
                name: "pay".into(),
                columns: vec![
                    Column::new("payment_id", ColumnType::Text),
                    Column::new("payment_status", ColumnType::Text),
                    Column::new("reason", ColumnType::Text),
                ],
                version: VersionSource::Position,
            },
        ],
        events: vec![
            event(
                "orders",
                "OrderChanged",
                "ord",
                &["order_status", "quantity", "amount"],
                Effect::Set,
            ),
            event("orders", "OrderDeleted", "ord", &[], Effect::DeleteRow),
            event(
                "payments",
                "PaymentCreated",
                "pay",
                &["payment_id", "payment_status"],
                Effect::Set,
            ),
            event(
                "payments",
                "PaymentApproved",
                "pay",
                &["payment_status"],
                Effect::Set,
            ),
            event(
                "payments",
                "PaymentRejected",
                "pay",
                &["payment_status", "reason"],
                Effect::Set,
            ),
            event("payments", "PaymentCleared", "pay", &[], Effect::ClearGroup),
        ],
    }
}

/// Each key's events in their own order, with values of every column type.
fn streams(d: &Declaration, keys: usize, rng: &mut SmallRng) -> Vec<(String, Change)> {
    let mut all = Vec::new();
    for k in 0..keys {
        let key = format!("order-{k:03}");
        let mut versions: BTreeMap<&str, i64> = BTreeMap::new();
        for _ in 0..rng.gen_range(1..12) {
            let mapping = &d.events[rng.gen_range(0..d.events.len())];
            let version = versions.entry(mapping.group.as_str()).or_insert(0);
            *version += rng.gen_range(1..4);
            let n: u32 = rng.gen_range(0..1000);
            let values = mapping
                .sets
                .keys()
                .map(|c| {
                    let v = match c.as_str() {
                        "quantity" => n.to_string(),
                        "amount" => format!("{}.{:02}", n, n % 100),
                        other => format!("{other}-{n}"),
                    };
                    (c.clone(), (!n.is_multiple_of(7)).then_some(v))
                })
                .collect();
            all.push((key.clone(), Change::of(d, mapping, *version, None, &values)));
        }
    }
    all
}

/// Non-NULL columns of each visible row.
fn set_columns(
    rows: BTreeMap<String, BTreeMap<String, Option<String>>>,
) -> BTreeMap<String, BTreeMap<String, String>> {
    rows.into_iter()
        .map(|(k, row)| {
            (
                k,
                row.into_iter().filter_map(|(c, v)| Some((c, v?))).collect(),
            )
        })
        .collect()
}

async fn concurrent_shuffled_duplicated_batches_end_at_the_merge_rule(backend: Backend) {
    let (_dbs, db, table) = open_table(backend, "readmodel").await;
    let table = Arc::new(table);
    table
        .create(&db)
        .await
        .expect("creating it again changes nothing");

    let mut rng = SmallRng::seed_from_u64(7);
    let changes = streams(table.declaration(), 60, &mut rng);
    let mut expected: BTreeMap<String, RowState> = BTreeMap::new();
    for (key, change) in &changes {
        merge(expected.entry(key.clone()).or_default(), change).expect("one origin");
    }
    let expected: BTreeMap<String, BTreeMap<String, Option<String>>> = expected
        .iter()
        .filter_map(|(k, row)| Some((k.clone(), visible(row)?)))
        .collect();
    assert!(
        expected.len() < 60,
        "some rows are deleted, so deletion is tested"
    );

    let mut delivered = changes.clone();
    for _ in 0..changes.len() / 3 {
        delivered.push(changes[rng.gen_range(0..changes.len())].clone());
    }
    delivered.shuffle(&mut rng);
    // Rounds of work; in each, the workers start together on overlapping keys.
    let rounds: Vec<Vec<Vec<(String, Change)>>> = delivered
        .chunks(WORKERS * 8)
        .map(|round| round.chunks(8).map(<[_]>::to_vec).collect())
        .collect();
    let barrier = Arc::new(Barrier::new(WORKERS));
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let mine: Vec<Vec<(String, Change)>> = rounds
            .iter()
            .map(|round| round.get(w).cloned().unwrap_or_default())
            .collect();
        let (db, table, barrier) = (db.clone(), Arc::clone(&table), Arc::clone(&barrier));
        tasks.push(tokio::spawn(async move {
            let mut retries = 0;
            for batch in mine {
                barrier.wait().await;
                loop {
                    let mut tx = db.begin("test").await.expect("begin");
                    let applied = match table.apply(&mut tx, &batch).await {
                        Ok(()) => tx.commit("test").await.map_err(ReadModelError::from),
                        Err(e) => Err(e),
                    };
                    match applied {
                        Ok(()) => break,
                        Err(e) if e.is_transient() => retries += 1,
                        Err(e) => panic!("apply failed: {e}"),
                    }
                }
            }
            retries
        }));
    }
    for t in tasks {
        t.await.expect("worker ran");
    }
    let rows = table.rows(&db).await.expect("rows read");
    assert_eq!(set_columns(rows), set_columns(expected));
    db.close().await;
}

/// The declaration's table in a fresh database (dropped with the returned `TestDbs`).
async fn open_table(backend: Backend, test: &str) -> (TestDbs, Db, ReadModelTable) {
    let dbs = TestDbs::new(backend, test);
    let db = Db::connect(&dbs.url("view").await, &DbOptions::default())
        .await
        .expect("opens");
    let table = ReadModelTable::new(declaration()).expect("a safe declaration");
    table.create(&db).await.expect("table created");
    (dbs, db, table)
}

async fn a_value_that_is_not_of_its_columns_type_is_an_error(backend: Backend) {
    let (_dbs, db, table) = open_table(backend, "readmodel_types").await;
    let d = table.declaration();
    let values = [
        ("order_status".to_owned(), Some("PENDING".to_owned())),
        ("quantity".to_owned(), Some("three".to_owned())),
        ("amount".to_owned(), Some("1.00".to_owned())),
    ]
    .into();
    let change = Change::of(d, &d.events[0], 1, None, &values);
    let mut tx = db.begin("test").await.expect("begin");
    let err = table
        .apply(&mut tx, &[("order-1".into(), change)])
        .await
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        "view key \"order-1\": column quantity: \"three\" is not a whole number"
    );
}

async fn positions_from_another_partition_are_refused(backend: Backend) {
    let (_dbs, db, table) = open_table(backend, "readmodel_origin").await;
    let d = table.declaration();
    let change = |partition, version| {
        let origin = Origin {
            topic: "payments".into(),
            partition,
            record_key: "p-1".into(),
        };
        let values = [("payment_status".to_owned(), Some("APPROVED".to_owned()))].into();
        (
            "order-1".to_owned(),
            Change::of(d, &d.events[3], version, Some(origin), &values),
        )
    };
    let apply = |changes: Vec<(String, Change)>| {
        let (db, table) = (&db, &table);
        async move {
            let mut tx = db.begin("test").await.expect("begin");
            table.apply(&mut tx, &changes).await?;
            tx.commit("test").await?;
            Ok::<_, ReadModelError>(())
        }
    };
    apply(vec![change(1, 5)]).await.expect("the first origin");
    apply(vec![change(1, 6)]).await.expect("the same origin");
    for refused in [vec![change(2, 7)], vec![change(1, 8), change(2, 9)]] {
        let err = apply(refused).await.expect_err("another partition");
        assert!(matches!(err, ReadModelError::Origin { .. }), "{err}");
        let why = std::error::Error::source(&err)
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(
            why.contains("comparable only within one partition"),
            "{why}"
        );
    }
    let rows = table.rows(&db).await.expect("rows");
    assert_eq!(
        rows["order-1"]["payment_status"].as_deref(),
        Some("APPROVED"),
        "the refused batches rolled back"
    );
    db.close().await;
}

on_every_database!(
    positions_from_another_partition_are_refused,
    concurrent_shuffled_duplicated_batches_end_at_the_merge_rule,
    a_value_that_is_not_of_its_columns_type_is_an_error,
);
