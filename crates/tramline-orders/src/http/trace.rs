//! W3C Trace Context on every service: each request runs in a `request` span with its trace
//! id and a span id of its own, its commands' outbox messages carry its `traceparent`, and so
//! does the response, for the client to correlate. See [`crate::trace`] for the rules.

use crate::services::request;
use crate::trace::{TraceContext, TRACEPARENT, TRACESTATE};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The layer: reads `traceparent`/`tracestate`, serves the request in its trace context and
/// span, and answers with the request's own `traceparent`.
pub async fn propagate(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let tracestate = tracestate_of(headers);
    let context = TraceContext::for_request(traceparent_of(headers), tracestate.as_deref());
    let traceparent = HeaderValue::from_str(context.traceparent())
        .expect("hex digits and dashes are a valid header value");
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        trace_id = %context.trace_id(),
        span_id = %context.span_id(),
    );
    let mut response = request::traced(context, next.run(request))
        .instrument(span.clone())
        .await;
    tracing::debug!(parent: &span, status = response.status().as_u16(), "answered");
    response.headers_mut().insert(TRACEPARENT, traceparent);
    response
}

/// The one `traceparent` value; none if the header is missing, repeated (the specification
/// makes that invalid) or not text.
fn traceparent_of(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(TRACEPARENT).iter();
    let first = values.next()?;
    match values.next() {
        Some(_) => None,
        None => first.to_str().ok(),
    }
}

/// The `tracestate` value; several headers are one list, joined with commas.
fn tracestate_of(headers: &HeaderMap) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(TRACESTATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}
