//! W3C Trace Context on every database: a request's `traceparent` (its trace, our span) is in
//! the response and in the headers of the outbox message it commits, survives the DB log and
//! Eventuate's message format, and the view logs the applied event with its trace id; an
//! invalid or missing `traceparent` starts a new trace.

mod common;

use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::Router;
use common::http::{order_body, send, send_with};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::instrument::WithSubscriber;
use tramline_core::eventuate::EventuateMessage;
use tramline_core::ports::{Handler, Outbox, Subscription, Transport};
use tramline_core::topics::TopicNames;
use tramline_core::Envelope;
use tramline_orders::events::ORDER_EVENTS;
use tramline_orders::http::ApiOptions;
use tramline_orders::services::order::{self, OrderService};
use tramline_orders::services::ServiceDb;
use tramline_orders::trace::{parse_traceparent, TRACEPARENT, TRACESTATE};
use tramline_orders::view::projection::OrderStatusProjection;
use tramline_sql::{DbOptions, OutboxLayout, SqlLog};
use tramline_testkit::{on_every_database, Backend, TestDbs};

const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const INCOMING_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

async fn order_app(dbs: &TestDbs, layout: OutboxLayout) -> (ServiceDb, Router) {
    let db = ServiceDb::open_with_layout(
        &dbs.url("order").await,
        &DbOptions::default(),
        order::migrations,
        layout,
        TopicNames::default(),
    )
    .await
    .expect("the order database opens");
    let app =
        tramline_orders::http::order::router(OrderService::new(db.clone()), &ApiOptions::default());
    (db, app)
}

/// The response's `traceparent`, checked to be valid.
fn traceparent_of(headers: &HeaderMap) -> String {
    let value = headers
        .get(TRACEPARENT)
        .expect("every response carries traceparent")
        .to_str()
        .expect("text")
        .to_owned();
    assert!(parse_traceparent(&value).is_some(), "{value}");
    value
}

/// The messages waiting in the service's outbox.
async fn outbox(db: &ServiceDb) -> Vec<Envelope> {
    db.outbox
        .fetch_unpublished(100)
        .await
        .expect("fetches")
        .messages
}

/// Log lines written under a test's subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    fn dispatch(&self) -> tracing::Dispatch {
        let sink = self.clone();
        tracing::Dispatch::new(
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::DEBUG)
                .with_ansi(false)
                .with_writer(move || sink.clone())
                .finish(),
        )
    }
}

async fn a_request_is_followed_from_its_caller_to_the_view(backend: Backend) {
    let dbs = TestDbs::new(backend, "trace-path");
    let (db, app) = order_app(&dbs, OutboxLayout::Tramline).await;
    let (s, h, placed) = send_with(
        &app,
        Method::POST,
        "/orders",
        Some(&order_body("customer-1")),
        &[(TRACEPARENT, INCOMING), (TRACESTATE, "congo=t61rcWkgMzE")],
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{placed}");
    let ours = traceparent_of(&h);
    let parsed = parse_traceparent(&ours).expect("valid");
    assert_eq!(
        parsed.trace_id, INCOMING_TRACE,
        "the caller's trace continues"
    );
    assert_ne!(parsed.parent_id, "00f067aa0ba902b7", "under our own span");
    assert_eq!(parsed.flags, 1);

    let messages = outbox(&db).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].header(TRACEPARENT), Some(ours.as_str()));
    assert_eq!(messages[0].header(TRACESTATE), Some("congo=t61rcWkgMzE"));

    // Through the DB log, as the relay publishes it and the view's consumer reads it.
    let log = SqlLog::open(&dbs.url("log").await, &DbOptions::default())
        .await
        .expect("the log opens");
    log.create_topic(ORDER_EVENTS, 2).await.expect("a topic");
    log.publish(&messages).await.expect("published");
    let mut subscription = log
        .subscribe("order-status-view", &[ORDER_EVENTS.to_owned()])
        .await
        .expect("subscribed");
    let records = subscription
        .poll(10, Duration::from_secs(5))
        .await
        .expect("polled");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].envelope.header(TRACEPARENT), Some(ours.as_str()));

    // The view logs the event it applied with the request's trace id; a duplicate it skips is
    // not logged again.
    let view = OrderStatusProjection::consumer(&common::view_db(&dbs).await, "order-status-view");
    let logs = Captured::default();
    view.apply(&records)
        .with_subscriber(logs.dispatch())
        .await
        .expect("applied");
    let text = logs.text();
    let order_id = placed["orderId"].as_str().expect("an order id");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("event applied to the view"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    for needle in [
        "DEBUG",
        &format!("trace_id=\"{INCOMING_TRACE}\""),
        &format!("order_id=\"{order_id}\""),
        "event_type=\"OrderCreated\"",
    ] {
        assert!(lines[0].contains(needle), "{needle} not in {}", lines[0]);
    }
    let again = Captured::default();
    view.apply(&records)
        .with_subscriber(again.dispatch())
        .await
        .expect("applied");
    assert!(
        !again.text().contains("event applied to the view"),
        "{}",
        again.text()
    );
}

