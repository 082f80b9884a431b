//! `tramline chaos`, short and seeded, as the test command runs it: separate processes on
//! SQLite files and the embedded log, and on a MariaDB server and a Kafka-protocol broker of
//! the run's own (crashed, restarted, its connections killed). Every check of the harness
//! must hold: every accepted order there with its fate's status, nothing applied twice,
//! nothing parked, the view exact. The long runs are documented in docs/OPERATIONS.md.

use serde_json::Value;
use std::process::Command;

fn chaos(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_tramline"))
        .arg("chaos")
        .args(args)
        .arg("--json")
        .output()
        .expect("the tramline binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    assert!(
        out.status.success() && report["ok"] == true,
        "chaos {args:?} failed ({}): {report}\n{stderr}",
        out.status
    );
    eprintln!("{report}");
    report
}

fn assert_exact(report: &Value, orders: u64, kills: u64) {
    assert_eq!(report["accepted"], orders, "{report}");
    assert!(report["kills"].as_u64() >= Some(kills), "{report}");
    for check in [
        "missing_orders",
        "wrong_status",
        "doubled_effects",
        "doubled_messages",
        "parked",
        "view_differences",
    ] {
        assert_eq!(report[check], 0, "{check}: {report}");
    }
}

#[test]
fn processes_killed_at_random_on_sqlite_and_the_log_lose_nothing() {
    let report = chaos(&["--orders", "400", "--kills", "12", "--seed", "11"]);
    assert_exact(&report, 400, 12);
}

#[test]
fn processes_killed_mariadb_crashed_and_the_broker_restarted_lose_nothing() {
    let report = chaos(&[
        "--store",
        "mariadb",
        "--transport",
        "kafka",
        "--orders",
        "120",
        "--kills",
        "6",
        "--seed",
        "12",
    ]);
    assert_exact(&report, 120, 6);
    let actions = &report["actions"];
    for kind in ["mariadb_restarts", "broker_restarts", "connections_killed"] {
        assert!(actions[kind].as_u64() >= Some(1), "{kind}: {report}");
    }
}
