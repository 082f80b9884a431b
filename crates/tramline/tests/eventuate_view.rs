//! The worked example, tested the way the Java side would run it: an independent producer
//! that is not tramline (`examples/eventuate-view/produce.py`, Python's confluent-kafka)
//! writes Eventuate Tram records to the real broker from three producer threads, some twice,
//! sources interleaved at random; the view, run by `tramline serve view --config
//! examples/eventuate-view/tramline.toml` in two processes of three consumers each, one of
//! them killed with SIGKILL mid-run and started again, ends with exactly the rows the
//! producer's own in-order fold expects, on SQLite, MariaDB and PostgreSQL.

mod common;

use common::serve::{client, free_address, get, metric, view_rows, Served, TestDir, ViewRows};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tramline_testkit::sse::ServerEvents;
use tramline_testkit::{kafka, Backend, TestDbs};

const ORDERS: usize = 1000;
const TOPICS: [&str; 3] = [
    "com.example.order.Order",
    "com.example.payment.Payment",
    "com.example.delivery.Delivery",
];

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/eventuate-view")
}

/// A seed for the producer, printed so that a failing run can be replayed.
fn seed() -> u64 {
    let seed = std::env::var("TRAMLINE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos().into())
                .unwrap_or_default()
        });
    eprintln!("producer seed {seed} (TRAMLINE_TEST_SEED replays it)");
    seed
}

type Rows = ViewRows;

