//! The order service's HTTP API in process (axum's router, no socket): the happy path, one test
//! per error class (400, 404, 409, 415, 422), and the OpenAPI document against the routes.

mod common;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use common::http::{assert_documented_routes, assert_problem, order_body, send};
use tower::ServiceExt;
use tramline_orders::http::order::router;
use tramline_orders::http::{ApiOptions, Probe};
use tramline_orders::services::order::{self, OrderService};
use tramline_orders::services::ServiceDb;
use tramline_sql::DbOptions;
use tramline_testkit::{Backend, TestDbs};

async fn app(dbs: &TestDbs) -> Router {
    app_with(dbs, &ApiOptions::default()).await
}

async fn app_with(dbs: &TestDbs, options: &ApiOptions) -> Router {
    let db = ServiceDb::open(
        &dbs.url("order").await,
        &DbOptions::default(),
        order::migrations,
    )
    .await
    .expect("the order database opens");
    router(OrderService::new(db), options)
}

fn valid_order() -> String {
    order_body("customer-1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_placed_read_and_cancelled() {
    let dbs = TestDbs::new(Backend::Sqlite, "http-orders");
    let app = app(&dbs).await;
    let (status, headers, placed) = send(&app, Method::POST, "/orders", Some(&valid_order())).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let id = placed["orderId"].as_str().expect("an order id");
    assert_eq!(placed["status"], "PENDING");
    let location = headers[header::LOCATION].to_str().expect("a Location");
    assert_eq!(location, format!("/orders/{id}"));

    let (status, _, read) = send(&app, Method::GET, location, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read, placed);

    let (status, _, cancelled) =
        send(&app, Method::POST, &format!("{location}/cancel"), None).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "CANCELLED");
    assert_eq!(cancelled["version"], 2);
    let (_, _, read) = send(&app, Method::GET, location, None).await;
    assert_eq!(read["status"], "CANCELLED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_error_class_has_its_status_and_a_problem_document() {
    let dbs = TestDbs::new(Backend::Sqlite, "http-errors");
    let app = app(&dbs).await;

    // 400: not JSON at all.
    let (s, h, b) = send(&app, Method::POST, "/orders", Some("{not json")).await;
    assert_problem(s, &h, &b, StatusCode::BAD_REQUEST, "");
    // 422: JSON of the wrong shape, and values the domain refuses.
    let wrong_type = valid_order().replace("2,", "\"two\",");
    let (s, h, b) = send(&app, Method::POST, "/orders", Some(&wrong_type)).await;
    assert_problem(s, &h, &b, StatusCode::UNPROCESSABLE_ENTITY, "quantity");
    let (s, h, b) = send(&app, Method::POST, "/orders", Some(r#"{"customerId":"c"}"#)).await;
    assert_problem(s, &h, &b, StatusCode::UNPROCESSABLE_ENTITY, "productId");
    let zero = valid_order().replace("\"quantity\":2", "\"quantity\":0");
    let (s, h, b) = send(&app, Method::POST, "/orders", Some(&zero)).await;
    assert_problem(s, &h, &b, StatusCode::UNPROCESSABLE_ENTITY, "quantity");
    let blank = valid_order().replace("customer-1", "  ");
    let (s, h, b) = send(&app, Method::POST, "/orders", Some(&blank)).await;
    assert_problem(s, &h, &b, StatusCode::UNPROCESSABLE_ENTITY, "customerId");
    // 415: a body that does not say it is JSON.
    let request = Request::builder()
        .method(Method::POST)
        .uri("/orders")
        .body(Body::from(valid_order()))
        .expect("a request");
    let response = app.clone().oneshot(request).await.expect("a response");
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // 404: unknown ids and unknown routes.
    let (s, h, b) = send(&app, Method::GET, "/orders/no-such-order", None).await;
    assert_problem(s, &h, &b, StatusCode::NOT_FOUND, "no-such-order");
    let (s, h, b) = send(&app, Method::POST, "/orders/no-such-order/cancel", None).await;
    assert_problem(s, &h, &b, StatusCode::NOT_FOUND, "no-such-order");
    let (s, h, b) = send(&app, Method::GET, "/nothing/here", None).await;
    assert_problem(s, &h, &b, StatusCode::NOT_FOUND, "");
    // 409: an illegal state transition.
    let (_, _, placed) = send(&app, Method::POST, "/orders", Some(&valid_order())).await;
    let cancel = format!(
        "/orders/{}/cancel",
        placed["orderId"].as_str().expect("an id")
    );
    let (s, _, _) = send(&app, Method::POST, &cancel, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, h, b) = send(&app, Method::POST, &cancel, None).await;
    assert_problem(s, &h, &b, StatusCode::CONFLICT, "CANCELLED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_bearer_token_guards_commands_only() {
    let dbs = TestDbs::new(Backend::Sqlite, "http-bearer");
    let options = ApiOptions {
        bearer_token: Some("s3cret".into()),
        ..ApiOptions::default()
    };
    let app = app_with(&dbs, &options).await;
    let post = |auth: Option<&'static str>| {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri("/orders")
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(auth) = auth {
            request = request.header(header::AUTHORIZATION, auth);
        }
        request.body(Body::from(valid_order())).expect("a request")
    };
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("s3cret"),
        Some("Basic s3cret"),
    ] {
        let response = app.clone().oneshot(post(auth)).await.expect("a response");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
    let response = app
        .clone()
        .oneshot(post(Some("Bearer s3cret")))
        .await
        .expect("a response");
    assert_eq!(response.status(), StatusCode::CREATED);
    let (s, _, _) = send(&app, Method::GET, "/orders/unknown", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "reads need no token");
    let (s, _, _) = send(&app, Method::GET, "/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_answer() {
    let dbs = TestDbs::new(Backend::Sqlite, "http-ops");
    let app = app(&dbs).await;
    let (s, _, b) = send(&app, Method::GET, "/health", None).await;
    assert_eq!((s, b["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, _, b) = send(&app, Method::GET, "/ready", None).await;
    assert_eq!((s, b["status"].as_str()), (StatusCode::OK, Some("ok")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_while_a_probe_fails() {
    let dbs = TestDbs::new(Backend::Sqlite, "http-probe");
    let broker_up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let up = std::sync::Arc::clone(&broker_up);
    let options = ApiOptions {
        probes: vec![Probe::new("the Kafka brokers", move || {
            let up = up.load(std::sync::atomic::Ordering::SeqCst);
            async move {
                up.then_some(())
                    .ok_or_else(|| "connection refused".to_owned())
            }
        })],
        ..ApiOptions::default()
    };
    let app = app_with(&dbs, &options).await;
    let (s, h, b) = send(&app, Method::GET, "/ready", None).await;
    assert_problem(
        s,
        &h,
        &b,
        StatusCode::SERVICE_UNAVAILABLE,
        "the Kafka brokers",
    );
    let (s, _, _) = send(&app, Method::GET, "/health", None).await;
    assert_eq!(s, StatusCode::OK, "liveness does not depend on the broker");
    broker_up.store(true, std::sync::atomic::Ordering::SeqCst);
    let (s, _, b) = send(&app, Method::GET, "/ready", None).await;
    assert_eq!((s, b["status"].as_str()), (StatusCode::OK, Some("ok")));
}

/// Every documented operation is routed (not the 404 fallback, not 405), and every route is
/// documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_routes() {
    let dbs = TestDbs::new(Backend::Sqlite, "http-openapi");
    let app = app(&dbs).await;
    let expected = [
        ("GET", "/health"),
        ("GET", "/orders/{id}"),
        ("GET", "/ready"),
        ("POST", "/orders"),
        ("POST", "/orders/{id}/cancel"),
    ];
    assert_documented_routes(&app, &expected, |method, uri| {
        (method == Method::POST && uri == "/orders").then(valid_order)
    })
    .await;
}
