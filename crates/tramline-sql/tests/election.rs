//! Relay election through the outbox's own database, on every dialect: one leader among
//! concurrent campaigners, a resignation that hands over at once, a leader that stops
//! answering (paused, its connection killed server-side) losing the lead and finding so at its
//! next confirm, and two relays of one outbox publishing every message with one leader at a
//! time.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Barrier;
use tokio_util::sync::CancellationToken;
use tramline_core::election::{Election, Term};
use tramline_core::ports::{Outbox, Transport};
use tramline_core::relay::{OutboxRelay, RelayConfig};
use tramline_core::Envelope;
use tramline_sql::election::{leader, SqlElection};
use tramline_sql::{migrate, Db, DbOptions, Schema, SqlLog, SqlOutbox};
use tramline_testkit::{drain, on_every_database, Backend, TestDbs};

async fn db(dbs: &TestDbs) -> Db {
    let db = Db::connect(&dbs.url("service").await, &DbOptions::default())
        .await
        .expect("opens");
    migrate(&db, &[Schema::Election]).await.expect("migrates");
    db
}

async fn elections(db: &Db, n: usize, lease: Duration) -> Vec<Arc<SqlElection>> {
    let mut all = Vec::new();
    for i in 0..n {
        let e = SqlElection::open(db.clone(), "order", format!("relay-{i}"), lease)
            .await
            .expect("joins the election");
        all.push(Arc::new(e));
    }
    all
}

/// Campaigns until elected, at most `within`; the term.
async fn elected(e: &SqlElection, within: Duration) -> Term {
    let deadline = Instant::now() + within;
    loop {
        if let Some(term) = e.campaign().await.expect("campaigns") {
            return term;
        }
        assert!(
            Instant::now() < deadline,
            "{} not elected within {within:?}",
            e.holder()
        );
        tokio::time::sleep(e.interval()).await;
    }
}

async fn one_of_many_campaigners_leads_and_resigning_hands_over(backend: Backend) {
    let dbs = TestDbs::new(backend, "election-one");
    let db = db(&dbs).await;
    let all = elections(&db, 4, Duration::from_secs(30)).await;
    let barrier = Arc::new(Barrier::new(all.len()));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, e) in all.iter().enumerate() {
        let (e, barrier) = (Arc::clone(e), Arc::clone(&barrier));
        tasks.spawn(async move {
            barrier.wait().await;
            (i, e.campaign().await.expect("campaigns"))
        });
    }
    let mut won = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        if let (i, Some(term)) = joined.expect("a campaign") {
            won.push((i, term));
        }
    }
    assert_eq!(won.len(), 1, "exactly one leader: {won:?}");
    let (first, term) = won[0];
    assert_eq!(term, 1);
    assert!(all[first].confirm(term).await.expect("confirms"));
    for (i, e) in all.iter().enumerate().filter(|(i, _)| *i != first) {
        assert!(
            !e.confirm(term).await.expect("confirms"),
            "relay-{i} never led"
        );
        assert_eq!(e.campaign().await.expect("campaigns"), None, "relay-{i}");
    }
    let recorded = leader(&db, "order")
        .await
        .expect("reads")
        .expect("a leader");
    assert_eq!(
        (recorded.holder.as_str(), recorded.term),
        (format!("relay-{first}").as_str(), 1)
    );

    all[first].resign(term).await.expect("resigns");
    let next = (first + 1) % all.len();
    assert_eq!(
        all[next].campaign().await.expect("campaigns"),
        Some(2),
        "a resignation hands over at once, with the next term"
    );
    assert!(!all[first].confirm(term).await.expect("confirms"));
    let recorded = leader(&db, "order")
        .await
        .expect("reads")
        .expect("a leader");
    assert_eq!(recorded.holder, format!("relay-{next}"));
}

async fn a_paused_leader_loses_the_lead_and_is_fenced(backend: Backend) {
    let dbs = TestDbs::new(backend, "election-paused");
    let db = db(&dbs).await;
    let lease = Duration::from_secs(1);
    let all = elections(&db, 2, lease).await;
    let (old, new) = (&all[0], &all[1]);
    let term = elected(old, Duration::ZERO).await;
    assert_eq!(new.campaign().await.expect("campaigns"), None);
    // The leader says nothing for longer than its lease: a stall, SIGSTOP, a cut-off network.
    // The server ends its session (MariaDB wait_timeout, PostgreSQL idle_session_timeout) or
    // its lease runs out (SQLite), and the standby takes over.
    tokio::time::sleep(lease * 2).await;
    let taken = elected(new, Duration::from_secs(10)).await;
    assert_eq!(taken, term + 1);
    // Back from its pause, the old leader confirms before publishing, and is told it lost.
    assert!(!old.confirm(term).await.unwrap_or(false), "fenced");
    assert!(new.confirm(taken).await.expect("confirms"));
}

