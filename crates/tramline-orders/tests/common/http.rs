//! Sending requests to a service's router in process, and what every API answer must look like.

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// Sends a request; returns the status, the headers and the body as JSON (Null if empty).
pub async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    body: Option<&str>,
) -> (StatusCode, HeaderMap, Value) {
    send_with(app, method, uri, body, &[]).await
}

/// [`send`] with extra request headers.
pub async fn send_with(
    app: &Router,
    method: Method,
    uri: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
        .expect("a request");
    send_request(app, request).await
}

/// Sends a request built by the caller; answers as [`send`].
pub async fn send_request(app: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let response = app.clone().oneshot(request).await.expect("a response");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, body)
}

/// Asserts a problem details response of `status` whose detail mentions `needle`.
pub fn assert_problem(
    status: StatusCode,
    headers: &HeaderMap,
    body: &Value,
    expected: StatusCode,
    needle: &str,
) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    assert_eq!(body["status"], expected.as_u16(), "{body}");
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("urn:tramline:problem:")),
        "{body}"
    );
    assert!(body["title"].is_string(), "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(needle), "{needle:?} not in {detail:?}");
}

/// Asserts the router's `/openapi.json` documents exactly `expected` (method, path), and that
/// every documented operation is routed (neither 405 nor the unknown-route 404); `body` gives
/// a request body for an operation that needs one.
pub async fn assert_documented_routes(
    app: &Router,
    expected: &[(&str, &str)],
    body: impl Fn(&Method, &str) -> Option<String>,
) {
    let (s, _, doc) = send(app, Method::GET, "/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );
    assert_references_resolve(&doc, &doc);
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for method in ops.as_object().expect("operations").keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    documented.sort();
    let mut wanted: Vec<(String, String)> = expected
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    wanted.sort();
    assert_eq!(documented, wanted);
    for (method, path) in &documented {
        let uri = path
            .replace("{id}", "some-id")
            .replace("{order_id}", "some-id");
        let method: Method = method.parse().expect("a method");
        let request_body = body(&method, &uri);
        let (s, _, b) = send(app, method.clone(), &uri, request_body.as_deref()).await;
        assert_ne!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        assert!(
            !(s == StatusCode::NOT_FOUND && b["detail"] == "no such resource"),
            "{method} {uri} is documented but not routed"
        );
    }
}

/// Every `$ref` in `value` names a schema the document `doc` holds (a client generator or a
/// fuzzer cannot use a document whose references dangle).
fn assert_references_resolve(doc: &Value, value: &Value) {
    match value {
        Value::Object(fields) => {
            for (key, field) in fields {
                if key == "$ref" {
                    let target = field.as_str().expect("a $ref is a string");
                    let name = target
                        .strip_prefix("#/components/schemas/")
                        .unwrap_or_else(|| panic!("unexpected $ref {target}"));
                    assert!(
                        doc["components"]["schemas"].get(name).is_some(),
                        "$ref {target} does not resolve"
                    );
                }
                assert_references_resolve(doc, field);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| assert_references_resolve(doc, i)),
        _ => {}
    }
}

/// A valid `POST /orders` body for `customer`.
pub fn order_body(customer: &str) -> String {
    serde_json::json!({
        "customerId": customer,
        "productId": "product-7",
        "quantity": 2,
        "amountCents": 3998,
        "shippingAddress": "1 Tram Street"
    })
    .to_string()
}
