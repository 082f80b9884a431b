//! `Idempotency-Key` on the command APIs, on every database: a repeat is replayed (same status,
//! body and Location, `Idempotent-Replayed: true`) with exactly one effect and one outbox
//! message; a key reused with another request is a 422, a malformed key a 400; twenty
//! concurrent requests with one key have one effect and never a 5xx; a failed command records
//! nothing and runs again when repeated.

mod common;

use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::Router;
use common::http::{assert_problem, order_body, send, send_with};
use common::{completed_history, records};
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::Barrier;
use tramline_core::ports::Handler;
use tramline_orders::events::DomainEvent;
use tramline_orders::http::ApiOptions;
use tramline_orders::services::delivery::{self, DeliveryReaction, DeliveryService};
use tramline_orders::services::order::{self, OrderService};
use tramline_orders::services::payment::{self, PaymentReaction, PaymentService};
use tramline_orders::services::{Migrations, ServiceDb, Subscriber};
use tramline_sql::{Db, DbOptions};
use tramline_testkit::{on_every_database, Backend, TestDbs};

const KEY: &str = "Idempotency-Key";

async fn open(dbs: &TestDbs, store: &str, migrations: Migrations) -> ServiceDb {
    ServiceDb::open(&dbs.url(store).await, &DbOptions::default(), migrations)
        .await
        .expect("the database opens")
}

async fn order_app(dbs: &TestDbs) -> (ServiceDb, Router) {
    let db = open(dbs, "order", order::migrations).await;
    // Group commit, as `serve` runs it: idempotency records go in through the groups.
    let orders = OrderService::new(db.clone()).with_group_commit(2);
    let app = tramline_orders::http::order::router(orders, &ApiOptions::default());
    (db, app)
}

async fn count(db: &ServiceDb, table: &str) -> i64 {
    let stmt = db.db.stmt(&format!("SELECT COUNT(*) FROM {table}"));
    db.db
        .fetch_i64(&stmt, "test", "count")
        .await
        .expect("counts")
}

fn replayed(headers: &HeaderMap) -> bool {
    headers
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true")
}

async fn a_repeated_command_is_replayed_with_one_effect(backend: Backend) {
    let dbs = TestDbs::new(backend, "idem-replay");
    let (db, app) = order_app(&dbs).await;
    let body = order_body("customer-1");
    let place = || {
        send_with(
            &app,
            Method::POST,
            "/orders",
            Some(&body),
            &[(KEY, "k-place")],
        )
    };

    let (s1, h1, b1) = place().await;
    assert_eq!(s1, StatusCode::CREATED, "{b1}");
    assert!(!replayed(&h1), "the first answer is not a replay");
    let (s2, h2, b2) = place().await;
    assert_eq!(s2, StatusCode::CREATED, "{b2}");
    assert!(replayed(&h2));
    assert_eq!(b2, b1, "the same body");
    assert_eq!(h2[header::LOCATION], h1[header::LOCATION]);
    assert_eq!(h2[header::CONTENT_TYPE], "application/json");
    assert_eq!(count(&db, "orders").await, 1, "one order");
    assert_eq!(count(&db, "tramline_outbox").await, 1, "one message");

    // The same key on another service's database is another key; on this one, a command on
    // the order is replayed the same way, with a 200 and no Location.
    let cancel = format!("{}/cancel", h1[header::LOCATION].to_str().expect("text"));
    let (s, h, cancelled) =
        send_with(&app, Method::POST, &cancel, None, &[(KEY, "k-cancel")]).await;
    assert_eq!((s, replayed(&h)), (StatusCode::OK, false), "{cancelled}");
    let (s, h, again) = send_with(&app, Method::POST, &cancel, None, &[(KEY, "k-cancel")]).await;
    assert_eq!((s, replayed(&h)), (StatusCode::OK, true), "{again}");
    assert_eq!(again, cancelled);
    assert!(h.get(header::LOCATION).is_none());
    assert_eq!(count(&db, "tramline_outbox").await, 2, "one more message");
    // Without a key, the same cancel runs again (and is refused).
    let (s, h, b) = send(&app, Method::POST, &cancel, None).await;
    assert_problem(s, &h, &b, StatusCode::CONFLICT, "CANCELLED");
    // The stored response is what the handler answered, byte for byte as JSON.
    let (_, _, read) = send(&app, Method::GET, &cancel.replace("/cancel", ""), None).await;
    assert_eq!(read, cancelled);
}

