//! Every column type of a declared read model reads back in one canonical text, the same on
//! SQLite, MariaDB and PostgreSQL, whatever spelling the event carried; a value not of its
//! column's type fails the batch (its transaction rolls back) and names the column.

use std::collections::BTreeMap;
use tramline_core::readmodel::{
    Change, Column, ColumnType, Declaration, EventMapping, Group, ValueSource, VersionSource,
};
use tramline_sql::{Db, DbOptions, ReadModelError, ReadModelTable};
use tramline_testkit::{on_every_database, Backend, TestDbs};

/// The typed columns, in declaration order.
const COLUMNS: [&str; 6] = ["txt", "num", "amount", "flag", "at", "doc"];

/// One column of each type (the decimal is money: DECIMAL(12,2)), written by snapshots.
fn declaration() -> Declaration {
    let types = [
        ColumnType::Text,
        ColumnType::Integer,
        ColumnType::Decimal {
            precision: 12,
            scale: 2,
        },
        ColumnType::Boolean,
        ColumnType::Timestamp,
        ColumnType::Json,
    ];
    let field = |name: &str| ValueSource::Field(vec![name.to_owned()]);
    let event = COLUMNS.iter().fold(
        EventMapping::new("things", "ThingChanged", "thing", field("id")),
        |m, c| m.set(*c, field(c)),
    );
    Declaration {
        name: "typed".into(),
        table: "typed".into(),
        key: Column::new("id", ColumnType::Text),
        groups: vec![Group {
            name: "thing".into(),
            columns: COLUMNS
                .iter()
                .zip(types)
                .map(|(c, ty)| Column::new(*c, ty))
                .collect(),
            version: VersionSource::Value(field("version")),
        }],
        events: vec![event],
    }
}

/// Column → value, for the columns of `COLUMNS` in order (`None` is NULL).
type Values = [Option<&'static str>; 6];

fn change(d: &Declaration, key: &str, version: i64, values: Values) -> (String, Change) {
    let values: BTreeMap<String, Option<String>> = COLUMNS
        .iter()
        .zip(values)
        .map(|(c, v)| ((*c).to_owned(), v.map(str::to_owned)))
        .collect();
    (
        key.to_owned(),
        Change::of(d, &d.events[0], version, None, &values),
    )
}

/// The same object as a JSON producer, MariaDB or PostgreSQL's JSONB might write it.
const DOC: &str = r#"{"b": 1, "a": {"d": [1, 2.5, "x"], "c": null}, "q": "say \"hi\" \u00fc"}"#;
const DOC_AGAIN: &str = r#"{ "q":"say \"hi\" ü",
    "a" : { "c":null , "d":[ 1,2.5,"x" ] } ,"b":1 }"#;
const DOC_CANONICAL: &str = r#"{"a":{"c":null,"d":[1,2.5,"x"]},"b":1,"q":"say \"hi\" ü"}"#;

