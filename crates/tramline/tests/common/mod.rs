//! Running the real `tramline demo` binary and reading its JSON report.
#![allow(dead_code)]

pub mod serve;

use serde_json::Value;
use std::process::Command;

pub fn demo(args: &[&str]) -> (bool, Value, String) {
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

pub fn n(report: &Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} missing from {report}"))
}

pub fn mariadb() -> String {
    std::env::var("TRAMLINE_TEST_MARIADB_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

pub fn postgres() -> String {
    std::env::var("TRAMLINE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Asserts a run came out exact, with every anomaly count zero.
pub fn assert_exact(ok: bool, r: &Value, stderr: &str, orders: u64) {
    assert!(ok, "exit status: {r} {stderr}");
    assert_eq!(n(r, "orders"), orders);
    assert_eq!(n(r, "view_rows"), orders);
    for anomaly in [
        "mismatched_rows",
        "missing_rows",
        "lost_updates",
        "corrupt_columns",
        "duplicate_key_errors",
        "parked",
    ] {
        assert_eq!(n(r, anomaly), 0, "{anomaly}: {r}");
    }
    assert_eq!(n(r, "events_applied"), n(r, "events_published"), "{r}");
    assert_eq!(r["correct"], Value::Bool(true));
}