/// MariaDB and PostgreSQL: the leader's connection killed server-side (`KILL CONNECTION`,
/// `pg_terminate_backend`); the lock goes with it.
async fn a_killed_connection_ends_the_term(backend: Backend) {
    let dbs = TestDbs::new(backend, "election-killed");
    let db = db(&dbs).await;
    let all = elections(&db, 2, Duration::from_secs(30)).await;
    let (old, new) = (&all[0], &all[1]);
    let term = elected(old, Duration::ZERO).await;
    let url = dbs.url("service").await;
    let killed = match backend {
        Backend::MariaDb => {
            use sqlx::Connection;
            let mut admin = sqlx::MySqlConnection::connect(&url)
                .await
                .expect("connects");
            let holder: Option<i64> = sqlx::query_scalar(
                "SELECT IS_USED_LOCK(CONCAT('tramline_relay.', SHA1(CONCAT(DATABASE(), '.', 'order'))))",
            )
            .fetch_one(&mut admin)
            .await
            .expect("asks");
            let holder = holder.expect("the lock is held");
            sqlx::query(&format!("KILL CONNECTION {holder}"))
                .execute(&mut admin)
                .await
                .expect("kills");
            holder
        }
        _ => {
            use sqlx::Connection;
            let mut admin = sqlx::PgConnection::connect(&url).await.expect("connects");
            let pid: i32 = sqlx::query_scalar(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                 AND objid::bigint = (hashtext(current_schema() || '.' || 'order')::bigint & 4294967295)",
            )
            .fetch_one(&mut admin)
            .await
            .expect("finds the holder");
            let done: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .fetch_one(&mut admin)
                .await
                .expect("terminates");
            assert!(done);
            i64::from(pid)
        }
    };
    let taken = elected(new, Duration::from_secs(10)).await;
    assert_eq!(taken, term + 1, "after killing connection {killed}");
    assert!(!old.confirm(term).await.unwrap_or(false), "fenced");
    // The old leader campaigns again on a fresh connection and stands by.
    assert_eq!(old.campaign().await.expect("campaigns"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_connection_ends_the_term_on_mariadb() {
    a_killed_connection_ends_the_term(Backend::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_connection_ends_the_term_on_postgres() {
    a_killed_connection_ends_the_term(Backend::Postgres).await;
}

async fn two_relays_of_one_outbox_publish_everything_with_one_leader_at_a_time(backend: Backend) {
    let dbs = TestDbs::new(backend, "election-relays");
    let db = db(&dbs).await;
    migrate(&db, &[Schema::Outbox]).await.expect("migrates");
    let outbox = Arc::new(SqlOutbox::new(db.clone()));
    let log = Arc::new(
        SqlLog::open(&dbs.url("log").await, &DbOptions::default())
            .await
            .expect("log opens"),
    );
    log.create_topic("t", 3).await.expect("topic");
    let all = elections(&db, 2, Duration::from_secs(2)).await;
    let config = RelayConfig {
        idle_poll: Duration::from_millis(10),
        batch_size: 50,
        ..RelayConfig::default()
    };
    let mut relays = Vec::new();
    for e in &all {
        let relay = Arc::new(OutboxRelay::new(
            Arc::clone(&outbox),
            Arc::clone(&log),
            config.clone(),
        ));
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (relay, e, stop) = (Arc::clone(&relay), Arc::clone(e), stop.clone());
            async move { relay.run_elected(&*e, stop).await }
        });
        relays.push((relay, stop, task));
    }
    let write = |from: usize| {
        let (db, outbox) = (db.clone(), Arc::clone(&outbox));
        async move {
            for chunk in 0..20 {
                let messages: Vec<Envelope> = (0..10)
                    .map(|n| {
                        Envelope::new("t", format!("k{n}"), (from + chunk * 10 + n).to_string())
                    })
                    .collect();
                let mut tx = db.begin("test").await.expect("begin");
                outbox.append(&mut tx, &messages).await.expect("append");
                tx.commit("test").await.expect("commit");
            }
        }
    };
    let drained = || async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !outbox.fetch_unpublished(1).await.expect("fetch").is_empty() {
            assert!(Instant::now() < deadline, "the outbox never drained");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let stats: Vec<_> = relays.iter().map(|r| r.0.stats()).collect();
    let published = |i: usize| stats[i].published.load(Ordering::SeqCst);

    write(0).await;
    drained().await;
    let first = (0..2)
        .find(|&i| stats[i].terms.load(Ordering::SeqCst) == 1)
        .expect("a relay leads");
    let other = 1 - first;
    assert_eq!(published(first), 200, "the leader published everything");
    assert_eq!(published(other), 0, "the standby published nothing");

    // The leader stops (and resigns): the standby takes over and publishes the rest.
    let (_, stop, task) = &mut relays[first];
    stop.cancel();
    task.await
        .expect("joins")
        .expect("the old leader stops cleanly");
    write(200).await;
    drained().await;
    assert_eq!(published(other), 200);
    assert_eq!(
        published(first),
        200,
        "a stopped relay publishes nothing more"
    );
    relays[other].1.cancel();

    let mut sub = log
        .subscribe("check", &["t".to_owned()])
        .await
        .expect("subscribes");
    let seen: Vec<String> = drain(&mut sub)
        .await
        .into_iter()
        .map(|r| r.envelope.payload)
        .collect();
    let distinct: BTreeSet<u32> = seen.iter().map(|p| p.parse().expect("a number")).collect();
    assert_eq!(
        distinct,
        (0..400).collect::<BTreeSet<u32>>(),
        "nothing lost"
    );
    assert_eq!(seen.len(), 400, "and, without a crash, nothing twice");
}

on_every_database!(
    one_of_many_campaigners_leads_and_resigning_hands_over,
    a_paused_leader_loses_the_lead_and_is_fenced,
    two_relays_of_one_outbox_publish_everything_with_one_leader_at_a_time,
);