/// Per key: the spellings of a first batch, another spelling of the same values applied
/// later at a newer version (`None`: not rewritten), and the canonical row.
fn cases() -> Vec<(&'static str, Values, Option<Values>, Values)> {
    vec![
        (
            "k1",
            [
                Some(r#"it's "quoted" — ünïcödé ✓"#),
                Some("42"),
                Some("12.5"),
                Some("true"),
                Some("2026-12-02T11:15:00+01:00"),
                Some(DOC),
            ],
            Some([
                Some(r#"it's "quoted" — ünïcödé ✓"#),
                Some("42.0"),
                Some("12.50"),
                Some("1"),
                Some("1796206500000"),
                Some(DOC_AGAIN),
            ]),
            [
                Some(r#"it's "quoted" — ünïcödé ✓"#),
                Some("42"),
                Some("12.50"),
                Some("true"),
                Some("2026-12-02T10:15:00.000000Z"),
                Some(DOC_CANONICAL),
            ],
        ),
        (
            "k2",
            [
                Some("line one\nline two \\ back'slash"),
                Some("3.0"),
                Some("7"),
                Some("1"),
                Some("1796206500000"),
                Some(DOC_AGAIN),
            ],
            Some([
                Some("line one\nline two \\ back'slash"),
                Some("3"),
                Some("7.00"),
                Some("true"),
                Some("Wed, 02 Dec 2026 10:15:00 GMT"),
                Some(DOC),
            ]),
            [
                Some("line one\nline two \\ back'slash"),
                Some("3"),
                Some("7.00"),
                Some("true"),
                Some("2026-12-02T10:15:00.000000Z"),
                Some(DOC_CANONICAL),
            ],
        ),
        (
            "k3",
            [
                Some(""),
                Some("-7"),
                Some("-0.5"),
                Some("false"),
                Some("Wed, 02 Dec 2026 10:15:00 GMT"),
                Some(r#"[3, "é", true, {"z": 0, "y": -0.0}]"#),
            ],
            None,
            [
                Some(""),
                Some("-7"),
                Some("-0.50"),
                Some("false"),
                Some("2026-12-02T10:15:00.000000Z"),
                Some(r#"[3,"é",true,{"y":0.0,"z":0}]"#),
            ],
        ),
        (
            "k4",
            [
                Some("日本語 🚋"),
                Some("9223372036854775807"),
                Some("9999999999.99"),
                Some("0"),
                Some("1999-12-31T23:59:59.999999-05:00"),
                Some("12.5"),
            ],
            None,
            [
                Some("日本語 🚋"),
                Some("9223372036854775807"),
                Some("9999999999.99"),
                Some("false"),
                Some("2000-01-01T04:59:59.999999Z"),
                Some("12.5"),
            ],
        ),
        (
            "k5",
            [
                Some("0"),
                Some("-9223372036854775808"),
                Some("1.25e1"),
                Some("true"),
                Some("2026-12-02T10:15:00.5Z"),
                Some(r#""just text""#),
            ],
            Some([
                Some("0"),
                Some("-9223372036854775808"),
                Some("-0.005e2"),
                Some("false"),
                Some("1796206500123"),
                Some("1e-7"),
            ]),
            [
                Some("0"),
                Some("-9223372036854775808"),
                Some("-0.50"),
                Some("false"),
                Some("2026-12-02T10:15:00.123000Z"),
                Some("1e-7"),
            ],
        ),
        ("k6", [None; 6], None, [None; 6]),
    ]
}

fn row(values: Values) -> BTreeMap<String, Option<String>> {
    COLUMNS
        .iter()
        .zip(values)
        .map(|(c, v)| ((*c).to_owned(), v.map(str::to_owned)))
        .collect()
}

/// The table in a fresh database (dropped with the returned `TestDbs`).
async fn open_table(backend: Backend, test: &str) -> (TestDbs, Db, ReadModelTable) {
    let dbs = TestDbs::new(backend, test);
    let db = Db::connect(&dbs.url("view").await, &DbOptions::default())
        .await
        .expect("opens");
    let table = ReadModelTable::new(declaration()).expect("a safe declaration");
    table.create(&db).await.expect("table created");
    (dbs, db, table)
}

async fn apply(db: &Db, table: &ReadModelTable, changes: &[(String, Change)]) {
    let mut tx = db.begin("test").await.expect("begin");
    table.apply(&mut tx, changes).await.expect("applied");
    tx.commit("test").await.expect("committed");
}

/// Applies every case's first spelling, then the other spellings at a newer version, then
/// different values at an older version (which change nothing); returns the rows.
async fn write_every_spelling(
    db: &Db,
    table: &ReadModelTable,
) -> BTreeMap<String, BTreeMap<String, Option<String>>> {
    let d = table.declaration();
    let first: Vec<_> = cases()
        .into_iter()
        .map(|(k, values, _, _)| change(d, k, 5, values))
        .collect();
    apply(db, table, &first).await;
    let again: Vec<_> = cases()
        .into_iter()
        .filter_map(|(k, _, again, _)| Some(change(d, k, 6, again?)))
        .collect();
    apply(db, table, &again).await;
    let older: Vec<_> = cases()
        .into_iter()
        .map(|(k, _, _, _)| {
            change(
                d,
                k,
                1,
                [
                    Some("old"),
                    Some("1"),
                    Some("1"),
                    Some("0"),
                    Some("0"),
                    Some("{}"),
                ],
            )
        })
        .collect();
    apply(db, table, &older).await;
    table.rows(db).await.expect("rows read")
}

fn expected() -> BTreeMap<String, BTreeMap<String, Option<String>>> {
    cases()
        .into_iter()
        .map(|(k, _, _, canonical)| (k.to_owned(), row(canonical)))
        .collect()
}

async fn every_spelling_reads_back_in_the_canonical_text(backend: Backend) {
    let (_dbs, db, table) = open_table(backend, "readmodel_canonical").await;
    let rows = write_every_spelling(&db, &table).await;
    for (key, expected) in expected() {
        assert_eq!(rows.get(&key), Some(&expected), "row {key}");
    }
    assert_eq!(rows.len(), cases().len());
    db.close().await;
}

async fn values_not_of_their_type_are_refused_and_roll_back(backend: Backend) {
    let (_dbs, db, table) = open_table(backend, "readmodel_refused").await;
    let d = table.declaration();
    let good: Values = [
        Some("fine"),
        Some("1"),
        Some("1.00"),
        Some("true"),
        Some("2026-12-02T10:15:00Z"),
        Some("{}"),
    ];
    apply(&db, &table, &[change(d, "kept", 1, good)]).await;
    let before = table.rows(&db).await.expect("rows read");
    assert_eq!(before.len(), 1);

    for (column, value, why) in [
        ("num", "3.5", "is not a whole number"),
        (
            "amount",
            "12.505",
            "has more digits after the point than the column's scale",
        ),
        (
            "amount",
            "12345678901.00",
            "has more digits before the point than the column's precision leaves \
             (precision minus scale)",
        ),
        ("flag", "yes", "is not a boolean (true, false, 1 or 0)"),
        (
            "at",
            "tomorrow",
            "is not a timestamp (RFC 3339, RFC 1123 or whole milliseconds since the epoch)",
        ),
        ("doc", "{", "is not JSON"),
        (
            "txt",
            "a\0b",
            "holds a NUL character, which PostgreSQL cannot store",
        ),
    ] {
        let at = COLUMNS.iter().position(|c| *c == column).expect("a column");
        let mut bad = good;
        bad[at] = Some(value);
        let mut tx = db.begin("test").await.expect("begin");
        // Written in this transaction before the refused batch: gone with it.
        table
            .apply(&mut tx, &[change(d, "also-written", 1, good)])
            .await
            .expect("a good batch");
        let refused = [change(d, "new", 2, good), change(d, "kept", 2, bad)];
        let err = table
            .apply(&mut tx, &refused)
            .await
            .expect_err("a value not of its column's type");
        match &err {
            ReadModelError::Value {
                key,
                column: named,
                value: given,
                why: said,
            } => {
                assert_eq!(
                    (key.as_str(), named.as_str(), given.as_str(), *said),
                    ("kept", column, value, why)
                );
            }
            other => panic!("{column} = {value:?}: not a value error: {other}"),
        }
        assert!(
            err.to_string().contains(&format!("column {column}:")),
            "{err}"
        );
        drop(tx);
        assert_eq!(
            table.rows(&db).await.expect("rows read"),
            before,
            "{column} = {value:?}: the table is as it was"
        );
    }
    db.close().await;
}

on_every_database!(
    every_spelling_reads_back_in_the_canonical_text,
    values_not_of_their_type_are_refused_and_roll_back,
);

/// The three databases side by side: one and the same text for every value.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_three_databases_read_back_identical_rows() {
    let mut read = Vec::new();
    for backend in [Backend::Sqlite, Backend::MariaDb, Backend::Postgres] {
        let (dbs, db, table) = open_table(backend, "readmodel_identical").await;
        read.push((backend, write_every_spelling(&db, &table).await));
        db.close().await;
        drop(dbs);
    }
    let (_, sqlite) = &read[0];
    assert_eq!(sqlite, &expected());
    for (backend, rows) in &read[1..] {
        assert_eq!(
            rows,
            sqlite,
            "{} reads back what SQLite does",
            backend.name()
        );
    }
}
