//! `tramline bench`: each bench run small by the real binary, on SQLite files and on the
//! MariaDB and PostgreSQL servers, checked for the summary the report generator
//! (`scripts/benchmarks report`) reads and for figures that hang together.

mod common;

use common::{mariadb, postgres};
use serde_json::Value;
use std::process::Command;

/// Runs `tramline bench ARGS --json`: exit status, the run objects, the summary, stderr.
fn bench(args: &[&str]) -> (bool, Vec<Value>, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tramline"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .expect("the tramline binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let (summary, runs) = lines
        .split_last()
        .unwrap_or_else(|| panic!("no output; stderr: {stderr}"));
    assert_eq!(summary["kind"], "summary", "{summary}");
    for run in runs {
        assert_eq!(run["kind"], "run", "{run}");
    }
    (out.status.success(), runs.to_vec(), summary.clone(), stderr)
}

fn f(v: &Value, path: &[&str]) -> f64 {
    let mut at = v;
    for p in path {
        at = &at[*p];
    }
    at.as_f64()
        .unwrap_or_else(|| panic!("{} missing from {v}", path.join(".")))
}

/// The median of a variant's runs, as the summary must give it.
fn median_of(runs: &[Value], variant: &str, field: &str) -> f64 {
    let mut v: Vec<f64> = runs
        .iter()
        .filter(|r| r["variant"] == variant)
        .map(|r| f(r, &[field]))
        .collect();
    assert!(!v.is_empty(), "no run of {variant}");
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// The fields every summary has.
fn assert_common(s: &Value, bench: &str, database: &str, runs: u64) {
    assert_eq!(s["bench"], bench);
    assert_eq!(s["database"], database);
    assert_eq!(s["transport"], "log");
    assert_eq!(s["runs"].as_u64(), Some(runs));
    assert!(s["command"]
        .as_str()
        .is_some_and(|c| c.starts_with(&format!("tramline bench {bench}"))));
    assert!(s["started_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(f(s, &["machine", "cpus"]) >= 1.0);
    assert!(f(s, &["spread", "min"]) <= f(s, &["spread", "max"]));
    assert_eq!(s["correct"], true, "{s}");
}

#[test]
fn the_ceiling_reports_its_four_variants_and_the_best_upsert() {
    let (ok, runs, s, stderr) = bench(&["ceiling", "--orders", "3000", "--runs", "2"]);
    assert!(ok, "{stderr}");
    assert_common(&s, "ceiling", "sqlite", 2);
    assert_eq!(runs.len(), 8);
    let variants = s["variants"].as_object().expect("variants");
    let names: Vec<&str> = variants.keys().map(String::as_str).collect();
    assert_eq!(names, ["insert-1", "insert-3", "upsert-1", "upsert-3"]);
    for name in &names {
        let m = median_of(&runs, name, "rows_per_sec");
        assert!(m > 0.0);
        assert!(close(f(&s["variants"][name], &["median_rows_per_sec"]), m));
    }
    let best = median_of(&runs, "upsert-1", "rows_per_sec").max(median_of(
        &runs,
        "upsert-3",
        "rows_per_sec",
    ));
    assert!(close(f(&s, &["median_rows_per_sec"]), best), "{s}");
}

/// Projection on `database`: tramline exact, both baselines measured, ratios consistent.
fn projection(database: &str, url: Option<&str>) {
    let mut args = vec![
        "projection",
        "--orders",
        "400",
        "--baseline-orders",
        "200",
        "--runs",
        "1",
        "--duplicates",
        "0.2",
    ];
    if let Some(url) = url {
        args.extend(["--database-url", url]);
    }
    let (ok, runs, s, stderr) = bench(&args);
    assert!(ok, "{stderr}");
    assert_common(&s, "projection", database, 1);
    let tramline = median_of(&runs, "tramline", "events_per_sec");
    assert!(close(f(&s, &["median_events_per_sec"]), tramline));
    for anomaly in [
        "duplicate_key_errors",
        "lost_updates",
        "stale_overwrites",
        "wrong_rows",
    ] {
        assert_eq!(s["anomalies"][anomaly].as_u64(), Some(0), "{s}");
    }
    let ceiling = f(&s, &["ceiling_rows_per_sec"]);
    assert!(close(f(&s, &["ratio_to_ceiling"]), tramline / ceiling));
    for baseline in ["naive", "whole-row"] {
        let b = &s["baselines"][baseline];
        let m = f(b, &["median_events_per_sec"]);
        assert!(m > 0.0, "{s}");
        assert!(close(f(b, &["ratio"]), tramline / m));
        for anomaly in [
            "duplicate_key_errors",
            "lost_updates",
            "stale_overwrites",
            "wrong_rows",
        ] {
            assert!(b["anomalies"][anomaly].as_u64().is_some(), "{s}");
        }
    }
    assert_eq!(s["baselines"]["naive"]["orders"].as_u64(), Some(200));
    // A fifth of the events redelivered after newer ones of their key: the unguarded
    // upsert writes some of them over the newer values, and the bench sees it.
    let whole_row = &s["baselines"]["whole-row"]["anomalies"];
    assert!(
        whole_row["stale_overwrites"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{s}"
    );
    assert!(
        whole_row["wrong_rows"].as_u64().is_some_and(|n| n > 0),
        "{s}"
    );
}

#[test]
fn projection_on_sqlite_is_exact_and_beside_its_baselines() {
    projection("sqlite", None);
}

#[test]
fn projection_on_mariadb_is_exact_and_beside_its_baselines() {
    projection("mariadb", Some(&mariadb()));
}

#[test]
fn projection_on_postgres_is_exact_and_beside_its_baselines() {
    projection("postgres", Some(&postgres()));
}

#[test]
fn the_relay_moves_every_row_once_and_compares_with_reading_and_marking() {
    let (ok, runs, s, stderr) = bench(&["relay", "--orders", "3000", "--runs", "1"]);
    assert!(ok, "{stderr}");
    assert_common(&s, "relay", "sqlite", 1);
    assert!(runs.iter().all(|r| r["correct"] == true), "{runs:?}");
    let relay = median_of(&runs, "relay", "rows_per_sec");
    let ceiling = median_of(&runs, "read-and-mark", "rows_per_sec");
    assert!(close(f(&s, &["median_rows_per_sec"]), relay));
    assert!(close(f(&s, &["ceiling_rows_per_sec"]), ceiling));
    assert!(close(f(&s, &["ratio_to_ceiling"]), relay / ceiling));
}

/// A latency summary hangs together.
fn assert_latency(s: &Value) {
    let l = &s["latency_ms"];
    let (p50, p95, p99, max) = (
        f(l, &["p50"]),
        f(l, &["p95"]),
        f(l, &["p99"]),
        f(l, &["max"]),
    );
    assert!(0.0 < p50 && p50 <= p95 && p95 <= p99 && p99 <= max, "{s}");
    assert_eq!(f(l, &["rate_fraction"]), 0.5);
    assert!(f(l, &["rate"]) > 0.0);
    let cdf: Vec<(f64, f64)> = s["latency_cdf_ms"]
        .as_array()
        .expect("a CDF")
        .iter()
        .map(|p| (p[0].as_f64().expect("ms"), p[1].as_f64().expect("fraction")))
        .collect();
    assert!(
        cdf.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 < w[1].1),
        "{cdf:?}"
    );
    assert_eq!(cdf.last().map(|p| p.1), Some(1.0));
}

#[test]
fn e2e_reports_throughput_peak_memory_and_paced_latency() {
    let (ok, runs, s, stderr) = bench(&["e2e", "--orders", "400", "--runs", "1"]);
    assert!(ok, "{stderr}");
    assert_common(&s, "e2e", "sqlite", 1);
    assert!(close(
        f(&s, &["median_events_per_sec"]),
        median_of(&runs, "max", "events_per_sec")
    ));
    assert!(f(&s, &["rss_mb"]) > 1.0, "{s}");
    assert_latency(&s);
    // The paced run went at about half the full-speed rate, not faster.
    let paced = median_of(&runs, "paced", "events_per_sec");
    assert!(paced < 0.8 * f(&s, &["median_events_per_sec"]), "{s}");
}

#[test]
fn http_measures_orders_through_a_running_system_and_verifies_it() {
    let (ok, runs, s, stderr) =
        bench(&["http", "--orders", "300", "--clients", "16", "--runs", "1"]);
    assert!(ok, "{stderr}");
    assert_common(&s, "http", "sqlite", 1);
    assert_eq!(s["clients"].as_u64(), Some(16));
    assert!(close(
        f(&s, &["median_orders_per_sec"]),
        median_of(&runs, "max", "orders_per_sec")
    ));
    assert_latency(&s);
}

#[test]
fn bad_options_are_refused_in_one_line() {
    for (args, says) in [
        (&["ceiling", "--runs", "0"][..], "--runs"),
        (
            &["projection", "--database-url", "sqlite://x.db"][..],
            "--database-url",
        ),
        (&["e2e", "--rate-fraction", "1.5"][..], "--rate-fraction"),
    ] {
        // In a directory of its own: a refused bench must leave nothing behind.
        let dir = tempfile::tempdir().expect("a temporary directory");
        let out = Command::new(env!("CARGO_BIN_EXE_tramline"))
            .current_dir(dir.path())
            .arg("bench")
            .args(args)
            .output()
            .expect("the tramline binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("readable")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "{args:?} left {left:?}");
    }
}
