//! `tramline serve` as separate processes: the order, payment and delivery services, the relay
//! and two Order Status View processes of one group on MariaDB and the Kafka broker, driven
//! only through their HTTP APIs; and stopping under load, which must lose nothing.

mod common;

use common::serve::{
    client, free_address, get, metric, order_body, post, wait_ready, write_config, Served, TestDir,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tramline_testkit::{Backend, TestDbs};

/// What a driven order is meant to end as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Cancel,
    Reject,
    Complete,
}

fn fate(i: u64) -> Fate {
    match i % 4 {
        0 => Fate::Cancel,
        1 => Fate::Reject,
        _ => Fate::Complete,
    }
}

/// Polls `GET <view>/order-status/{id}` until `field` is set; its value.
async fn wait_for_field(client: &reqwest::Client, view: &str, id: &str, field: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, row) = get(client, &format!("{view}/order-status/{id}")).await;
        assert!(
            status == 200 || status == 404,
            "view answered {status}: {row}"
        );
        if let Some(value) = row[field].as_str() {
            return value.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "order {id}: {field} never showed in the view (last row {row})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Places order `i` and drives it to its fate through the APIs, reading the view for the ids
/// the services assigned; the order id.
async fn drive(
    client: reqwest::Client,
    urls: Arc<Urls>,
    i: u64,
    placed: &AtomicU64,
) -> (String, Fate, Option<String>) {
    // Every eighth order carries a W3C trace context the view must log when it applies it.
    let trace = (i % 8 == 3).then(|| format!("{:032x}", 0x7e57_0000_u64 + i));
    let mut request = client
        .post(format!("{}/orders", urls.order))
        .json(&order_body(i));
    if let Some(trace) = &trace {
        request = request.header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"));
    }
    let response = request.send().await.expect("POST /orders answers");
    let status = response.status().as_u16();
    let echoed = response
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let order: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 201, "POST /orders: {order}");
    if let Some(trace) = &trace {
        assert!(
            echoed.starts_with(&format!("00-{trace}-")),
            "traceparent answered: {echoed}"
        );
    }
    placed.fetch_add(1, Ordering::Relaxed);
    let id = order["orderId"].as_str().expect("an order id").to_owned();
    // The first view process: the second one is being replaced meanwhile.
    let view = &urls.views[0];
    let fate = fate(i);
    match fate {
        Fate::Cancel => {
            let (status, body) =
                post(&client, &format!("{}/orders/{id}/cancel", urls.order), None).await;
            assert_eq!(status, 200, "cancel: {body}");
        }
        Fate::Reject | Fate::Complete => {
            let payment = wait_for_field(&client, view, &id, "paymentId").await;
            let verb = if fate == Fate::Reject {
                "reject"
            } else {
                "approve"
            };
            let url = format!("{}/payments/{payment}/{verb}", urls.payment);
            let (status, body) = post(&client, &url, None).await;
            assert_eq!(status, 200, "{verb}: {body}");
        }
    }
    if fate == Fate::Complete {
        let delivery = wait_for_field(&client, view, &id, "deliveryId").await;
        for step in ["start", "complete"] {
            let url = format!("{}/deliveries/{delivery}/{step}", urls.delivery);
            let (status, body) = post(&client, &url, None).await;
            assert_eq!(status, 200, "{step}: {body}");
        }
    }
    (id, fate, trace)
}

struct Urls {
    order: String,
    payment: String,
    delivery: String,
    views: [String; 2],
}

