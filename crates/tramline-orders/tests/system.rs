//! The whole order system in one test process, assembled by `OrderSystem::builder`: the same
//! assembly `tramline demo` and `tramline serve` run, without starting the binary.

mod common;

use common::{log, stores};
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;
use tramline_orders::domain::order::CreateOrder;
use tramline_orders::http::ApiOptions;
use tramline_orders::scenario::{Fate, Scenario};
use tramline_orders::services::order::OrderService;
use tramline_orders::system::{HttpOptions, OrderStatusView, OrderSystem, SystemError};
use tramline_testkit::{on_every_database, Backend, TestDbs};

fn command(i: u64) -> CreateOrder {
    CreateOrder {
        customer_id: format!("customer-{}", i % 7),
        product_id: format!("product-{}", i % 3),
        quantity: (i % 4 + 1) as i64,
        amount_cents: 1999,
        shipping_address: format!("{i} Tram Street"),
    }
}

/// The demo's workload, in process: orders placed on the order service while the back-office
/// operator approves, rejects and ships by the scenario; every part runs under the builder's
/// supervisor, and the view must end exactly what the services' tables imply.
async fn the_demo_workload_is_exact(backend: Backend) {
    let dbs = TestDbs::new(backend, "system-demo");
    let stores = stores(&dbs).await;
    let system = OrderSystem::builder(log(&dbs).await)
        .create_topics(4)
        .order(stores.orders.clone(), None)
        .payment(stores.payments.clone(), None)
        .delivery(stores.deliveries.clone(), None)
        .operator(Scenario::default())
        .relays(stores.outboxes(), None)
        .view(OrderStatusView::new(stores.view.clone()))
        .start()
        .await
        .expect("the system starts");
    let monitor = system.monitor();
    let orders = OrderService::new(stores.orders.clone());
    let scenario = Scenario::default();
    let work = async {
        let mut fates = [0; 3];
        for chunk in (0..300).collect::<Vec<u64>>().chunks(25) {
            let placed = orders
                .create_many(chunk.iter().map(|&i| command(i)).collect())
                .await
                .expect("orders are placed");
            for o in placed {
                let fate = scenario.fate(&o.order_id);
                fates[match fate {
                    Fate::Complete => 0,
                    Fate::Reject => 1,
                    Fate::Cancel => 2,
                }] += 1;
                if fate == Fate::Cancel {
                    orders
                        .cancel(&o.order_id)
                        .await
                        .expect("the order is cancelled");
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while !monitor.settled().await.expect("the system can be checked") {
            assert!(Instant::now() < deadline, "the system did not settle");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        fates
    };
    let fates = system
        .run(work, Duration::from_secs(30))
        .await
        .expect("the system ran and stopped cleanly");
    assert!(fates.iter().all(|n| *n > 0), "every fate occurs: {fates:?}");

    let verification = stores.verify().await.expect("the stores can be read");
    assert!(verification.is_correct(), "{verification:?}");
    assert_eq!(verification.view_rows, 300);
    assert_eq!(monitor.parked().await.expect("parked messages counted"), 0);
    let applied = monitor
        .view()
        .expect("the view runs")
        .applied
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(applied >= 300 * 2, "the view applied {applied} events");
}

on_every_database!(the_demo_workload_is_exact);

async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client.request(method, &url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url} answers: {e}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls the view's row of `id` until `field` is set.
async fn view_field(client: &reqwest::Client, view: &str, id: &str, field: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, row) = send(
            client,
            reqwest::Method::GET,
            format!("{view}/order-status/{id}"),
            None,
        )
        .await;
        assert!(
            status == 200 || status == 404,
            "the view answered {status}: {row}"
        );
        if !row[field].is_null() {
            return row[field].clone();
        }
        assert!(
            Instant::now() < deadline,
            "{field} of {id} never showed: {row}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every API on port 0 of one process, driven over HTTP as a user would: an order placed,
/// paid, shipped and completed, another rejected, a third cancelled; the view follows each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_api_in_one_process_on_port_zero() {
    let dbs = TestDbs::new(Backend::Sqlite, "system-http");
    let stores = stores(&dbs).await;
    let any_port = || Some("127.0.0.1:0".to_owned());
    let system = OrderSystem::builder(log(&dbs).await)
        .create_topics(2)
        .http(HttpOptions {
            api: ApiOptions::default(),
            request_timeout: Duration::from_secs(10),
            extra: None,
            idempotency_retention: Duration::from_secs(3600),
            console: false,
        })
        .order(stores.orders.clone(), any_port())
        .payment(stores.payments.clone(), any_port())
        .delivery(stores.deliveries.clone(), any_port())
        .relays(stores.outboxes(), any_port())
        .view(OrderStatusView {
            listen: any_port(),
            ..OrderStatusView::new(stores.view.clone())
        })
        .start()
        .await
        .expect("the system starts");
    let url = |role: &str| {
        let address = system
            .address(role)
            .unwrap_or_else(|| panic!("the {role} API listens"));
        assert_ne!(address.port(), 0, "the port the {role} API got is known");
        format!("http://{address}")
    };
    let (orders_api, payments_api, deliveries_api, view_api) =
        (url("order"), url("payment"), url("delivery"), url("view"));
    let relay_api = url("relay");
    let client = reqwest::Client::new();
    let work = async {
        use reqwest::Method;
        let mut ids = Vec::new();
        for i in 0..3 {
            let body = serde_json::to_value(command(i)).expect("a command encodes");
            let (status, order) = send(
                &client,
                Method::POST,
                format!("{orders_api}/orders"),
                Some(body),
            )
            .await;
            assert_eq!(status, 201, "POST /orders: {order}");
            ids.push(order["orderId"].as_str().expect("an order id").to_owned());
        }
        // Completed: paid, shipped, delivered.
        let payment = view_field(&client, &view_api, &ids[0], "paymentId").await;
        let payment = payment.as_str().expect("a payment id");
        let (status, body) = send(
            &client,
            Method::POST,
            format!("{payments_api}/payments/{payment}/approve"),
            None,
        )
        .await;
        assert_eq!(status, 200, "approve: {body}");
        let delivery = view_field(&client, &view_api, &ids[0], "deliveryId").await;
        let delivery = delivery.as_str().expect("a delivery id");
        for step in ["start", "complete"] {
            let (status, body) = send(
                &client,
                Method::POST,
                format!("{deliveries_api}/deliveries/{delivery}/{step}"),
                None,
            )
            .await;
            assert_eq!(status, 200, "{step}: {body}");
        }
        // Rejected.
        let payment = view_field(&client, &view_api, &ids[1], "paymentId").await;
        let payment = payment.as_str().expect("a payment id");
        let (status, body) = send(
            &client,
            Method::POST,
            format!("{payments_api}/payments/{payment}/reject"),
            None,
        )
        .await;
        assert_eq!(status, 200, "reject: {body}");
        // Cancelled.
        let (status, body) = send(
            &client,
            Method::POST,
            format!("{orders_api}/orders/{}/cancel", ids[2]),
            None,
        )
        .await;
        assert_eq!(status, 200, "cancel: {body}");

        let finals = [
            ("COMPLETED", "APPROVED", Some("COMPLETED")),
            ("REJECTED", "REJECTED", None),
            ("CANCELLED", "CANCELLED", None),
        ];
        for (id, (order, payment, delivery)) in ids.iter().zip(finals) {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let (_, row) = send(
                    &client,
                    Method::GET,
                    format!("{view_api}/order-status/{id}"),
                    None,
                )
                .await;
                if row["orderStatus"] == order
                    && row["paymentStatus"] == payment
                    && row["deliveryStatus"].as_str() == delivery
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "order {id} never reached {order}/{payment}/{delivery:?}: {row}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let (status, health) = send(&client, Method::GET, format!("{relay_api}/ready"), None).await;
        assert_eq!(status, 200, "the relays are ready: {health}");
    };
    system
        .run(work, Duration::from_secs(30))
        .await
        .expect("the system ran and stopped cleanly");
    let verification = stores.verify().await.expect("the stores can be read");
    assert!(verification.is_correct(), "{verification:?}");
    assert_eq!(verification.view_rows, 3);
}

/// An address already taken is refused at start, naming the listener, before anything runs.
#[tokio::test]
async fn a_taken_address_is_refused_at_start() {
    let dbs = TestDbs::new(Backend::Sqlite, "system-taken");
    let stores = stores(&dbs).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = taken.local_addr().expect("its address").to_string();
    let started = OrderSystem::builder(log(&dbs).await)
        .create_topics(1)
        .http(HttpOptions {
            api: ApiOptions::default(),
            request_timeout: Duration::from_secs(10),
            extra: None,
            idempotency_retention: Duration::from_secs(3600),
            console: false,
        })
        .order(stores.orders.clone(), Some(address.clone()))
        .start()
        .await;
    match started {
        Err(SystemError::Listen {
            name,
            address: refused,
            ..
        }) => {
            assert_eq!(
                (name.as_str(), refused.as_str()),
                ("order", address.as_str())
            );
        }
        other => panic!("expected the order listener refused, got {other:?}"),
    }
}