async fn payment_and_delivery_commands_are_replayed(backend: Backend) {
    let dbs = TestDbs::new(backend, "idem-pay-del");
    let history = completed_history("order-1");
    let select = |keep: fn(&DomainEvent) -> bool| {
        records(
            &history
                .iter()
                .filter(|e| keep(e))
                .cloned()
                .collect::<Vec<_>>(),
        )
    };

    let db = open(&dbs, "payment", payment::migrations).await;
    Subscriber::new(db.clone(), "test", PaymentReaction)
        .apply(&select(|e| matches!(e, DomainEvent::Order(..))))
        .await
        .expect("the payment is created");
    let payments = PaymentService::new(db.clone());
    let id = payments.for_orders_in("", None).await.expect("payments")[0]
        .payment_id
        .clone();
    let app = tramline_orders::http::payment::router(payments, &ApiOptions::default());
    let messages = count(&db, "tramline_outbox").await;
    let approve = format!("/payments/{id}/approve");
    let (s, _, first) = send_with(&app, Method::POST, &approve, None, &[(KEY, "a")]).await;
    assert_eq!(
        (s, first["status"].as_str()),
        (StatusCode::OK, Some("APPROVED"))
    );
    let (s, h, again) = send_with(&app, Method::POST, &approve, None, &[(KEY, "a")]).await;
    assert_eq!((s, replayed(&h)), (StatusCode::OK, true));
    assert_eq!(again, first);
    let reject = format!("/payments/{id}/reject");
    let (s, h, b) = send_with(&app, Method::POST, &reject, None, &[(KEY, "a")]).await;
    assert_problem(
        s,
        &h,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "different request",
    );
    assert_eq!(b["type"], "urn:tramline:problem:idempotency-key-reused");
    assert_eq!(count(&db, "tramline_outbox").await, messages + 1);

    let db = open(&dbs, "delivery", delivery::migrations).await;
    Subscriber::new(db.clone(), "test", DeliveryReaction)
        .apply(&select(|e| matches!(e, DomainEvent::Payment(..))))
        .await
        .expect("the delivery is created");
    let deliveries = DeliveryService::new(db.clone());
    let id = deliveries
        .for_orders_in("", None)
        .await
        .expect("deliveries")[0]
        .delivery_id
        .clone();
    let app = tramline_orders::http::delivery::router(deliveries, &ApiOptions::default());
    let messages = count(&db, "tramline_outbox").await;
    for step in ["start", "complete"] {
        let uri = format!("/deliveries/{id}/{step}");
        let (s, _, first) = send_with(&app, Method::POST, &uri, None, &[(KEY, step)]).await;
        assert_eq!(s, StatusCode::OK, "{first}");
        let (s, h, again) = send_with(&app, Method::POST, &uri, None, &[(KEY, step)]).await;
        assert_eq!((s, replayed(&h)), (StatusCode::OK, true));
        assert_eq!(again, first);
    }
    assert_eq!(count(&db, "tramline_outbox").await, messages + 2);
}