/// The view row the services' own state implies for order `id`, read through their APIs.
async fn expected_row(client: &reqwest::Client, urls: &Urls, id: &str, row: &Value) -> Value {
    let (_, order) = get(client, &format!("{}/orders/{id}", urls.order)).await;
    let mut expected = serde_json::json!({
        "orderId": id,
        "orderStatus": order["status"],
        "customerId": order["customerId"],
        "productId": order["productId"],
        "quantity": order["quantity"],
        "amountCents": order["amountCents"],
        "shippingAddress": order["shippingAddress"],
        "orderVersion": order["version"],
    });
    if let Some(payment_id) = row["paymentId"].as_str() {
        let (_, payment) = get(client, &format!("{}/payments/{payment_id}", urls.payment)).await;
        expected["paymentId"] = payment["paymentId"].clone();
        expected["paymentStatus"] = payment["status"].clone();
        expected["paymentVersion"] = payment["version"].clone();
    }
    if let Some(delivery_id) = row["deliveryId"].as_str() {
        let (_, delivery) = get(
            client,
            &format!("{}/deliveries/{delivery_id}", urls.delivery),
        )
        .await;
        expected["deliveryId"] = delivery["deliveryId"].clone();
        expected["deliveryStatus"] = delivery["status"].clone();
        expected["deliveryVersion"] = delivery["version"].clone();
    }
    expected
}

