//! Runs each example binary as a user would, twice on the same data directory (the second
//! run resumes from the offsets the first committed and must still count every order exactly
//! once), and checks what it reports. The examples check their own effects against the
//! shop's tables and exit non-zero on any difference.

use std::path::Path;
use std::process::Command;

fn run(binary: &str, args: &[&str], envs: &[(&str, &str)]) -> String {
    let out = Command::new(binary)
        .args(args)
        .envs(envs.iter().copied())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{binary} {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn dir_arg(dir: &Path) -> &str {
    dir.to_str()
        .expect("the temporary directory's path is UTF-8")
}

#[test]
fn shop_on_the_embedded_log_counts_every_order_once() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let first = run(
        env!("CARGO_BIN_EXE_shop"),
        &[dir_arg(dir.path()), "500"],
        &[],
    );
    assert!(
        first.contains("shop: 500 orders placed (500 in all), 500 counted"),
        "{first}"
    );
    let second = run(
        env!("CARGO_BIN_EXE_shop"),
        &[dir_arg(dir.path()), "300"],
        &[],
    );
    assert!(
        second.contains("shop: 300 orders placed (800 in all), 800 counted"),
        "{second}"
    );
    assert!(
        second.contains("every customer's totals match their orders"),
        "{second}"
    );
}

#[test]
fn declared_read_model_holds_a_row_per_order() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let first = run(
        env!("CARGO_BIN_EXE_shop_view"),
        &[dir_arg(dir.path()), "400"],
        &[],
    );
    assert!(
        first.contains("shop_view: 400 rows in order_summaries, 0 wrong"),
        "{first}"
    );
    let second = run(
        env!("CARGO_BIN_EXE_shop_view"),
        &[dir_arg(dir.path()), "100"],
        &[],
    );
    assert!(
        second.contains("shop_view: 500 rows in order_summaries, 0 wrong"),
        "{second}"
    );
}

#[test]
fn shop_on_kafka_counts_every_order_once() {
    let brokers =
        std::env::var("TRAMLINE_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let prefix = format!("example-{}.", uuid::Uuid::now_v7().simple());
    let env = [("SHOP_KAFKA_PREFIX", prefix.as_str())];
    let dir = tempfile::tempdir().expect("a temporary directory");
    let args = [brokers.as_str(), dir_arg(dir.path()), "300"];
    let first = run(env!("CARGO_BIN_EXE_shop_kafka"), &args, &env);
    assert!(
        first.contains("shop_kafka: 300 orders placed (300 in all), 300 counted"),
        "{first}"
    );
    let second = run(env!("CARGO_BIN_EXE_shop_kafka"), &args, &env);
    assert!(
        second.contains("shop_kafka: 300 orders placed (600 in all), 600 counted"),
        "{second}"
    );
}
