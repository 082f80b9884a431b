//! Relay failover as separate processes: three `tramline serve relay` processes for the same
//! outboxes while orders keep coming through `POST /orders`; the leader of the order outbox is
//! SIGKILLed again and again (and replaced by a new standby). Exactly one relay leads at any
//! sample of their `/metrics`, another takes over within the lease, and at the end every
//! message of the outbox is in the log: duplicates at most, never a gap. On SQLite files (a
//! lease row), MariaDB (`GET_LOCK`) and PostgreSQL (an advisory lock).
//!
//! `TRAMLINE_FAILOVER_KILLS` sets the number of kills (3 by default); each takeover time is
//! printed, for docs/OPERATIONS.md's figures.

mod common;

use common::serve::{
    client, free_address, order_body, post, wait_ready, write_config, Served, TestDir,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tramline_sql::{Db, DbOptions};
use tramline_testkit::{on_every_database, Backend, TestDbs};

const LEASE_MS: u64 = 2000;

/// `tramline_relay_leader{outbox="order"}` of the relay at `base`; `None` when it does not
/// answer (killed, not started yet).
async fn leads(http: &reqwest::Client, base: &str) -> Option<bool> {
    let text = http
        .get(format!("{base}/metrics"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with("tramline_relay_leader{") && l.contains("outbox=\"order\""))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v == 1.0)
}

struct Relay {
    process: Served,
    base: String,
}

/// Which relay leads the order outbox, asking every one; fails if two say they do.
async fn leader(http: &reqwest::Client, relays: &[Relay]) -> Option<usize> {
    let mut leaders = Vec::new();
    for (i, r) in relays.iter().enumerate() {
        if leads(http, &r.base).await == Some(true) {
            leaders.push(i);
        }
    }
    assert!(leaders.len() <= 1, "two relays lead at once: {leaders:?}");
    leaders.first().copied()
}

/// Every message id in `table` (duplicates included).
async fn message_ids(db: &Db, table: &str) -> Vec<String> {
    let stmt = db.stmt(&format!(
        "SELECT {} FROM {table}",
        db.dialect().json_tuples(&["id"])
    ));
    let rows: Vec<(String,)> = db.fetch_json(&stmt, "test", "ids").await.expect("reads");
    rows.into_iter().map(|(id,)| id).collect()
}

async fn count(db: &Db, sql: &str) -> i64 {
    db.fetch_i64(&db.stmt(sql), "test", "count")
        .await
        .expect("counts")
}

async fn a_killed_leader_is_replaced_within_the_lease_and_nothing_is_lost(backend: Backend) {
    let kills: usize = std::env::var("TRAMLINE_FAILOVER_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(3);
    let dbs = TestDbs::new(backend, "relay_failover");
    let dir = TestDir::new("relay-failover");
    let listen: Vec<String> = (0..5).map(|_| free_address()).collect();
    let databases = [
        dbs.url("order").await,
        dbs.url("payment").await,
        dbs.url("delivery").await,
        dbs.url("view").await,
    ];
    let order_url = databases[0].clone();
    let log_url = dbs.url("log").await;
    let config = write_config(
        dir.path(),
        &format!("kind = \"log\"\nlog_url = \"{log_url}\"\npartitions = 4"),
        &listen,
        databases,
        &format!("idle_poll_ms = 20\nlease_ms = {LEASE_MS}"),
        "",
    );
    let http = client();
    let mut order = Served::start("order", "order", &config, &[], dir.path());
    let order_base = format!("http://{}", listen[0]);
    wait_ready(&http, &order_base, &mut order).await;

    let mut started = 0usize;
    let mut start_relay = || {
        started += 1;
        let address = free_address();
        let env = [
            ("TRAMLINE_RELAY__LISTEN", address.clone()),
            ("TRAMLINE_RELAY__HOLDER", format!("relay-{started}")),
        ];
        let name = format!("relay-{started}");
        Relay {
            process: Served::start("relay", &name, &config, &env, dir.path()),
            base: format!("http://{address}"),
        }
    };
    let mut relays: Vec<Relay> = (0..3).map(|_| start_relay()).collect();
    for r in &mut relays {
        wait_ready(&http, &r.base, &mut r.process).await;
    }

    // Orders keep coming from 4 clients for the whole run.
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..4u64 {
        let (http, stop, accepted, url) = (
            http.clone(),
            Arc::clone(&stop),
            Arc::clone(&accepted),
            format!("{order_base}/orders"),
        );
        clients.spawn(async move {
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = post(&http, &url, Some(&order_body(i))).await;
                assert_eq!(status, 201, "POST /orders: {body}");
                accepted.fetch_add(1, Ordering::Relaxed);
                i += 4;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    }

    let mut takeovers = Vec::new();
    for kill in 0..kills {
        let deadline = Instant::now() + Duration::from_secs(30);
        let current = loop {
            if let Some(i) = leader(&http, &relays).await {
                break i;
            }
            assert!(Instant::now() < deadline, "no relay leads");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // Let it publish a while, then kill it mid-stream.
        tokio::time::sleep(Duration::from_millis(300 + 200 * kill as u64)).await;
        relays[current].process.signal("KILL");
        let killed_at = Instant::now();
        relays[current].process.wait(Duration::from_secs(10)).await;
        let bound = Duration::from_millis(LEASE_MS) + Duration::from_secs(5);
        let next = loop {
            if let Some(i) = leader(&http, &relays).await {
                break i;
            }
            assert!(
                killed_at.elapsed() < bound,
                "no relay took over within {bound:?} of the kill"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let took = killed_at.elapsed();
        assert_ne!(next, current);
        takeovers.push(took);
        eprintln!(
            "{}: kill {kill}: relay {} took over in {} ms",
            backend.name(),
            next,
            took.as_millis()
        );
        // A new standby replaces the killed process.
        relays[current] = start_relay();
        let r = &mut relays[current];
        wait_ready(&http, &r.base, &mut r.process).await;
        order.assert_running();
    }
    stop.store(true, Ordering::Relaxed);
    while let Some(joined) = clients.join_next().await {
        joined.expect("a client finished");
    }

    // Every message of the order outbox is published, and in the log.
    let opts = DbOptions::default();
    let outbox = Db::connect(&order_url, &opts).await.expect("opens");
    let log = Db::connect(&log_url, &opts).await.expect("opens");
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(
        &outbox,
        "SELECT COUNT(*) FROM tramline_outbox WHERE published_at IS NULL",
    )
    .await
        > 0
    {
        assert!(Instant::now() < deadline, "the order outbox never drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let written = count(&outbox, "SELECT COUNT(*) FROM tramline_outbox").await;
    let mut ids = message_ids(&outbox, "tramline_outbox").await;
    ids.sort();
    let mut logged = message_ids(&log, "tramline_log").await;
    let records = logged.len();
    logged.sort();
    logged.dedup();
    let missing: Vec<&String> = ids
        .iter()
        .filter(|id| logged.binary_search(id).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "{} messages never published: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(
        written as u64 >= accepted.load(Ordering::Relaxed),
        "one message per order at least"
    );
    let mut sorted = takeovers.clone();
    sorted.sort();
    eprintln!(
        "{}: {written} messages, {} records in the log ({} duplicates), takeover median {} ms of {kills}",
        backend.name(),
        records,
        records - logged.len(),
        sorted[sorted.len() / 2].as_millis()
    );
    for r in &mut relays {
        r.process.assert_running();
    }
}

on_every_database!(a_killed_leader_is_replaced_within_the_lease_and_nothing_is_lost);
