//! A declared view's query API on every database: the example's Order Status View fed with
//! Eventuate Tram records, read back by key and in filtered keyset pages, its errors as
//! problem details, its OpenAPI document complete; and a table that does not match its
//! declaration refused with the differing columns named.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tower::ServiceExt;
use tramline_core::wire::{RawRecord, WireFormat};
use tramline_core::Record;
use tramline_sql::readmodel::InstallError;
use tramline_sql::{Db, DbOptions, ReadModelTable};
use tramline_testkit::{on_every_database, Backend, TestDbs};
use tramline_views::http::{openapi, router, ViewQuery};
use tramline_views::ViewSpec;

#[derive(serde::Deserialize)]
struct File {
    views: BTreeMap<String, ViewSpec>,
}

fn spec() -> ViewSpec {
    let text = include_str!("../../../examples/eventuate-view/tramline.toml");
    let mut file: File = toml::from_str(text).expect("the example parses");
    file.views.remove("order_status").expect("declared")
}

fn table() -> ReadModelTable {
    let declaration = spec()
        .declaration("order_status", "views.order_status")
        .expect("valid");
    ReadModelTable::new(declaration).expect("safe")
}

/// An Eventuate Tram record as its Kafka producer writes it.
fn record(topic: &str, offset: i64, aggregate: &str, event_type: &str, payload: Value) -> Record {
    let value = json!({
        "payload": payload.to_string(),
        "headers": {
            "ID": format!("0000018c5e4a{offset:04x}-0242ac1200050000"),
            "PARTITION_ID": aggregate,
            "DESTINATION": topic,
            "DATE": "Wed, 02 Dec 2026 10:15:00 GMT",
            "event-type": event_type,
            "event-aggregate-type": topic,
            "event-aggregate-id": aggregate,
        }
    })
    .to_string();
    let raw = RawRecord {
        topic,
        partition: 0,
        offset,
        key: Some(aggregate.as_bytes()),
        value: value.as_bytes(),
        headers: &[],
        timestamp_ms: None,
    };
    Record {
        envelope: WireFormat::Eventuate.envelope(&raw),
        partition: 0,
        offset,
    }
}

const ORDER: &str = "com.example.order.Order";
const PAYMENT: &str = "com.example.payment.Payment";

/// Five orders: o-1 … o-5, o-2 and o-4 paid, o-3 with an address that needs escaping.
fn records() -> Vec<Record> {
    let mut records = Vec::new();
    for n in 1..=5 {
        let order = format!("o-{n}");
        records.push(record(
            ORDER,
            n,
            &order,
            "com.example.order.OrderCreatedEvent",
            json!({"orderId": order, "customerId": format!("c-{}", n % 2), "productId": "p-9",
                   "quantity": n, "amount": 12.5 * n as f64,
                   "shippingAddress": if n == 3 { "<script>\"Zürich\" & co</script>" } else { "Main St 1" }}),
        ));
    }
    for (offset, n) in [(1, 2), (2, 4)] {
        let (order, payment) = (format!("o-{n}"), format!("p-{n}"));
        records.push(record(
            PAYMENT,
            offset,
            &payment,
            "com.example.payment.PaymentCreatedEvent",
            json!({"paymentId": payment, "orderId": order, "amount": 12.5 * n as f64}),
        ));
        records.push(record(
            PAYMENT,
            offset + 10,
            &payment,
            "com.example.payment.PaymentApprovedEvent",
            json!({"paymentId": payment, "orderId": order}),
        ));
    }
    records
}

async fn fed(backend: Backend, test: &str) -> (TestDbs, Db, Arc<ReadModelTable>) {
    let dbs = TestDbs::new(backend, test);
    let db = Db::connect(&dbs.url("view").await, &DbOptions::default())
        .await
        .expect("opens");
    let table = table();
    table.install(&db).await.expect("created");
    table
        .install(&db)
        .await
        .expect("an equal table is accepted");
    let changes: Vec<_> = records()
        .iter()
        .map(|r| {
            table
                .declaration()
                .decode(r)
                .expect("decodes")
                .expect("mapped")
        })
        .collect();
    let mut tx = db.begin("test").await.expect("begin");
    table.apply(&mut tx, &changes).await.expect("applied");
    tx.commit("test").await.expect("commit");
    (dbs, db, Arc::new(table))
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, String, Value) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("answered");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, content_type, json)
}