async fn the_example_view_ends_exact(backend: Backend) {
    let dir = TestDir::new(&format!("eventuate_view_{}", backend.name()));
    let dbs = TestDbs::new(backend, "eventuate_view");
    let database_url = match backend {
        Backend::Sqlite => format!("sqlite://{}/order-status.db", dir.path().display()),
        _ => dbs.url("view").await,
    };
    let prefix = kafka::unique_prefix("eventuate");
    let listen = [free_address(), free_address()];
    let common = vec![
        ("TRAMLINE_TRANSPORT__BROKERS", kafka::brokers()),
        ("TRAMLINE_TRANSPORT__TOPIC_PREFIX", prefix.clone()),
        ("TRAMLINE_TRANSPORT__GROUP_PREFIX", prefix.clone()),
        ("TRAMLINE_TRANSPORT__SESSION_TIMEOUT_SECS", "6".to_owned()),
        ("TRAMLINE_VIEWS__ORDER_STATUS__DATABASE_URL", database_url),
    ];
    let env = |address: &str| {
        let mut env = common.clone();
        env.push(("TRAMLINE_VIEWS__ORDER_STATUS__LISTEN", address.to_owned()));
        env
    };
    let config = example().join("tramline.toml");
    let http = client();
    let bases: Vec<String> = listen.iter().map(|a| format!("http://{a}")).collect();
    let mut view_1 = Served::start("view", "view-1", &config, &env(&listen[0]), dir.path());
    common::serve::wait_ready(&http, &bases[0], &mut view_1).await;
    let mut view_2 = Served::start("view", "view-2", &config, &env(&listen[1]), dir.path());
    common::serve::wait_ready(&http, &bases[1], &mut view_2).await;
    // A web console watching view-1 from the start (a client without a time limit: the
    // stream lasts until the process stops): the keys of the rows it is sent live.
    let live = reqwest::Client::new()
        .get(format!("{}/console/live", bases[0]))
        .send()
        .await
        .expect("the console's live rows");
    assert_eq!(live.status(), 200);
    let watcher = tokio::spawn(async move {
        let mut live = ServerEvents::new(live);
        let mut keys = std::collections::BTreeSet::new();
        while let Some(event) = live.next().await {
            if event.name == "rows" {
                let rows: Vec<Value> = serde_json::from_str(&event.data).expect("rows as JSON");
                keys.extend(
                    rows.iter()
                        .filter_map(|r| r["order_id"].as_str().map(str::to_owned)),
                );
            }
        }
        keys
    });

    let expected_file = dir.path().join("expected.json");
    let producer_log = std::fs::File::create(dir.path().join("producer.log")).expect("a log");
    let mut producer = Command::new("python3")
        .arg(example().join("produce.py"))
        .args(["--brokers", &kafka::brokers()])
        .args(["--orders", &ORDERS.to_string()])
        .args(["--threads", "3", "--duplicates", "0.15"])
        .args(["--seed", &seed().to_string()])
        .arg("--expected")
        .arg(&expected_file)
        .args(["--order-topic", &format!("{prefix}{}", TOPICS[0])])
        .args(["--payment-topic", &format!("{prefix}{}", TOPICS[1])])
        .args(["--delivery-topic", &format!("{prefix}{}", TOPICS[2])])
        .stdout(Stdio::null())
        .stderr(producer_log)
        .spawn()
        .expect("python3 runs the producer");

    // Kill the second view process once it has applied records, then start it again.
    let deadline = Instant::now() + Duration::from_secs(120);
    while metric(&http, &bases[1], "tramline_consumer_applied_total").await < 1.0 {
        view_2.assert_running();
        assert!(Instant::now() < deadline, "view-2 applied nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    view_2.signal("KILL");
    view_2.wait(Duration::from_secs(10)).await;
    let mut view_3 = Served::start("view", "view-3", &config, &env(&listen[1]), dir.path());
    common::serve::wait_ready(&http, &bases[1], &mut view_3).await;

    let produced = tokio::task::spawn_blocking(move || producer.wait())
        .await
        .expect("joined")
        .expect("the producer ran");
    let log = std::fs::read_to_string(dir.path().join("producer.log")).unwrap_or_default();
    assert!(produced.success(), "the producer failed:\n{log}");
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(&expected_file).expect("expected rows"))
            .expect("JSON");
    let expected: Rows = serde_json::from_value(expected["rows"].clone()).expect("rows");
    assert_eq!(expected.len(), ORDERS);

    // Both processes serve the same table: wait until it holds exactly the expected rows.
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut rows = view_rows(&http, &bases[0], "/order-status", "order_id").await;
    while rows != expected && Instant::now() < deadline {
        view_1.assert_running();
        view_3.assert_running();
        tokio::time::sleep(Duration::from_millis(500)).await;
        rows = view_rows(&http, &bases[0], "/order-status", "order_id").await;
    }
    let wrong: Vec<_> = expected
        .iter()
        .filter(|(k, row)| rows.get(*k) != Some(row))
        .take(5)
        .map(|(k, row)| format!("{k}: expected {row:?}, served {:?}", rows.get(k)))
        .collect();
    assert!(
        wrong.is_empty() && rows.len() == expected.len(),
        "{} rows served, {} expected; first differences:\n{}",
        rows.len(),
        expected.len(),
        wrong.join("\n")
    );
    assert_eq!(
        view_rows(&http, &bases[1], "/order-status", "order_id").await,
        expected,
        "view-3 agrees"
    );
    let duplicates = metric(&http, &bases[0], "tramline_consumer_duplicates_total").await
        + metric(&http, &bases[1], "tramline_consumer_duplicates_total").await;
    assert!(duplicates > 0.0, "the producer's duplicates were skipped");
    let parked = metric(&http, &bases[0], "tramline_consumer_parked_total").await
        + metric(&http, &bases[1], "tramline_consumer_parked_total").await;
    assert_eq!(parked, 0.0, "nothing parked");

    // The declared view's console: its columns and groups, and the rows it was sent live.
    let (status, console) = get(&http, &format!("{}/console/config.json", bases[0])).await;
    assert_eq!(status, 200, "{console}");
    assert_eq!(console["collection"], "/order-status");
    assert_eq!(console["key"], "order_id");
    assert_eq!(console["parked"], true);
    let groups: Vec<&str> = console["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert_eq!(groups, ["order", "payment", "delivery"]);

    for view in [&view_1, &view_3] {
        view.signal("TERM");
    }
    for view in [&mut view_1, &mut view_3] {
        let status = view.wait(Duration::from_secs(60)).await;
        assert!(status.success(), "{} exited with {status}", view.role);
    }
    let live = tokio::time::timeout(Duration::from_secs(10), watcher)
        .await
        .expect("the live stream ended with view-1")
        .expect("the watcher ran");
    assert!(!live.is_empty(), "view-1's console was sent no rows");
    let unknown: Vec<&String> = live.iter().filter(|k| !expected.contains_key(*k)).collect();
    assert!(
        unknown.is_empty(),
        "rows sent live that the view does not hold: {unknown:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite() {
    the_example_view_ends_exact(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb() {
    the_example_view_ends_exact(Backend::MariaDb).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres() {
    the_example_view_ends_exact(Backend::Postgres).await
}