async fn an_invalid_or_missing_traceparent_starts_a_new_trace(backend: Backend) {
    let dbs = TestDbs::new(backend, "trace-new");
    let (db, app) = order_app(&dbs, OutboxLayout::Tramline).await;
    let zero_trace = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
    let upper = INCOMING.to_uppercase(); // hex must be lower case
    let mut seen = Vec::new();
    for incoming in [
        Some("garbage"),
        Some(zero_trace),
        Some(upper.as_str()),
        None,
    ] {
        let mut headers = vec![(TRACESTATE, "congo=1")];
        if let Some(value) = incoming {
            headers.push((TRACEPARENT, value));
        }
        let (s, h, b) = send_with(
            &app,
            Method::POST,
            "/orders",
            Some(&order_body("customer-1")),
            &headers,
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        let ours = traceparent_of(&h);
        let trace_id = parse_traceparent(&ours).expect("valid").trace_id.to_owned();
        assert_ne!(trace_id, INCOMING_TRACE, "{incoming:?}");
        assert_ne!(trace_id, "0".repeat(32));
        assert!(!seen.contains(&trace_id), "a new trace each time");
        seen.push(trace_id);
        let messages = outbox(&db).await;
        let message = messages.last().expect("a message");
        assert_eq!(message.header(TRACEPARENT), Some(ours.as_str()));
        assert_eq!(
            message.header(TRACESTATE),
            None,
            "no state without a parent"
        );
    }
    // Reads, problems and unknown routes carry one too.
    for uri in ["/orders/nope", "/nothing/here", "/health"] {
        let (_, h, _) = send(&app, Method::GET, uri, None).await;
        traceparent_of(&h);
    }
    let (s, h, _) = send_with(
        &app,
        Method::GET,
        "/health",
        None,
        &[(TRACEPARENT, INCOMING)],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(traceparent_of(&h).contains(INCOMING_TRACE));
    assert!(h.get(header::CONTENT_TYPE).is_some());
}

/// The Eventuate outbox layout and Eventuate's JSON message (the Kafka record value) keep the
/// trace headers like any other header.
async fn trace_headers_survive_eventuate_messages(backend: Backend) {
    let dbs = TestDbs::new(backend, "trace-eventuate");
    let (db, app) = order_app(&dbs, OutboxLayout::Eventuate).await;
    let (s, h, b) = send_with(
        &app,
        Method::POST,
        "/orders",
        Some(&order_body("customer-1")),
        &[(TRACEPARENT, INCOMING), (TRACESTATE, "congo=1")],
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let ours = traceparent_of(&h);
    let messages = outbox(&db).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].header(TRACEPARENT), Some(ours.as_str()));
    let json = EventuateMessage::json_of(&messages[0], "order-events");
    let back = EventuateMessage::from_json(json.as_bytes())
        .expect("parses")
        .into_envelope(None, Some(messages[0].created_at_ms))
        .expect("an envelope");
    assert_eq!(back.header(TRACEPARENT), Some(ours.as_str()));
    assert_eq!(back.header(TRACESTATE), Some("congo=1"));
}

on_every_database!(
    a_request_is_followed_from_its_caller_to_the_view,
    an_invalid_or_missing_traceparent_starts_a_new_trace,
    trace_headers_survive_eventuate_messages,
);