async fn rows_are_served_typed_by_key_and_in_filtered_pages(backend: Backend) {
    let (_dbs, db, table) = fed(backend, "views_query").await;
    let app = router(ViewQuery::new(db.clone(), table, "/order-status"));

    let (status, _, row) = get(&app, "/order-status/o-2").await;
    assert_eq!(status, StatusCode::OK, "{row}");
    assert_eq!(
        row,
        json!({"order_id": "o-2", "order_status": "PENDING", "customer_id": "c-0",
               "product_id": "p-9", "quantity": 2, "amount": "25.00",
               "shipping_address": "Main St 1", "payment_id": "p-2",
               "payment_status": "APPROVED", "delivery_id": null, "delivery_status": null})
    );
    let (_, _, row) = get(&app, "/order-status/o-3").await;
    assert_eq!(
        row["shipping_address"], "<script>\"Zürich\" & co</script>",
        "stored and served as the text it is"
    );
    assert_eq!(row["amount"], "37.50");

    let (status, content_type, problem) = get(&app, "/order-status/o-9").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(problem["type"], "urn:tramline:problem:not-found");
    let (status, _, _) = get(&app, "/order-status/o%00").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "NUL is no key, not an error");

    let keys = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|r| r["order_id"].as_str().expect("key").to_owned())
            .collect()
    };
    let (_, _, paid) = get(&app, "/order-status?payment_status=APPROVED").await;
    assert_eq!(keys(&paid), ["o-2", "o-4"]);
    assert!(paid.get("next").is_none(), "one page: {paid}");
    let (_, _, both) = get(&app, "/order-status?customer_id=c-0&amount=50.0").await;
    assert_eq!(keys(&both), ["o-4"], "a decimal filter compares values");
    let (_, _, by_quantity) = get(&app, "/order-status?quantity=5").await;
    assert_eq!(keys(&by_quantity), ["o-5"]);

    // Keyset pages of two cover every row once, in key order.
    let mut seen = Vec::new();
    let mut uri = "/order-status?limit=2".to_owned();
    loop {
        let (status, _, page) = get(&app, &uri).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(keys(&page));
        match page.get("next").and_then(Value::as_str) {
            Some(next) => uri = format!("/order-status?limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, ["o-1", "o-2", "o-3", "o-4", "o-5"]);

    for (uri, status, kind) in [
        (
            "/order-status?limit=0",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-value",
        ),
        (
            "/order-status?limit=1001",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-value",
        ),
        (
            "/order-status?limit=x",
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
        (
            "/order-status?colour=red",
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
        (
            "/order-status?quantity=abc",
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
        (
            "/order-status?amount=1.234",
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
        (
            "/order-status?limit=1&limit=2",
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
        (
            "/order-status?customer_id=a%00b",
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
    ] {
        let (got, content_type, problem) = get(&app, uri).await;
        assert_eq!(got, status, "{uri}: {problem}");
        assert_eq!(content_type, "application/problem+json", "{uri}");
        assert_eq!(
            problem["type"],
            format!("urn:tramline:problem:{kind}"),
            "{uri}"
        );
    }
    db.close().await;
}

async fn a_table_that_does_not_match_is_refused_naming_the_columns(backend: Backend) {
    let dbs = TestDbs::new(backend, "views_mismatch");
    let db = Db::connect(&dbs.url("view").await, &DbOptions::default())
        .await
        .expect("opens");
    let mut older = spec();
    older.groups[0].columns.retain(|c| c.name != "amount");
    older.events[0].set.remove("amount");
    older.groups[2]
        .columns
        .push(tramline_views::spec::ColumnSpec {
            name: "courier".into(),
            ty: "text".into(),
        });
    let older = older
        .declaration("order_status", "views.order_status")
        .expect("valid");
    ReadModelTable::new(older)
        .expect("safe")
        .install(&db)
        .await
        .expect("the older table");
    let err = table().install(&db).await.expect_err("refused");
    let InstallError::Mismatch {
        missing,
        unexpected,
        ..
    } = &err
    else {
        panic!("{err}");
    };
    // The delivery group had two version sets (courier was set by one event only); now one.
    assert_eq!(missing, &["amount", "delivery_version"]);
    let unexpected: Vec<String> = unexpected.iter().map(|c| c.to_ascii_lowercase()).collect();
    assert_eq!(
        unexpected,
        ["courier", "delivery__v0", "delivery__v1"],
        "{err}"
    );
    assert_eq!(
        err.to_string().to_ascii_lowercase(),
        "table order_status does not match the declaration: it lacks amount, delivery_version; it has courier, delivery__v0, delivery__v1 besides"
    );
    db.close().await;
}

on_every_database!(
    rows_are_served_typed_by_key_and_in_filtered_pages,
    a_table_that_does_not_match_is_refused_naming_the_columns,
);

/// Every `$ref` of `value`.
fn refs(value: &Value, found: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                found.insert(r.clone());
            }
            map.values().for_each(|v| refs(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
        _ => {}
    }
}

#[test]
fn the_openapi_document_is_generated_from_the_declaration() {
    let table = table();
    let doc =
        serde_json::to_value(openapi("order_status", "/order-status", &table)).expect("serialises");
    let paths: Vec<&str> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(paths, ["/order-status", "/order-status/{order_id}"]);
    let row = &doc["components"]["schemas"]["OrderStatusRow"];
    let columns: Vec<&str> = row["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(columns.len(), 11, "{columns:?}");
    assert_eq!(
        row["properties"]["quantity"]["type"],
        json!(["integer", "null"])
    );
    assert_eq!(
        row["properties"]["amount"]["pattern"],
        "^-?[0-9]+\\.[0-9]{2}$"
    );
    assert_eq!(row["properties"]["order_id"]["type"], "string");
    let parameters: Vec<&str> = doc["paths"]["/order-status"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert!(parameters.contains(&"payment_status"), "{parameters:?}");
    assert!(parameters.contains(&"limit") && parameters.contains(&"after"));
    let mut found = BTreeSet::new();
    refs(&doc, &mut found);
    assert!(found.contains("#/components/schemas/Problem"));
    for r in found {
        let name = r.trim_start_matches("#/components/schemas/");
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "{r} does not resolve"
        );
    }
}
