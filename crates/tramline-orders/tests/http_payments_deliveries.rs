//! The payment and delivery services' HTTP APIs in process: commands through their state
//! machines, 404 and 409 as problem details, and each OpenAPI document against its routes.

mod common;

use axum::http::{Method, StatusCode};
use common::http::{assert_documented_routes, assert_problem, send};
use common::{completed_history, records};
use tramline_core::ports::Handler;
use tramline_orders::events::DomainEvent;
use tramline_orders::services::delivery::{self, DeliveryReaction, DeliveryService};
use tramline_orders::services::payment::{self, PaymentReaction, PaymentService};
use tramline_orders::services::{ServiceDb, Subscriber};
use tramline_sql::DbOptions;
use tramline_testkit::{Backend, TestDbs};

async fn open(
    dbs: &TestDbs,
    store: &str,
    migrations: tramline_orders::services::Migrations,
) -> ServiceDb {
    ServiceDb::open(&dbs.url(store).await, &DbOptions::default(), migrations)
        .await
        .expect("the database opens")
}

/// The events of one order's history that `keep` selects, applied by `reaction`'s service.
async fn react<R: tramline_orders::services::Reaction>(
    db: &ServiceDb,
    reaction: R,
    keep: impl Fn(&DomainEvent) -> bool,
) {
    let history: Vec<DomainEvent> = completed_history("order-1")
        .into_iter()
        .filter(keep)
        .collect();
    Subscriber::new(db.clone(), "test", reaction)
        .apply(&records(&history))
        .await
        .expect("applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_are_approved_once_and_read() {
    let dbs = TestDbs::new(Backend::Sqlite, "http-payments");
    let db = open(&dbs, "payment", payment::migrations).await;
    // The service creates the payment when it sees OrderCreated.
    react(&db, PaymentReaction, |e| {
        matches!(e, DomainEvent::Order(..))
    })
    .await;
    let payments = PaymentService::new(db);
    let id = payments.for_orders_in("", None).await.expect("payments")[0]
        .payment_id
        .clone();
    let app = tramline_orders::http::payment::router(payments, &Default::default());

    let (s, _, b) = send(&app, Method::GET, &format!("/payments/{id}"), None).await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::OK, Some("PENDING")),
        "{b}"
    );
    let (s, _, b) = send(&app, Method::POST, &format!("/payments/{id}/approve"), None).await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::OK, Some("APPROVED")),
        "{b}"
    );
    let (s, h, b) = send(&app, Method::POST, &format!("/payments/{id}/reject"), None).await;
    assert_problem(s, &h, &b, StatusCode::CONFLICT, "APPROVED");
    let (s, h, b) = send(&app, Method::POST, "/payments/nope/approve", None).await;
    assert_problem(s, &h, &b, StatusCode::NOT_FOUND, "nope");
    assert_documented_routes(
        &app,
        &[
            ("GET", "/health"),
            ("GET", "/ready"),
            ("GET", "/payments/{id}"),
            ("POST", "/payments/{id}/approve"),
            ("POST", "/payments/{id}/reject"),
        ],
        |_, _| None,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_started_then_completed_in_order() {
    let dbs = TestDbs::new(Backend::Sqlite, "http-deliveries");
    let db = open(&dbs, "delivery", delivery::migrations).await;
    // The service creates the delivery when it sees PaymentApproved.
    react(&db, DeliveryReaction, |e| {
        matches!(e, DomainEvent::Payment(..))
    })
    .await;
    let deliveries = DeliveryService::new(db);
    let id = deliveries
        .for_orders_in("", None)
        .await
        .expect("deliveries")[0]
        .delivery_id
        .clone();
    let app = tramline_orders::http::delivery::router(deliveries, &Default::default());

    let (s, h, b) = send(
        &app,
        Method::POST,
        &format!("/deliveries/{id}/complete"),
        None,
    )
    .await;
    assert_problem(s, &h, &b, StatusCode::CONFLICT, "READY");
    let (s, _, b) = send(&app, Method::POST, &format!("/deliveries/{id}/start"), None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _, b) = send(
        &app,
        Method::POST,
        &format!("/deliveries/{id}/complete"),
        None,
    )
    .await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::OK, Some("COMPLETED")),
        "{b}"
    );
    let (s, _, b) = send(&app, Method::GET, &format!("/deliveries/{id}"), None).await;
    assert_eq!((s, b["version"].as_i64()), (StatusCode::OK, Some(3)), "{b}");
    let (s, h, b) = send(&app, Method::GET, "/deliveries/nope", None).await;
    assert_problem(s, &h, &b, StatusCode::NOT_FOUND, "nope");
    assert_documented_routes(
        &app,
        &[
            ("GET", "/deliveries/{id}"),
            ("GET", "/health"),
            ("GET", "/ready"),
            ("POST", "/deliveries/{id}/complete"),
            ("POST", "/deliveries/{id}/start"),
        ],
        |_, _| None,
    )
    .await;
}
