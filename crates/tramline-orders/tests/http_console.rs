//! The web console as served by a running system: its page and assets under a strict
//! Content-Security-Policy, its description of the view, live rows as server-sent events
//! when the view's consumer applies an order's events, and a shutdown that does not wait for
//! open consoles. (The page itself is driven in a real browser by the binary's
//! tests/console.rs.)

mod common;

use common::{log, stores};
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;
use tramline_orders::http::ApiOptions;
use tramline_orders::system::{HttpOptions, OrderStatusView, OrderSystem};
use tramline_testkit::sse::ServerEvents;
use tramline_testkit::{Backend, TestDbs};
use tramline_views::console::CONTENT_SECURITY_POLICY;

/// The next `rows` event of `live` holding order `id` with `field` set (10 s at most); the row.
async fn next_row(live: &mut ServerEvents, id: &str, field: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, live.next())
            .await
            .unwrap_or_else(|_| panic!("no row of {id} with {field} within 10 s"))
            .expect("the stream stays open");
        if event.name != "rows" {
            continue;
        }
        let rows: Vec<Value> = serde_json::from_str(&event.data).expect("rows as JSON");
        if let Some(row) = rows
            .into_iter()
            .find(|r| r["orderId"] == id && !r[field].is_null())
        {
            return row;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_serves_live_rows_and_stops_with_streams_open() {
    let dbs = TestDbs::new(Backend::Sqlite, "console");
    let stores = stores(&dbs).await;
    let any_port = || Some("127.0.0.1:0".to_owned());
    let system = OrderSystem::builder(log(&dbs).await)
        .create_topics(2)
        .http(HttpOptions {
            api: ApiOptions {
                bearer_token: Some("secret".into()),
                ..ApiOptions::default()
            },
            request_timeout: Duration::from_secs(10),
            console: true,
            ..HttpOptions::default()
        })
        .order(stores.orders.clone(), any_port())
        .payment(stores.payments.clone(), None)
        .relays(stores.outboxes(), None)
        .view(OrderStatusView {
            listen: any_port(),
            ..OrderStatusView::new(stores.view.clone())
        })
        .start()
        .await
        .expect("the system starts");
    let url = |role: &str| format!("http://{}", system.address(role).expect("it listens"));
    let (orders, view) = (url("order"), url("view"));
    let work = async move {
        let http = reqwest::Client::new();
        let get = |path: &str| http.get(format!("{view}{path}")).send();

        // The page and its assets, each under the policy, with their types.
        for (path, content_type, part) in [
            ("/", "text/html", "/console/console.js"),
            ("/console/console.js", "text/javascript", "EventSource"),
            ("/console/console.css", "text/css", "{"),
            ("/console/icon.svg", "image/svg+xml", "<svg"),
        ] {
            let response = get(path).await.expect("it answers");
            assert_eq!(response.status(), 200, "{path}");
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            assert_eq!(header("content-security-policy"), CONTENT_SECURITY_POLICY);
            assert_eq!(header("x-content-type-options"), "nosniff");
            assert!(header("content-type").starts_with(content_type), "{path}");
            let body = response.text().await.expect("a body");
            assert!(body.contains(part), "{path} holds {part:?}");
        }
        // Only the listener's own code runs: nothing inline, nothing from elsewhere.
        let page = get("/")
            .await
            .expect("the page")
            .text()
            .await
            .expect("text");
        for inline in [
            "<script>", "<style", " style=", "onclick", "http://", "https://",
        ] {
            assert!(!page.contains(inline), "the page holds {inline:?}");
        }

        // What the page is told about the view.
        let config: Value = get("/console/config.json")
            .await
            .expect("the config")
            .json()
            .await
            .expect("JSON");
        assert_eq!(config["collection"], "/order-status");
        assert_eq!(config["key"], "orderId");
        assert_eq!(config["group"], "order-status-view");
        assert_eq!(config["parked"], true);
        assert_eq!(config["auth"], true);
        let groups: Vec<&str> = config["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .map(|g| g["changedAt"].as_str().expect("a change time field"))
            .collect();
        assert_eq!(
            groups,
            ["orderChangedAt", "paymentChangedAt", "deliveryChangedAt"]
        );

        // A console connected before an order is placed gets its row as the view applies it.
        let live = get("/console/live").await.expect("the live stream");
        assert_eq!(live.status(), 200);
        assert!(live
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream")));
        let mut live = ServerEvents::new(live);
        let placed = http
            .post(format!("{orders}/orders"))
            .bearer_auth("secret")
            .json(&serde_json::json!({
                "customerId": "c-live", "productId": "p", "quantity": 1,
                "amountCents": 100, "shippingAddress": "1 Live Street",
            }))
            .send()
            .await
            .expect("POST /orders");
        assert_eq!(placed.status(), 201);
        let placed: Value = placed.json().await.expect("the order");
        let id = placed["orderId"].as_str().expect("an id").to_owned();
        let row = next_row(&mut live, &id, "orderStatus").await;
        assert_eq!(row["shippingAddress"], "1 Live Street");
        assert!(row["orderChangedAt"].is_i64(), "{row}");
        // The payment service's reaction follows on the same stream (or came in the same
        // batch as the order, so in the same row).
        let row = match row["paymentStatus"].is_null() {
            true => next_row(&mut live, &id, "paymentStatus").await,
            false => row,
        };
        assert!(row["paymentChangedAt"].is_i64(), "{row}");

        // Stopping does not wait for the open stream: it ends it.
        let reader = tokio::spawn(async move { while live.next().await.is_some() {} });
        Some(reader)
    };
    let reader = system
        .run(work, Duration::from_secs(10))
        .await
        .expect("the system stops within its deadline with a console open");
    let reader = reader.expect("the stream stayed open");
    tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the live stream ended with the listener")
        .expect("the reader ran");
}