async fn a_key_reused_with_another_request_is_refused(backend: Backend) {
    let dbs = TestDbs::new(backend, "idem-reuse");
    let (db, app) = order_app(&dbs).await;
    let (s, h, placed) = send_with(
        &app,
        Method::POST,
        "/orders",
        Some(&order_body("customer-1")),
        &[(KEY, "k")],
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{placed}");
    let location = h[header::LOCATION].to_str().expect("text").to_owned();
    let cancel = format!("{location}/cancel");
    for (method, uri, body) in [
        (Method::POST, "/orders", Some(order_body("customer-2"))),
        // The same JSON written differently is another request: bodies compare as bytes.
        (
            Method::POST,
            "/orders",
            Some(order_body("customer-1").replace(',', ", ")),
        ),
        (Method::POST, cancel.as_str(), None),
    ] {
        let (s, h, b) = send_with(&app, method, uri, body.as_deref(), &[(KEY, "k")]).await;
        assert_problem(
            s,
            &h,
            &b,
            StatusCode::UNPROCESSABLE_ENTITY,
            "different request",
        );
        assert_eq!(b["type"], "urn:tramline:problem:idempotency-key-reused");
    }
    assert_eq!(count(&db, "orders").await, 1);
    assert_eq!(count(&db, "tramline_outbox").await, 1);
    let (_, _, read) = send(&app, Method::GET, &location, None).await;
    assert_eq!(read["status"], "PENDING", "the cancel did not run");
}

async fn malformed_keys_and_large_bodies_are_refused(backend: Backend) {
    let dbs = TestDbs::new(backend, "idem-malformed");
    let (db, app) = order_app(&dbs).await;
    let body = order_body("customer-1");
    let too_long = "k".repeat(256);
    for key in ["", too_long.as_str(), "two words", "caf\u{e9}"] {
        let request = axum::http::Request::builder()
            .method(Method::POST)
            .uri("/orders")
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                KEY,
                axum::http::HeaderValue::from_bytes(key.as_bytes()).expect("a value"),
            )
            .body(axum::body::Body::from(body.clone()))
            .expect("a request");
        let (s, h, b) = common::http::send_request(&app, request).await;
        assert_problem(s, &h, &b, StatusCode::BAD_REQUEST, "Idempotency-Key");
    }
    let longest = "k".repeat(255);
    let (s, _, b) = send_with(
        &app,
        Method::POST,
        "/orders",
        Some(&body),
        &[(KEY, &longest)],
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "the longest key is fine: {b}");

    // 64 KiB at most, with a key or without.
    let padded = format!(
        r#"{{"customerId":"c","productId":"p","quantity":1,"amountCents":1,"shippingAddress":"{}"}}"#,
        "x".repeat(64 * 1024)
    );
    let (s, h, b) = send_with(
        &app,
        Method::POST,
        "/orders",
        Some(&padded),
        &[(KEY, "big")],
    )
    .await;
    assert_problem(
        s,
        &h,
        &b,
        StatusCode::PAYLOAD_TOO_LARGE,
        "larger than 65536",
    );
    let (s, h, b) = send(&app, Method::POST, "/orders", Some(&padded)).await;
    assert_problem(
        s,
        &h,
        &b,
        StatusCode::PAYLOAD_TOO_LARGE,
        "larger than 65536",
    );
    assert_eq!(count(&db, "orders").await, 1);
}

async fn a_failed_command_records_nothing_and_runs_again(backend: Backend) {
    let dbs = TestDbs::new(backend, "idem-failed");
    let (db, app) = order_app(&dbs).await;
    // 409: the order is no longer PENDING. Repeating with the key runs the command again
    // (no replay) and is refused again; nothing was recorded.
    let (_, h, _) = send(&app, Method::POST, "/orders", Some(&order_body("c"))).await;
    let cancel = format!("{}/cancel", h[header::LOCATION].to_str().expect("text"));
    let (s, _, _) = send(&app, Method::POST, &cancel, None).await;
    assert_eq!(s, StatusCode::OK);
    for _ in 0..2 {
        let (s, h, b) = send_with(&app, Method::POST, &cancel, None, &[(KEY, "k-409")]).await;
        assert_problem(s, &h, &b, StatusCode::CONFLICT, "CANCELLED");
        assert!(!replayed(&h));
    }
    assert_eq!(db.idempotency.find("k-409").await.expect("looks up"), None);
    // 422 then a corrected request with the same key: the second runs (it is not "another
    // request" of a recorded key, since nothing was recorded).
    let invalid = order_body("c").replace("\"quantity\":2", "\"quantity\":0");
    let (s, h, b) = send_with(
        &app,
        Method::POST,
        "/orders",
        Some(&invalid),
        &[(KEY, "k-422")],
    )
    .await;
    assert_problem(s, &h, &b, StatusCode::UNPROCESSABLE_ENTITY, "quantity");
    let (s, h, b) = send_with(
        &app,
        Method::POST,
        "/orders",
        Some(&order_body("c")),
        &[(KEY, "k-422")],
    )
    .await;
    assert_eq!((s, replayed(&h)), (StatusCode::CREATED, false), "{b}");
    let record = db
        .idempotency
        .find("k-422")
        .await
        .expect("looks up")
        .expect("recorded");
    assert_eq!(record.status, 201);
    assert_eq!(
        serde_json::from_str::<Value>(&record.body).expect("JSON"),
        b
    );
    assert_eq!(count(&db, "orders").await, 2);
}

