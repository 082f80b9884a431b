//! The `tramline demo` command end to end: the real binary on real SQLite files, and on the
//! MariaDB and PostgreSQL servers of `TRAMLINE_TEST_MARIADB_URL` / `TRAMLINE_TEST_POSTGRES_URL`
//! (loopback defaults), where it creates its own databases and drops them afterwards.

mod common;

use common::{assert_exact, demo, mariadb, n, postgres};
use serde_json::Value;
use std::process::Command;

/// Whether the databases a run reported still exist on their servers.
fn leftovers(r: &Value) -> Vec<String> {
    let mut left = Vec::new();
    let databases = r["databases"].as_object().expect("databases in the report");
    for url in databases.values().filter_map(Value::as_str) {
        let name = url.rsplit(['/', '=']).next().unwrap_or_default().to_owned();
        let exists = if url.starts_with("mysql") {
            let out = Command::new("mariadb")
                .args(["-uroot", "-h127.0.0.1", "-N", "-e"])
                .arg(format!("SHOW DATABASES LIKE '{name}'"))
                .output()
                .expect("the mariadb client runs");
            !String::from_utf8_lossy(&out.stdout).trim().is_empty()
        } else if url.starts_with("postgres") {
            let out = Command::new("psql")
                .args(["-h127.0.0.1", "-Upostgres", "-Atc"])
                .arg(format!(
                    "SELECT count(*) FROM pg_namespace WHERE nspname = '{name}'"
                ))
                .arg("test")
                .output()
                .expect("the psql client runs");
            String::from_utf8_lossy(&out.stdout).trim() != "0"
        } else {
            false
        };
        if exists {
            left.push(name);
        }
    }
    left
}

#[test]
fn the_upsert_view_is_exact_with_duplicates_and_shuffling() {
    let (ok, r, stderr) = demo(&["--orders", "600", "--duplicates", "0.25", "--shuffle"]);
    assert_exact(ok, &r, &stderr, 600);
    assert!(n(&r, "duplicates_injected") > 0);
    assert_eq!(
        n(&r, "duplicates_skipped"),
        n(&r, "duplicates_injected"),
        "every copy skipped: {r}"
    );
    assert!(r["events_per_sec"].as_f64().is_some_and(|v| v > 0.0));
    assert!(n(&r, "elapsed_ms") > 0);
}

#[test]
fn the_view_is_exact_on_mariadb_and_the_databases_are_dropped() {
    let url = mariadb();
    let args = ["--orders", "400", "--duplicates", "0.25", "--shuffle"];
    let (ok, r, stderr) = demo(&[&args[..], &["--database-url", &url]].concat());
    assert_exact(ok, &r, &stderr, 400);
    let databases = r["databases"].as_object().expect("databases");
    assert!(databases
        .values()
        .all(|u| u.as_str().is_some_and(|u| u.starts_with("mysql://"))));
    assert_eq!(leftovers(&r), Vec::<String>::new(), "dropped after the run");
}

#[test]
fn the_view_is_exact_on_postgres_with_the_view_in_mariadb() {
    let (ok, r, stderr) = demo(&[
        "--orders",
        "400",
        "--duplicates",
        "0.25",
        "--database-url",
        &postgres(),
        "--view-db",
        &mariadb(),
    ]);
    assert_exact(ok, &r, &stderr, 400);
    assert!(r["databases"]["view"]
        .as_str()
        .is_some_and(|u| u.starts_with("mysql://")));
    assert!(r["databases"]["order"]
        .as_str()
        .is_some_and(|u| u.starts_with("postgres://")));
    assert_eq!(leftovers(&r), Vec::<String>::new(), "dropped after the run");
}

#[test]
fn the_naive_baseline_is_caught_and_fails_the_run() {
    let (ok, r, stderr) = demo(&["--orders", "600", "--strategy", "naive", "--shuffle"]);
    assert!(
        !ok,
        "the naive view must not pass verification: {r} {stderr}"
    );
    assert_eq!(r["correct"], Value::Bool(false));
    let anomalies =
        n(&r, "mismatched_rows") + n(&r, "lost_updates") + n(&r, "duplicate_key_errors");
    assert!(anomalies > 0, "{r}");
}

#[test]
fn the_naive_baseline_is_caught_on_mariadb() {
    let (ok, r, stderr) = demo(&[
        "--orders",
        "400",
        "--strategy",
        "naive",
        "--shuffle",
        "--database-url",
        &mariadb(),
    ]);
    assert!(
        !ok,
        "the naive view must not pass verification: {r} {stderr}"
    );
    assert_eq!(r["correct"], Value::Bool(false));
    assert_eq!(leftovers(&r), Vec::<String>::new(), "dropped after the run");
}

#[test]
fn an_unreachable_server_is_a_clear_error() {
    let (ok, _, stderr) = demo(&["--database-url", "mysql://root@127.0.0.1:1/test"]);
    assert!(!ok);
    assert!(stderr.contains("while creating database"), "{stderr}");
    let (ok, _, stderr) = demo(&["--database-url", "mysql://root:hunter2@127.0.0.1:1/test"]);
    assert!(!ok);
    assert!(
        !stderr.contains("hunter2"),
        "the password stays secret: {stderr}"
    );
}

#[test]
fn data_dir_keeps_the_databases() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("run");
    let (ok, r, stderr) = demo(&[
        "--orders",
        "50",
        "--data-dir",
        data.to_str().expect("utf-8 path"),
    ]);
    assert!(ok, "{r} {stderr}");
    for file in ["order.db", "payment.db", "delivery.db", "view.db", "log.db"] {
        assert!(data.join(file).exists(), "{file} kept");
    }
}

#[test]
fn bad_options_are_refused_with_a_clear_message() {
    let (ok, _, stderr) = demo(&["--duplicates", "1.5"]);
    assert!(!ok);
    assert!(stderr.contains("--duplicates"), "{stderr}");
    let (ok, _, stderr) = demo(&["--consumers", "0"]);
    assert!(!ok);
    assert!(stderr.contains("--consumers"), "{stderr}");
}
