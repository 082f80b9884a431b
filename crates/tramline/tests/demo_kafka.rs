//! `tramline demo --transport kafka` end to end: the real binary through a real Kafka-protocol
//! broker — the shared test broker (`TRAMLINE_TEST_KAFKA_BROKERS`), or a private one the test
//! stops and restarts in the middle of a run.

mod common;

use common::{assert_exact, demo, mariadb, n};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tramline_testkit::kafka::{
    brokers, read_plain, unique_aggregate_type, unique_prefix, BrokerProcess,
};

/// `tramline demo --json --transport kafka --brokers <brokers> <args>`.
fn kafka_demo(brokers: &str, args: &[&str]) -> (bool, serde_json::Value, String) {
    let mut all = vec!["--transport", "kafka", "--brokers", brokers];
    all.extend_from_slice(args);
    demo(&all)
}

#[test]
fn the_view_is_exact_through_kafka_with_duplicates_and_shuffling() {
    let (ok, r, stderr) = kafka_demo(
        &brokers(),
        &["--orders", "1500", "--duplicates", "0.1", "--shuffle"],
    );
    assert_exact(ok, &r, &stderr, 1500);
    assert_eq!(r["transport"], "kafka");
    assert!(n(&r, "duplicates_injected") > 0);
    assert_eq!(
        n(&r, "duplicates_skipped"),
        n(&r, "duplicates_injected"),
        "{r}"
    );
}

#[test]
fn eventuate_outboxes_on_mariadb_through_kafka() {
    let (ok, r, stderr) = kafka_demo(
        &brokers(),
        &[
            "--orders",
            "800",
            "--outbox-layout",
            "eventuate",
            "--database-url",
            &mariadb(),
        ],
    );
    assert_exact(ok, &r, &stderr, 800);
}

/// `--kafka-topic` renames and `--kafka-prefix` name the run's topics, in either outbox
/// layout: a plain Kafka client finds the events on the renamed and the prefixed topics, each
/// record keyed by its PARTITION_ID and destined to the topic it is on, and tramline's own
/// consumers find them too (the view is exact).
#[test]
fn renamed_and_prefixed_topics_carry_the_run() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    for layout in ["tramline", "eventuate"] {
        let prefix = unique_prefix("demo-names");
        let order = unique_aggregate_type("Order");
        let payment = unique_aggregate_type("Payment");
        let (ok, r, stderr) = kafka_demo(
            &brokers(),
            &[
                "--orders",
                "300",
                "--outbox-layout",
                layout,
                "--kafka-prefix",
                &prefix,
                "--kafka-topic",
                &format!("order-events={order}"),
                "--kafka-topic",
                &format!("payment-events={payment}"),
            ],
        );
        assert_exact(ok, &r, &stderr, 300);
        let delivery = format!("{prefix}delivery-events");
        // Every order was created, and most were paid and delivered (see the scenario).
        for (topic, at_least) in [(&order, 300), (&payment, 200), (&delivery, 200)] {
            let read = rt.block_on(read_plain(
                &brokers(),
                std::slice::from_ref(topic),
                at_least,
            ));
            for record in &read {
                assert_eq!(&record.topic, topic);
                assert_eq!(record.header("DESTINATION"), topic, "{layout}: {record:?}");
                assert_eq!(
                    record.key,
                    record.header("PARTITION_ID"),
                    "{layout}: {record:?}"
                );
            }
        }
    }
}

#[test]
fn topic_names_kafka_refuses_are_reported_before_anything_runs() {
    let (ok, _, stderr) = kafka_demo(
        &brokers(),
        &[
            "--orders",
            "10",
            "--kafka-topic",
            "order-events=com.example.Shared",
            "--kafka-topic",
            "payment-events=com.example.Shared",
            "--kafka-topic",
            "orders=com.example.Order",
            "--kafka-topic",
            "delivery-events=no spaces",
        ],
    );
    assert!(!ok);
    for expected in [
        "--kafka-topic orders=com.example.Order: \"orders\" is not one of the topics",
        "--kafka-topic payment-events=com.example.Shared: topics \"order-events\" and \"payment-events\" would both be named \"com.example.Shared\"",
        "--kafka-topic delivery-events=no spaces: topic \"delivery-events\" would be named \"no spaces\" on the cluster, which Kafka refuses",
    ] {
        assert!(stderr.contains(expected), "{expected:?} not in {stderr}");
    }
    let (ok, _, stderr) = demo(&["--orders", "10", "--kafka-topic", "order-events=x"]);
    assert!(!ok);
    assert!(
        stderr.contains("use them with --transport kafka"),
        "{stderr}"
    );
}

/// Rows in the run's view database so far (0 until it exists).
fn view_rows(dir: &std::path::Path) -> i64 {
    let path = dir.join("view.db");
    if !path.exists() {
        return 0;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let url = format!("sqlite://{}", path.display());
        let Ok(db) = tramline_sql::Db::connect(&url, &tramline_sql::DbOptions::default()).await
        else {
            return 0;
        };
        let stmt = db.stmt("SELECT COUNT(*) FROM order_status_view");
        let rows = db.fetch_i64(&stmt, "test", "count rows").await.unwrap_or(0);
        db.close().await;
        rows
    })
}

#[test]
fn the_view_is_exact_when_the_broker_restarts_mid_run() {
    let mut broker = BrokerProcess::start();
    let dir = tempfile::tempdir().expect("a data directory");
    let child = Command::new(env!("CARGO_BIN_EXE_tramline"))
        .args(["demo", "--json", "--transport", "kafka", "--orders", "3000"])
        .args(["--brokers", &broker.brokers()])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the tramline binary runs");

    let deadline = Instant::now() + Duration::from_secs(120);
    while view_rows(dir.path()) < 200 {
        assert!(Instant::now() < deadline, "the run did not get going");
        std::thread::sleep(Duration::from_millis(100));
    }
    broker.kill();
    // The broker stays away for a while: producers buffer, consumers lose their group.
    std::thread::sleep(Duration::from_secs(5));
    broker.resume();

    let out = child.wait_with_output().expect("the run ends");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let r: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_default();
    assert_exact(out.status.success(), &r, &stderr, 3000);
}

#[test]
fn an_unreachable_broker_is_a_clear_error_within_the_timeout() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let started = Instant::now();
    let (ok, _, stderr) = kafka_demo(
        &format!("127.0.0.1:{port}"),
        &["--kafka-connect-timeout-secs", "2", "--orders", "10"],
    );
    assert!(!ok);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(stderr.contains("connecting to Kafka"), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
}
