//! The Order Status View's query API on every database: one row, filters, keyset pages that
//! cover every row exactly once, bad parameters as problem details, and the OpenAPI document
//! against the routes.

mod common;

use axum::http::{Method, StatusCode};
use common::http::{assert_documented_routes, assert_problem, send};
use common::{completed_history, expected_detail, records, view_db};
use serde_json::Value;
use tramline_core::ports::Handler;
use tramline_core::Record;
use tramline_orders::events::DomainEvent;
use tramline_orders::http::view::router;
use tramline_orders::view::projection::OrderStatusProjection;
use tramline_orders::view::OrderStatusQuery;
use tramline_testkit::{on_every_database, Backend, TestDbs};

/// 25 orders: the even ones completed, the odd ones only created.
async fn seeded(
    backend: Backend,
    test: &str,
) -> (
    TestDbs,
    axum::Router,
    Vec<(String, Vec<DomainEvent>, Vec<Record>)>,
) {
    let dbs = TestDbs::new(backend, test);
    let db = view_db(&dbs).await;
    let handler = OrderStatusProjection::consumer(&db, "view");
    let mut orders = Vec::new();
    for i in 0..25 {
        let id = format!("order-{i:03}");
        let mut history = completed_history(&id);
        if i % 2 == 1 {
            history.truncate(1);
        }
        let records = records(&history);
        handler.apply(&records).await.expect("applied");
        orders.push((id, history, records));
    }
    let app = router(OrderStatusQuery::new(db), &Default::default());
    (dbs, app, orders)
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["orderId"].as_str().expect("an order id").to_owned())
        .collect()
}

async fn rows_pages_and_filters(backend: Backend) {
    let (_dbs, app, orders) = seeded(backend, "http-view").await;
    let (id, history, records) = &orders[4];
    let (s, _, row) = send(&app, Method::GET, &format!("/order-status/{id}"), None).await;
    assert_eq!(s, StatusCode::OK, "{row}");
    assert_eq!(
        row,
        serde_json::to_value(expected_detail(id, history, records)).expect("json")
    );
    let (s, h, b) = send(&app, Method::GET, "/order-status/no-such-order", None).await;
    assert_problem(s, &h, &b, StatusCode::NOT_FOUND, "no-such-order");

    // Keyset pages: every row exactly once, in order.
    let mut seen = Vec::new();
    let mut uri = "/order-status?limit=10".to_owned();
    loop {
        let (s, _, page) = send(&app, Method::GET, &uri, None).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        seen.extend(ids(&page));
        match page["next"].as_str() {
            Some(next) => uri = format!("/order-status?limit=10&after={next}"),
            None => break,
        }
    }
    let all: Vec<String> = orders.iter().map(|(id, ..)| id.clone()).collect();
    assert_eq!(seen, all);

    let completed: Vec<String> = all.iter().step_by(2).cloned().collect();
    let pending: Vec<String> = all.iter().skip(1).step_by(2).cloned().collect();
    for (query, expected) in [
        ("orderStatus=COMPLETED", &completed),
        ("orderStatus=PENDING", &pending),
        (
            "paymentStatus=APPROVED&deliveryStatus=COMPLETED",
            &completed,
        ),
        ("customerId=customer-1&orderStatus=PENDING", &pending),
    ] {
        let (s, _, page) = send(
            &app,
            Method::GET,
            &format!("/order-status?{query}&limit=100"),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{query}: {page}");
        assert_eq!(&ids(&page), expected, "{query}");
        assert!(page.get("next").is_none(), "{query}: one page");
    }
    let (_, _, page) = send(&app, Method::GET, "/order-status?customerId=nobody", None).await;
    assert!(ids(&page).is_empty());

    // Bad parameters.
    for query in ["orderStatus=SHIPPED", "limit=ten", "colour=blue"] {
        let (s, h, b) = send(&app, Method::GET, &format!("/order-status?{query}"), None).await;
        assert_problem(s, &h, &b, StatusCode::BAD_REQUEST, "");
    }
    for query in ["limit=0", "limit=1001"] {
        let (s, h, b) = send(&app, Method::GET, &format!("/order-status?{query}"), None).await;
        assert_problem(s, &h, &b, StatusCode::UNPROCESSABLE_ENTITY, "limit");
    }
}

on_every_database!(rows_pages_and_filters);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_routes() {
    let (_dbs, app, _) = seeded(Backend::Sqlite, "http-view-openapi").await;
    assert_documented_routes(
        &app,
        &[
            ("GET", "/health"),
            ("GET", "/order-status"),
            ("GET", "/order-status/{order_id}"),
            ("GET", "/ready"),
        ],
        |_, _| None,
    )
    .await;
}

/// The statuses the documents list are the spellings the APIs answer and accept.
#[test]
fn the_documented_statuses_are_the_ones_on_the_wire() {
    use tramline_orders::domain::delivery::DeliveryStatus;
    use tramline_orders::domain::order::OrderStatus;
    use tramline_orders::domain::payment::PaymentStatus;
    use utoipa::OpenApi;
    let document =
        serde_json::to_value(tramline_orders::http::view::ViewApi::openapi()).expect("a document");
    let documented = |name: &str| -> Vec<String> {
        document["components"]["schemas"][name]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} has no enum in {document}"))
            .iter()
            .map(|v| v.as_str().expect("a string").to_owned())
            .collect()
    };
    let spelled = |all: Vec<&str>| all.into_iter().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        documented("OrderStatus"),
        spelled(OrderStatus::ALL.iter().map(|s| s.as_str()).collect())
    );
    assert_eq!(
        documented("PaymentStatus"),
        spelled(PaymentStatus::ALL.iter().map(|s| s.as_str()).collect())
    );
    assert_eq!(
        documented("DeliveryStatus"),
        spelled(DeliveryStatus::ALL.iter().map(|s| s.as_str()).collect())
    );
}
