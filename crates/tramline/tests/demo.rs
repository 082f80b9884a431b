//! The `tramline demo` command end to end: the real binary, real SQLite files.

use serde_json::Value;
use std::process::Command;

fn demo(args: &[&str]) -> (bool, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tramline"))
        .arg("demo")
        .args(args)
        .arg("--json")
        .output()
        .expect("the tramline binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let report = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.success(), report, stderr)
}

fn n(report: &Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} missing from {report}"))
}

#[test]
fn the_upsert_view_is_exact_with_duplicates_and_shuffling() {
    let (ok, r, stderr) = demo(&["--orders", "600", "--duplicates", "0.25", "--shuffle"]);
    assert!(ok, "exit status: {r} {stderr}");
    assert_eq!(n(&r, "orders"), 600);
    assert_eq!(n(&r, "view_rows"), 600);
    for anomaly in [
        "mismatched_rows",
        "missing_rows",
        "lost_updates",
        "corrupt_columns",
        "duplicate_key_errors",
        "parked",
    ] {
        assert_eq!(n(&r, anomaly), 0, "{anomaly}: {r}");
    }
    assert!(n(&r, "duplicates_injected") > 0);
    assert_eq!(
        n(&r, "duplicates_skipped"),
        n(&r, "duplicates_injected"),
        "every copy skipped: {r}"
    );
    assert_eq!(n(&r, "events_applied"), n(&r, "events_published"), "{r}");
    assert!(r["events_per_sec"].as_f64().is_some_and(|v| v > 0.0));
    assert!(n(&r, "elapsed_ms") > 0);
    assert_eq!(r["correct"], Value::Bool(true));
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
