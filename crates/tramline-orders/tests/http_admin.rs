//! The admin API of the view's listener on every database: parked messages listed in pages,
//! shown, skipped and retried — the same operations as `tramline parked` — commands behind
//! the bearer token, errors as problem details, and the OpenAPI document against the routes.

mod common;

use axum::http::{Method, StatusCode};
use common::http::{assert_documented_routes, assert_problem, send, send_with};
use tramline_core::{Error, Record};
use tramline_orders::domain::order::{CreateOrder, Order, OrderEventType};
use tramline_orders::events::DomainEvent;
use tramline_orders::http::admin::ParkedConsumers;
use tramline_orders::http::ApiOptions;
use tramline_orders::system::parked_ops;
use tramline_orders::view::{self, OrderStatusQuery};
use tramline_sql::{Inbox, ParkPolicy};
use tramline_testkit::{on_every_database, Backend, TestDbs};

async fn parked_view(backend: Backend, test: &str) -> (TestDbs, axum::Router, Vec<String>) {
    let dbs = TestDbs::new(backend, test);
    let db = common::view_db(&dbs).await;
    let inbox = Inbox::new(view::GROUP);
    let mut orders = Vec::new();
    // Three keys, each with an undecodable message and a real event held behind it.
    for n in 0..3 {
        let cmd = CreateOrder {
            customer_id: "c".into(),
            product_id: "p".into(),
            quantity: 1,
            amount_cents: 100,
            shipping_address: "1 Tram Street".into(),
        };
        let (order, _) = Order::create(format!("order-{n}"), cmd).expect("valid");
        orders.push(order.order_id.clone());
        let good = DomainEvent::Order(OrderEventType::Created, order).to_envelope();
        let mut bad = good.clone();
        bad.id = uuid::Uuid::now_v7();
        bad.payload = "<script>{not json".into();
        let record = |envelope, offset| Record {
            envelope,
            partition: 0,
            offset,
        };
        let reason = Error::Config("cannot decode".into());
        inbox
            .park(&db.db, &record(bad, 2 * n), &reason)
            .await
            .expect("parked");
        let mut tx = db.db.begin("test").await.expect("begin");
        inbox
            .hold(&mut tx, &record(good, 2 * n + 1))
            .await
            .expect("held");
        tx.commit("test").await.expect("commit");
    }
    let ops = parked_ops(view::GROUP, &db, view::GROUP, ParkPolicy::HoldKey).expect("ops");
    let options = ApiOptions {
        bearer_token: Some("s3cret".into()),
        parked: ParkedConsumers(vec![ops]),
        ..ApiOptions::default()
    };
    let app = tramline_orders::http::view::router(OrderStatusQuery::new(db), &options);
    (dbs, app, orders)
}

async fn parked_messages_are_paged_shown_skipped_and_retried(backend: Backend) {
    let (_dbs, app, orders) = parked_view(backend, "http-admin").await;
    let (s, _, page) = send(&app, Method::GET, "/admin/parked?limit=4", None).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 4);
    assert_eq!(items[0]["held"], false);
    assert_eq!(items[1]["held"], true);
    assert_eq!(items[0]["payload"], "<script>{not json");
    let next = page["next"].as_i64().expect("a next page");
    let (_, _, rest) = send(
        &app,
        Method::GET,
        &format!("/admin/parked?after={next}"),
        None,
    )
    .await;
    assert_eq!(rest["items"].as_array().expect("items").len(), 2);
    assert!(rest.get("next").is_none(), "{rest}");

    let first = items[0]["id"].as_i64().expect("an id");
    let held = items[1]["id"].as_i64().expect("an id");
    let (s, _, one) = send(&app, Method::GET, &format!("/admin/parked/{first}"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one["reason"], "invalid configuration: cannot decode");
    assert_eq!(one["key"], orders[0].as_str());

    // Commands need the token.
    let skip = format!("/admin/parked/{first}/skip");
    let (s, h, b) = send(&app, Method::POST, &skip, None).await;
    assert_problem(s, &h, &b, StatusCode::UNAUTHORIZED, "bearer token");
    let auth = [("authorization", "Bearer s3cret")];
    let held_skip = format!("/admin/parked/{held}/skip");
    let (s, h, b) = send_with(&app, Method::POST, &held_skip, None, &auth).await;
    assert_problem(s, &h, &b, StatusCode::CONFLICT, "held behind");
    let (s, _, released) = send_with(&app, Method::POST, &skip, None, &auth).await;
    assert_eq!(s, StatusCode::OK, "{released}");
    assert_eq!(released["skipped"], first);
    assert_eq!(released["applied"], serde_json::json!([held]));
    let (s, h, b) = send_with(&app, Method::POST, &skip, None, &auth).await;
    assert_problem(s, &h, &b, StatusCode::NOT_FOUND, "no parked message");
    let (s, _, row) = send(
        &app,
        Method::GET,
        &format!("/order-status/{}", orders[0]),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "the held event was applied: {row}");

    // A retry whose cause is not fixed answers which message stays parked.
    let second = items[2]["id"]
        .as_i64()
        .expect("the second key's undecodable message");
    let retry = format!("/admin/parked/{second}/retry");
    let (s, _, again) = send_with(&app, Method::POST, &retry, None, &auth).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again["stillParked"], second);
    assert!(again["applied"].as_array().is_some_and(Vec::is_empty));

    let (s, h, b) = send(&app, Method::GET, "/admin/parked/x", None).await;
    assert_problem(s, &h, &b, StatusCode::BAD_REQUEST, "");
    let (s, h, b) = send(&app, Method::GET, "/admin/parked?limit=0", None).await;
    assert_problem(s, &h, &b, StatusCode::UNPROCESSABLE_ENTITY, "limit");
    let (s, h, b) = send(&app, Method::GET, "/admin/parked?nope=1", None).await;
    assert_problem(s, &h, &b, StatusCode::BAD_REQUEST, "");
}

on_every_database!(parked_messages_are_paged_shown_skipped_and_retried);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_routes() {
    let (_dbs, app, _) = parked_view(Backend::Sqlite, "http-admin-openapi").await;
    assert_documented_routes(
        &app,
        &[
            ("GET", "/admin/parked"),
            ("GET", "/admin/parked/{id}"),
            ("POST", "/admin/parked/{id}/retry"),
            ("POST", "/admin/parked/{id}/skip"),
            ("GET", "/health"),
            ("GET", "/order-status"),
            ("GET", "/order-status/{order_id}"),
            ("GET", "/ready"),
        ],
        |_, _| None,
    )
    .await;
}
