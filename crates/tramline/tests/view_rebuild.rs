//! `tramline view rebuild` on SQLite, MariaDB and PostgreSQL: the example view, served by a
//! running `tramline serve view` on the embedded log, is rebuilt from the log's beginning
//! while more events arrive and a reader keeps reading every page; the reader never sees a
//! row missing or different from what the view held before the rebuild, and afterwards the
//! view holds exactly every event's fold (twice: the second rebuild replaces a rebuilt table).

mod common;

use common::serve::{client, free_address, view_rows, Served, TestDir, ViewRows};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tramline_core::ports::Transport;
use tramline_core::wire::{RawRecord, WireFormat};
use tramline_core::Envelope;
use tramline_sql::{DbOptions, SqlLog};
use tramline_testkit::{Backend, TestDbs};

type Rows = ViewRows;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/eventuate-view")
}

/// `produce.py --dry-run`: the records of `orders` orders as Eventuate Tram writes them,
/// and the rows they must fold into.
fn generate(dir: &Path, run_id: &str, orders: usize) -> (Vec<Envelope>, Rows) {
    let expected = dir.join(format!("expected-{run_id}.json"));
    let out = Command::new("python3")
        .arg(example().join("produce.py"))
        .args([
            "--dry-run",
            "--orders",
            &orders.to_string(),
            "--run-id",
            run_id,
        ])
        .args(["--seed", "7", "--duplicates", "0.1"])
        .arg("--expected")
        .arg(&expected)
        .output()
        .expect("python3 runs the producer");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let envelopes = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line).expect("a JSON line");
            let field = |name: &str| record[name].as_str().expect(name).to_owned();
            let (topic, key, value) = (field("topic"), field("key"), field("value"));
            let raw = RawRecord {
                topic: &topic,
                partition: 0,
                offset: 0,
                key: Some(key.as_bytes()),
                value: value.as_bytes(),
                headers: &[],
                timestamp_ms: None,
            };
            WireFormat::Eventuate.envelope(&raw)
        })
        .collect();
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(&expected).expect("expected rows"))
            .expect("JSON");
    (
        envelopes,
        serde_json::from_value(expected["rows"].clone()).expect("rows"),
    )
}

async fn wait_for(http: &reqwest::Client, base: &str, expected: &Rows, view: &mut Served) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let rows = view_rows(http, base, "/order-status", "order_id").await;
        if rows == *expected {
            return;
        }
        view.assert_running();
        assert!(
            Instant::now() < deadline,
            "the view holds {} rows, {} expected",
            rows.len(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn rebuild(config: &Path, env: &[(&str, String)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tramline"))
        .args(["view", "rebuild", "order_status", "--config"])
        .arg(config)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("the tramline binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the rebuild failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

async fn a_rebuild_replaces_the_view_without_readers_noticing(backend: Backend) {
    let dir = TestDir::new(&format!("view_rebuild_{}", backend.name()));
    let dbs = TestDbs::new(backend, "view_rebuild");
    let database_url = match backend {
        Backend::Sqlite => format!("sqlite://{}/order-status.db", dir.path().display()),
        _ => dbs.url("view").await,
    };
    let log_url = format!("sqlite://{}/log.db", dir.path().display());
    let listen = free_address();
    let base = format!("http://{listen}");
    let env = vec![
        ("TRAMLINE_TRANSPORT__KIND", "log".to_owned()),
        ("TRAMLINE_TRANSPORT__LOG_URL", log_url.clone()),
        ("TRAMLINE_VIEWS__ORDER_STATUS__DATABASE_URL", database_url),
        ("TRAMLINE_VIEWS__ORDER_STATUS__LISTEN", listen.clone()),
    ];
    let (before, expected_before) = generate(dir.path(), "a", 2000);
    let (during, expected_during) = generate(dir.path(), "b", 500);
    let log = SqlLog::open(&log_url, &DbOptions::default())
        .await
        .expect("the log opens");
    for topic in [
        "com.example.order.Order",
        "com.example.payment.Payment",
        "com.example.delivery.Delivery",
    ] {
        log.create_topic(topic, 8).await.expect("a topic");
    }
    log.publish(&before).await.expect("published");

    let config = example().join("tramline.toml");
    let http = client();
    let mut view = Served::start("view", "view", &config, &env, dir.path());
    common::serve::wait_ready(&http, &base, &mut view).await;
    wait_for(&http, &base, &expected_before, &mut view).await;

    // A reader that checks every page while the rebuild runs: each row the view held before
    // is there, unchanged, in every read.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (http, base, stop, reads) = (http.clone(), base.clone(), stop.clone(), reads.clone());
        let expected = expected_before.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let rows = view_rows(&http, &base, "/order-status", "order_id").await;
                for (key, row) in &expected {
                    assert_eq!(
                        rows.get(key),
                        Some(row),
                        "a read during the rebuild saw {key} missing or partial ({} rows)",
                        rows.len()
                    );
                }
                reads.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // More events arrive while it runs.
    let publisher = tokio::spawn(async move {
        for chunk in during.chunks(200) {
            log.publish(chunk).await.expect("published");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        log
    });
    let env_for_rebuild = env.clone();
    let config_for_rebuild = config.clone();
    let stdout =
        tokio::task::spawn_blocking(move || rebuild(&config_for_rebuild, &env_for_rebuild))
            .await
            .expect("joined");
    assert!(
        stdout.starts_with("rebuilt view order_status: "),
        "{stdout}"
    );
    let log = publisher.await.expect("published");
    stop.store(true, Ordering::Relaxed);
    reader.await.expect("every read saw the whole view");
    let reads = reads.load(Ordering::Relaxed);
    eprintln!("{stdout}; {reads} whole reads of the view during it");
    assert!(reads > 0, "the reader read");

    let mut all = expected_before.clone();
    all.extend(expected_during);
    wait_for(&http, &base, &all, &mut view).await;

    // Once more: a rebuilt table is replaced like any other, and still equals the fold.
    let stdout = rebuild(&config, &env);
    assert!(
        stdout.contains(&format!("{} rows at the swap", all.len())),
        "{stdout}"
    );
    wait_for(&http, &base, &all, &mut view).await;

    view.signal("TERM");
    let status = view.wait(Duration::from_secs(60)).await;
    assert!(status.success(), "the view exited with {status}");
    log.db().close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite() {
    a_rebuild_replaces_the_view_without_readers_noticing(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb() {
    a_rebuild_replaces_the_view_without_readers_noticing(Backend::MariaDb).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres() {
    a_rebuild_replaces_the_view_without_readers_noticing(Backend::Postgres).await
}