/// The set fields of a view row (absent and null are the same).
fn set_fields(row: &Value) -> BTreeMap<String, Value> {
    row.as_object()
        .map(|o| {
            o.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn final_statuses(fate: Fate) -> (&'static str, &'static str, Option<&'static str>) {
    match fate {
        Fate::Cancel => ("CANCELLED", "CANCELLED", None),
        Fate::Reject => ("REJECTED", "REJECTED", None),
        Fate::Complete => ("COMPLETED", "APPROVED", Some("COMPLETED")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn separate_processes_on_mariadb_and_kafka_keep_the_view_exact() {
    let dbs = TestDbs::new(Backend::MariaDb, "serve_e2e");
    let dir = TestDir::new("serve-e2e");
    let prefix = tramline_testkit::kafka::unique_prefix("serve");
    let listen: Vec<String> = (0..6).map(|_| free_address()).collect();
    // Two topics under the names of an existing Eventuate system: one renamed by the file,
    // one by the environment; the third keeps the prefix.
    let order_topic = tramline_testkit::kafka::unique_aggregate_type("Order");
    let payment_topic = tramline_testkit::kafka::unique_aggregate_type("Payment");
    let transport = format!(
        "kind = \"kafka\"\nbrokers = \"{}\"\npartitions = 4\ntopic_prefix = \"{prefix}\"\ngroup_prefix = \"{prefix}\"\n[transport.topics]\norder-events = \"{order_topic}\"",
        tramline_testkit::kafka::brokers()
    );
    let renamed = (
        "TRAMLINE_TRANSPORT__TOPICS__PAYMENT_EVENTS",
        payment_topic.clone(),
    );
    let databases = [
        dbs.url("order").await,
        dbs.url("payment").await,
        dbs.url("delivery").await,
        dbs.url("view").await,
    ];
    let config = write_config(
        dir.path(),
        &transport,
        &listen,
        databases,
        "idle_poll_ms = 20",
        "[log]\nlevel = \"info,tramline_orders::view=debug\"\n",
    );
    let env = [renamed.clone()];
    let second_view = [renamed, ("TRAMLINE_VIEW__LISTEN", listen[5].clone())];
    let mut processes = vec![
        Served::start("order", "order", &config, &env, dir.path()),
        Served::start("payment", "payment", &config, &env, dir.path()),
        Served::start("delivery", "delivery", &config, &env, dir.path()),
        Served::start("relay", "relay", &config, &env, dir.path()),
        Served::start("view", "view-1", &config, &env, dir.path()),
    ];
    let mut view_2 = Served::start("view", "view-2", &config, &second_view, dir.path());
    let http = client();
    let bases: Vec<String> = [0, 1, 2, 4, 3, 5]
        .iter()
        .map(|&i| format!("http://{}", listen[i]))
        .collect();
    for (process, base) in processes.iter_mut().zip(&bases) {
        wait_ready(&http, base, process).await;
    }
    wait_ready(&http, &bases[5], &mut view_2).await;
    let urls = Arc::new(Urls {
        order: bases[0].clone(),
        payment: bases[1].clone(),
        delivery: bases[2].clone(),
        views: [bases[4].clone(), bases[5].clone()],
    });

    // 160 orders from 16 concurrent clients, each reading the view as it goes; meanwhile the
    // second view process is stopped (SIGTERM) and a third one joins the group on its address.
    let orders = 160u64;
    let placed = Arc::new(AtomicU64::new(0));
    let replaced = tokio::spawn({
        let (http, placed, config, dir) = (
            http.clone(),
            Arc::clone(&placed),
            config.clone(),
            dir.path().to_owned(),
        );
        let base = bases[5].clone();
        async move {
            // Once it has applied events (so the group has settled with it as a member).
            while placed.load(Ordering::Relaxed) < 40
                || metric(&http, &base, "tramline_consumer_applied_total").await == 0.0
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            view_2.signal("TERM");
            let status = view_2.wait(Duration::from_secs(60)).await;
            assert!(
                status.success(),
                "view-2 exited with {status}:\n{}",
                view_2.log()
            );
            assert!(view_2.log().contains("stopping"), "{}", view_2.log());
            let mut view_3 = Served::start("view", "view-3", &config, &second_view, &dir);
            wait_ready(&http, &base, &mut view_3).await;
            view_3
        }
    });
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..16u64 {
        let (http, urls, placed) = (http.clone(), Arc::clone(&urls), Arc::clone(&placed));
        clients.spawn(async move {
            let mut driven = Vec::new();
            for i in (c..orders).step_by(16) {
                driven.push(drive(http.clone(), Arc::clone(&urls), i, &placed).await);
            }
            driven
        });
    }
    let mut driven = Vec::new();
    while let Some(joined) = clients.join_next().await {
        driven.extend(joined.expect("a client finished"));
    }
    processes.push(
        replaced
            .await
            .expect("the second view process was replaced"),
    );
    assert_eq!(driven.len() as u64, orders);

    // Every row reaches exactly the state the services hold, in both view processes' answers.
    let deadline = Instant::now() + Duration::from_secs(120);
    for (n, (id, fate, _)) in driven.iter().enumerate() {
        let (order_status, payment_status, delivery_status) = final_statuses(*fate);
        loop {
            let view = &urls.views[n % 2];
            let (_, row) = get(&http, &format!("{view}/order-status/{id}")).await;
            let settled = row["orderStatus"] == order_status
                && row["paymentStatus"] == payment_status
                && row["deliveryStatus"].as_str() == delivery_status;
            if settled {
                let expected = expected_row(&http, &urls, id, &row).await;
                // The services do not serve their events' creation times: each source the
                // row holds has one, and the rest must equal the services' state.
                let mut fields = set_fields(&row);
                for source in ["order", "payment", "delivery"] {
                    let changed = fields.remove(&format!("{source}ChangedAt"));
                    let holds = fields.contains_key(&format!("{source}Version"));
                    assert_eq!(
                        changed.as_ref().is_some_and(Value::is_i64),
                        holds,
                        "order {id}: {source}ChangedAt {changed:?}"
                    );
                }
                assert_eq!(fields, set_fields(&expected), "order {id}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "order {id} ({fate:?}) never settled in the view: {row}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // The list endpoint pages through the completed orders by keyset, each once.
    let completed = driven
        .iter()
        .filter(|(_, f, _)| *f == Fate::Complete)
        .count();
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let url = format!(
            "{}/order-status?orderStatus=COMPLETED&deliveryStatus=COMPLETED&limit=7&after={after}",
            urls.views[0]
        );
        let (status, page) = get(&http, &url).await;
        assert_eq!(status, 200, "{page}");
        for item in page["items"].as_array().expect("items") {
            seen.push(item["orderId"].as_str().expect("an order id").to_owned());
        }
        match page["next"].as_str() {
            Some(next) => after = next.to_owned(),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (completed, completed));

    // The trace context of each traced request reached the view: one of the view processes
    // logged the events it applied for that order under the request's trace id.
    let view_logs: String = ["view-1", "view-2", "view-3"]
        .iter()
        .map(|v| std::fs::read_to_string(dir.path().join(format!("{v}.log"))).unwrap_or_default())
        .collect();
    for (id, _, trace) in &driven {
        if let Some(trace) = trace {
            assert!(
                view_logs
                    .lines()
                    .any(|l| l.contains(trace.as_str()) && l.contains(id.as_str())),
                "no view log line for order {id} with trace id {trace}"
            );
        }
    }

    // Each process exposes its part of the picture at /metrics.
    let relay = &bases[3];
    assert!(metric(&http, relay, "tramline_relay_published_total").await > 0.0);
    assert!(metric(&http, relay, "tramline_relay_batch_size_count").await > 0.0);
    let view = &urls.views[0];
    for name in [
        "tramline_consumer_applied_total",
        "tramline_consumer_event_age_seconds_count",
        "tramline_consumer_commit_latency_seconds_count",
    ] {
        assert!(metric(&http, view, name).await > 0.0, "{name} missing");
    }
    assert!(metric(&http, &urls.order, "tramline_http_requests_total").await >= orders as f64);

    // A plain Kafka client finds the events on the renamed topics and the prefixed one.
    let delivery_topic = format!("{prefix}delivery-events");
    for topic in [&order_topic, &payment_topic, &delivery_topic] {
        let read = tramline_testkit::kafka::read_plain(
            &tramline_testkit::kafka::brokers(),
            std::slice::from_ref(topic),
            100,
        )
        .await;
        for record in &read {
            assert_eq!(record.header("DESTINATION"), topic.as_str(), "{record:?}");
            assert_eq!(record.key, record.header("PARTITION_ID"), "{record:?}");
        }
    }

    for process in &processes {
        process.signal("TERM");
    }
    for process in &mut processes {
        let status = process.wait(Duration::from_secs(60)).await;
        assert!(
            status.success(),
            "{} exited with {status}:\n{}",
            process.role,
            process.log()
        );
    }
}

/// The configuration of one `serve all` process on SQLite files and the DB-backed log.
fn all_in_one(dir: &Path, listen: &[String]) -> std::path::PathBuf {
    let db = |name: &str| format!("sqlite://{}", dir.join(format!("{name}.db")).display());
    write_config(
        dir,
        &format!(
            "kind = \"log\"\nlog_url = \"{}\"\npartitions = 4",
            db("log")
        ),
        listen,
        [db("order"), db("payment"), db("delivery"), db("view")],
        "",
        "[shutdown]\ndeadline_secs = 30\n",
    )
}

/// Places orders from 16 clients until `accepted` reach `stop_after`, then sends `signals`
/// to the process while the clients keep going; returns the process's exit status, how long
/// it took to exit after the first signal, and the ids of every order answered 201.
async fn signal_under_load(
    process: &mut Served,
    order_url: &str,
    stop_after: usize,
    signals: &[&str],
) -> (std::process::ExitStatus, Duration, Vec<String>) {
    let accepted = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..16u64 {
        let (http, accepted, stop) = (client(), Arc::clone(&accepted), stop.clone());
        let url = format!("{order_url}/orders");
        clients.spawn(async move {
            let mut i = c;
            while !stop.is_cancelled() {
                i += 16;
                let Ok(response) = http.post(&url).json(&order_body(i)).send().await else {
                    // The listener is gone: what it answered before is what counts.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                if response.status() == reqwest::StatusCode::CREATED {
                    let order: Value = response.json().await.expect("a JSON order");
                    let id = order["orderId"].as_str().expect("an order id").to_owned();
                    accepted.lock().expect("not poisoned").push(id);
                }
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while accepted.lock().expect("not poisoned").len() < stop_after {
        process.assert_running();
        assert!(Instant::now() < deadline, "orders are not being accepted");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let signalled = Instant::now();
    for signal in signals {
        process.signal(signal);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let status = process.wait(Duration::from_secs(60)).await;
    let took = signalled.elapsed();
    stop.cancel();
    while clients.join_next().await.is_some() {}
    let ids = accepted.lock().expect("not poisoned").clone();
    (status, took, ids)
}

/// Restarts `serve all` and waits until every accepted order is in the view with its
/// payment; checks the view holds exactly the orders the order service holds.
async fn restart_and_check(dir: &Path, config: &Path, listen: &[String], accepted: &[String]) {
    let mut process = Served::start("all", "all-restarted", config, &[], dir);
    let http = client();
    let order = format!("http://{}", listen[0]);
    let view = format!("http://{}", listen[3]);
    wait_ready(&http, &view, &mut process).await;
    for id in accepted {
        let (status, body) = get(&http, &format!("{order}/orders/{id}")).await;
        assert_eq!(status, 200, "an accepted order is missing: {body}");
    }
    let placed = count_orders(&dir.join("order.db")).await;
    eprintln!(
        "{} orders accepted before the stop, {placed} stored",
        accepted.len()
    );
    assert!(
        placed >= accepted.len(),
        "{placed} orders stored, {} accepted",
        accepted.len()
    );
    // Every stored order (accepted or cut short before its answer) reaches the view with the
    // payment the payment service created for it.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let rows = view_rows(&http, &view).await;
        let settled = rows.len() == placed
            && rows
                .iter()
                .all(|r| r["orderStatus"] == "PENDING" && r["paymentStatus"] == "PENDING");
        if settled {
            for id in accepted {
                assert!(
                    rows.iter().any(|r| r["orderId"] == id.as_str()),
                    "{id} missing"
                );
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the view did not settle: {} rows for {placed} orders; log:\n{}",
            rows.len(),
            process.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    process.signal("TERM");
    let status = process.wait(Duration::from_secs(60)).await;
    assert!(status.success(), "{}", process.log());
}

async fn count_orders(db: &Path) -> usize {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("the order database opens");
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders")
        .fetch_one(&mut conn)
        .await
        .expect("orders counted");
    n as usize
}

/// Every row of the view, through its keyset pages.
async fn view_rows(http: &reqwest::Client, view: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut after = String::new();
    loop {
        let (status, page) = get(
            http,
            &format!("{view}/order-status?limit=1000&after={after}"),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        rows.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next"].as_str() {
            Some(next) => after = next.to_owned(),
            None => return rows,
        }
    }
}

/// `serve all` on SQLite files and the log, every listener ready: its directory, its
/// listeners (order, payment, delivery, view, relay), its configuration and the process.
async fn serve_all() -> (TestDir, Vec<String>, std::path::PathBuf, Served) {
    let dir = TestDir::new("serve-all");
    let listen: Vec<String> = (0..5).map(|_| free_address()).collect();
    let config = all_in_one(dir.path(), &listen);
    let mut process = Served::start("all", "all", &config, &[], dir.path());
    let http = client();
    for address in &listen {
        wait_ready(&http, &format!("http://{address}"), &mut process).await;
    }
    (dir, listen, config, process)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_stops_cleanly_and_loses_nothing() {
    let (dir, listen, config, mut process) = serve_all().await;
    let http = client();
    let order = format!("http://{}", listen[0]);
    // Every listener, the relay's too, documents itself and answers /metrics.
    for address in &listen {
        let (status, document) = get(&http, &format!("http://{address}/openapi.json")).await;
        assert_eq!(status, 200, "{address}");
        assert!(document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")));
        assert!(document["paths"]["/ready"].is_object(), "{document}");
        let metrics = http
            .get(format!("http://{address}/metrics"))
            .send()
            .await
            .expect("/metrics answers");
        assert_eq!(metrics.status(), 200);
    }
    let (status, took, accepted) = signal_under_load(&mut process, &order, 2000, &["TERM"]).await;
    let log = process.log();
    assert!(status.success(), "exit {status}:\n{log}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(log.contains("stopping"), "{log}");
    restart_and_check(dir.path(), &config, &listen, &accepted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_signal_exits_at_once_and_loses_nothing() {
    let (dir, listen, config, mut process) = serve_all().await;
    let order = format!("http://{}", listen[0]);
    let (status, took, accepted) =
        signal_under_load(&mut process, &order, 2000, &["TERM", "INT"]).await;
    assert_eq!(status.code(), Some(130), "{}", process.log());
    assert!(took < Duration::from_secs(5), "took {took:?}");
    restart_and_check(dir.path(), &config, &listen, &accepted).await;
}