/// Twenty identical requests with one key, released together: one effect; every answer is the
/// success (the winner's, or a replay of it) or a 409 "in progress", never a 5xx.
async fn concurrent_requests_with_one_key_have_one_effect(backend: Backend) {
    let dbs = TestDbs::new(backend, "idem-race");
    let (db, app) = order_app(&dbs).await;
    let body = order_body("customer-race");
    let answers = race(&app, Method::POST, "/orders", Some(body), "race-place").await;
    let winner = check_race(&answers, StatusCode::CREATED);
    assert_eq!(count(&db, "orders").await, 1, "one order");
    assert_eq!(count(&db, "tramline_outbox").await, 1, "one message");

    // The same for a command on an existing aggregate: the losers are refused by the state
    // machine (the winner cancelled it), then answer with the winner's response.
    let cancel = format!(
        "/orders/{}/cancel",
        winner["orderId"].as_str().expect("an id")
    );
    let answers = race(&app, Method::POST, &cancel, None, "race-cancel").await;
    let cancelled = check_race(&answers, StatusCode::OK);
    assert_eq!(
        (cancelled["status"].as_str(), cancelled["version"].as_i64()),
        (Some("CANCELLED"), Some(2))
    );
    assert_eq!(count(&db, "tramline_outbox").await, 2, "one more message");
}

/// The interleaving the records exist for, forced: all twenty requests miss the look-up and
/// run the command before any commits (their record inserts are held back by a lock), so the
/// nineteen losers can only learn of the winner when their commit fails on its key. A
/// check-then-act implementation (look up, run, record afterwards) places twenty orders here.
async fn racers_that_all_missed_the_look_up_replay_the_winner(backend: Backend) {
    let dbs = TestDbs::new(backend, "idem-forced");
    let url = dbs.url("order").await;
    let options = DbOptions {
        // Every racer holds a connection while it waits, and still needs one to look up.
        max_connections: Some(2 * RACERS as u32 + 2),
        ..DbOptions::default()
    };
    let db = ServiceDb::open(&url, &options, order::migrations)
        .await
        .expect("the order database opens");
    // A transaction per request, so that all twenty wait at once (with group commit they
    // would share a few; concurrent_requests_with_one_key_have_one_effect covers that).
    let orders = OrderService::new(db.clone());
    let app = tramline_orders::http::order::router(orders, &ApiOptions::default());
    // A connection of its own holds a lock that makes every insert into the idempotency
    // records wait (reads do not): PostgreSQL's SHARE table lock; on MariaDB a locking read
    // of the missing key, whose gap lock blocks inserts into the empty table.
    let locker = Db::connect(&url, &DbOptions::default())
        .await
        .expect("opens");
    let mut hold = locker.begin("test").await.expect("begin");
    let lock = match backend {
        Backend::Postgres => "LOCK TABLE tramline_idempotency IN SHARE MODE",
        _ => "SELECT idempotency_key FROM tramline_idempotency WHERE idempotency_key = 'race' FOR UPDATE",
    };
    hold.execute(&hold.stmt(lock), "test", "hold inserts")
        .await
        .expect("locks");

    let racing = tokio::spawn({
        let (app, body) = (app.clone(), order_body("customer-race"));
        async move { race(&app, Method::POST, "/orders", Some(body), "race").await }
    });
    // Every racer has looked the key up, placed its order, and waits to record the key.
    let waiting = match backend {
        Backend::Postgres => {
            "SELECT COUNT(*) FROM pg_locks \
             WHERE NOT granted AND relation = 'tramline_idempotency'::regclass"
        }
        _ => {
            "SELECT COUNT(*) FROM information_schema.processlist \
             WHERE db = DATABASE() AND info LIKE 'INSERT INTO tramline_idempotency%'"
        }
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let n = locker
            .fetch_i64(&locker.stmt(waiting), "test", "count waiting")
            .await
            .expect("counts");
        if n == RACERS as i64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} of {RACERS} racers reached the record insert"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        count(&db, "tramline_idempotency").await,
        0,
        "nothing recorded yet"
    );
    hold.commit("test").await.expect("releases");

    let answers = racing.await.expect("no panic");
    check_race(&answers, StatusCode::CREATED);
    assert_eq!(count(&db, "orders").await, 1, "one order");
    assert_eq!(count(&db, "tramline_outbox").await, 1, "one message");
}

mod racers_that_all_missed_the_look_up_replay_the_winner {
    //! On the servers only: SQLite's one writer cannot let twenty transactions wait at once.

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn mariadb() {
        super::racers_that_all_missed_the_look_up_replay_the_winner(
            tramline_testkit::Backend::MariaDb,
        )
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        super::racers_that_all_missed_the_look_up_replay_the_winner(
            tramline_testkit::Backend::Postgres,
        )
        .await
    }
}

const RACERS: usize = 20;

async fn race(
    app: &Router,
    method: Method,
    uri: &str,
    body: Option<String>,
    key: &'static str,
) -> Vec<(StatusCode, HeaderMap, Value)> {
    let barrier = Arc::new(Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|_| {
            let (app, method, uri, body, barrier) = (
                app.clone(),
                method.clone(),
                uri.to_owned(),
                body.clone(),
                barrier.clone(),
            );
            tokio::spawn(async move {
                barrier.wait().await;
                send_with(&app, method, &uri, body.as_deref(), &[(KEY, key)]).await
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(RACERS);
    for task in tasks {
        answers.push(task.await.expect("no panic"));
    }
    answers
}

/// Checks the answers of a race; returns the success body, which every success carries.
fn check_race(answers: &[(StatusCode, HeaderMap, Value)], success: StatusCode) -> Value {
    let mut body = None;
    let mut fresh = 0;
    for (status, headers, b) in answers {
        assert!(!status.is_server_error(), "{status}: {b}");
        if *status == success {
            if !replayed(headers) {
                fresh += 1;
            }
            match &body {
                None => body = Some(b.clone()),
                Some(first) => assert_eq!(b, first, "every success is the same response"),
            }
        } else {
            assert_eq!(*status, StatusCode::CONFLICT, "{b}");
            assert_eq!(
                b["type"], "urn:tramline:problem:idempotency-key-in-progress",
                "{b}"
            );
        }
    }
    assert_eq!(fresh, 1, "exactly one request ran the command");
    body.expect("at least one success")
}

on_every_database!(
    a_repeated_command_is_replayed_with_one_effect,
    payment_and_delivery_commands_are_replayed,
    a_key_reused_with_another_request_is_refused,
    malformed_keys_and_large_bodies_are_refused,
    a_failed_command_records_nothing_and_runs_again,
    concurrent_requests_with_one_key_have_one_effect,
);

/// Every command of every service documents the optional `Idempotency-Key` header and the
/// answers it adds (400 malformed key, 409 in progress, 413, 422 reused key).
#[test]
fn every_command_documents_the_idempotency_key() {
    use utoipa::OpenApi;
    let documents = [
        tramline_orders::http::order::OrderApi::openapi(),
        tramline_orders::http::payment::PaymentApi::openapi(),
        tramline_orders::http::delivery::DeliveryApi::openapi(),
    ];
    let mut commands = 0;
    for document in documents {
        let document = serde_json::to_value(&document).expect("serialises");
        for (path, operations) in document["paths"].as_object().expect("paths") {
            let Some(post) = operations.get("post") else {
                continue;
            };
            commands += 1;
            let header = post["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == "Idempotency-Key")
                .unwrap_or_else(|| panic!("POST {path} documents no Idempotency-Key"));
            assert_eq!(header["in"], "header", "{path}");
            assert_ne!(header["required"], true, "{path}");
            assert!(
                header["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("24 h")),
                "{path}: {header}"
            );
            for status in ["400", "409", "413", "422"] {
                assert!(
                    post["responses"][status].is_object(),
                    "POST {path} documents no {status}"
                );
            }
        }
    }
    assert_eq!(commands, 6, "every command was checked");
}
