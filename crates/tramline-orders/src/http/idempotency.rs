//! `Idempotency-Key` on the command APIs (draft-ietf-httpapi-idempotency-key-header, the way
//! Stripe does it): a client that sends a key may repeat the request — after a timeout, a
//! dropped connection, a crash of its own — and gets the first response again instead of a
//! second effect.
//!
//! The decision to know: the response is recorded **in the command's own transaction**, by
//! [`crate::services::ServiceDb::commit`], beside the state change and the outbox messages, so
//! an effect without its record (or the reverse) cannot exist. This layer never writes: it
//! checks the key, looks it up (a recorded key with the same request is replayed, with another
//! request refused), and otherwise runs the handler under a claim
//! ([`crate::services::request::claimed`]) that tells the commit what to record.
//!
//! What is recorded is the status, the `Location` and the body: the body is the changed
//! aggregate, i.e. the snapshot the command's first event carries; the status and `Location`
//! come from the route, which declares them where it is routed ([`idempotent`] with a
//! [`Reply`]), next to the handler that gives the same answer. That keeps the services and the
//! handlers unaware of idempotency.
//!
//! Two requests with one key at once: both miss the look-up and run; the first commit wins,
//! the second fails on the record's key and rolls back. After any failure of a keyed command
//! the key is looked up again, so the loser replays the winner's response (or, if nothing is
//! recorded yet, answers 409 "in progress"); it never answers 500 and never has an effect. A
//! command that fails records nothing, so repeating it runs it again.

use super::problem::Problem;
use crate::services::request::{self, IdempotencyClaim, Reply};
use crate::services::ServiceDb;
use crate::OrderSystemError;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use std::fmt::Write;
use std::sync::Arc;
use tramline_sql::{IdempotencyRecord, IdempotencyStore};

/// The request header naming the key.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// The response header marking a replayed response (`true`).
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 255;
pub use tramline_views::problem::COMMAND_BODY_LIMIT;

/// The `Idempotency-Key` header of every command, for the OpenAPI documents.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(names("Idempotency-Key"), parameter_in = Header)]
pub struct IdempotencyKey(
    /// Makes the command idempotent: a repeat with the same key and the same request (method,
    /// path, body) within 24 h gets the first response again (with `Idempotent-Replayed:
    /// true`) without running the command again; with another request it is refused (422).
    /// 1 to 255 visible ASCII characters, e.g. a UUID.
    #[param(min_length = 1, max_length = 255, pattern = "^[!-~]+$")]
    pub Option<String>,
);

/// What the layer of one command route knows: where keys are recorded, and how the route
/// answers a success.
#[derive(Debug, Clone)]
struct Route {
    store: IdempotencyStore,
    reply: Reply,
}

/// Makes a command route idempotent for requests with an `Idempotency-Key`; a success is
/// recorded (and replayed) as `reply` says. Requests without the header pass through.
pub fn idempotent<S>(route: MethodRouter<S>, db: &ServiceDb, reply: Reply) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    let state = Route {
        store: db.idempotency.clone(),
        reply,
    };
    route.layer(axum::middleware::from_fn_with_state(state, run_once))
}

/// The layer: validate the key, replay or refuse a recorded one, else run under a claim.
async fn run_once(State(route): State<Route>, request: Request, next: Next) -> Response {
    // Only the command itself: another method gets the router's 405, whatever its headers.
    if request.method() != axum::http::Method::POST {
        return next.run(request).await;
    }
    let key = match key_of(request.headers()) {
        Ok(Some(key)) => key,
        Ok(None) => return next.run(request).await,
        Err(problem) => return problem.into_response(),
    };
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, COMMAND_BODY_LIMIT).await {
        Ok(bytes) => bytes,
        Err(e) => return unreadable_body(&e).into_response(),
    };
    let fingerprint = fingerprint(&parts.method, &parts.uri, &bytes);
    match route.store.find(&key).await {
        Ok(Some(record)) => return answer(&record, &fingerprint),
        Ok(None) => {}
        Err(e) => return Problem::from(OrderSystemError::from(e)).into_response(),
    }
    let claim = Arc::new(IdempotencyClaim::new(key, fingerprint, route.reply));
    let request = Request::from_parts(parts, Body::from(bytes));
    let response = request::claimed(Arc::clone(&claim), next.run(request)).await;
    if response.status().is_success() {
        return response;
    }
    // A concurrent request with this key may have committed while this one ran: its record,
    // not this failure (a lost key race, or a state it already changed), is the answer.
    match route.store.find(claim.key()).await {
        Ok(Some(record)) => answer(&record, claim.request()),
        Ok(None) if claim.lost() => Problem::new(
            StatusCode::CONFLICT,
            "idempotency-key-in-progress",
            "a request with this Idempotency-Key is in progress; retry it later",
        )
        .into_response(),
        _ => response,
    }
}

/// The request's key: `None` without the header; a 400 problem for a key that is empty,
/// longer than [`MAX_KEY_LEN`], not visible ASCII, or sent twice.
fn key_of(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let mut values = headers.get_all(&IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let malformed = |why: &str| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            format!("the Idempotency-Key header {why}"),
        )
    };
    if values.next().is_some() {
        return Err(malformed("is sent more than once"));
    }
    let bytes = value.as_bytes();
    if bytes.is_empty() {
        return Err(malformed("is empty"));
    }
    if bytes.len() > MAX_KEY_LEN {
        return Err(malformed(&format!(
            "is longer than {MAX_KEY_LEN} characters"
        )));
    }
    match std::str::from_utf8(bytes) {
        Ok(key) if key.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(key.to_owned())),
        _ => Err(malformed(
            "must be visible ASCII characters (no spaces or controls)",
        )),
    }
}

/// What identifies a request for its key: method, path (with query) and body. A body that is
/// not UTF-8 is written in hex, marked on the first line, so distinct bodies stay distinct.
fn fingerprint(method: &Method, uri: &Uri, body: &[u8]) -> String {
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    match std::str::from_utf8(body) {
        Ok(text) => format!("{method} {target}\n{text}"),
        Err(_) => {
            let mut s = format!("{method} {target} (hex)\n");
            for b in body {
                write!(s, "{b:02x}").expect("writing to a String cannot fail");
            }
            s
        }
    }
}

/// The answer to a repeat of a recorded key: the recorded response if the request is the
/// same, else a 422 problem.
fn answer(record: &IdempotencyRecord, fingerprint: &str) -> Response {
    if record.request != fingerprint {
        return Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "this Idempotency-Key was used with a different request (method, path or body)",
        )
        .into_response();
    }
    let status = StatusCode::from_u16(record.status);
    let location = record.location.as_deref().map(HeaderValue::from_str);
    let (status, location) = match (status, location.transpose()) {
        (Ok(status), Ok(location)) => (status, location),
        _ => {
            tracing::error!(key = %record.key, status = record.status, "a stored response cannot be replayed");
            return Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the recorded response of this Idempotency-Key cannot be replayed",
            )
            .into_response();
        }
    };
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        record.body.clone(),
    )
        .into_response();
    let headers = response.headers_mut();
    if let Some(location) = location {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    response
}

/// The problem for a body that could not be read: too large (413) or broken off (400).
fn unreadable_body(e: &axum::Error) -> Problem {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return Problem::payload_too_large();
        }
        source = s.source();
    }
    Problem::new(
        StatusCode::BAD_REQUEST,
        "malformed",
        "the request body could not be read",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                &IDEMPOTENCY_KEY,
                HeaderValue::from_bytes(v).expect("a header value"),
            );
        }
        h
    }

    #[test]
    fn keys_are_visible_ascii_of_1_to_255_characters() {
        assert_eq!(key_of(&HeaderMap::new()).ok(), Some(None));
        let uuid = b"8e03978e-40d5-43e8-bc93-6894a57f9324";
        assert_eq!(
            key_of(&headers(&[uuid])).ok().flatten().as_deref(),
            Some("8e03978e-40d5-43e8-bc93-6894a57f9324")
        );
        let longest = vec![b'k'; MAX_KEY_LEN];
        assert!(key_of(&headers(&[&longest])).is_ok());
        let too_long = vec![b'k'; MAX_KEY_LEN + 1];
        for bad in [
            &b""[..],
            &too_long,
            b"with space",
            b"tab\there",
            "caf\u{e9}".as_bytes(),
        ] {
            let problem = key_of(&headers(&[bad])).expect_err("refused");
            assert_eq!(problem.status, 400, "{bad:?}");
        }
        assert!(key_of(&headers(&[b"a", b"b"])).is_err(), "two keys");
    }

    #[test]
    fn fingerprints_tell_requests_apart() {
        let uri: Uri = "/orders".parse().expect("a URI");
        let a = fingerprint(&Method::POST, &uri, b"{\"a\":1}");
        assert_eq!(a, "POST /orders\n{\"a\":1}");
        assert_ne!(a, fingerprint(&Method::POST, &uri, b"{\"a\":2}"));
        let other: Uri = "/orders/x/cancel".parse().expect("a URI");
        assert_ne!(
            fingerprint(&Method::POST, &other, b""),
            fingerprint(&Method::POST, &uri, b"")
        );
        let binary = fingerprint(&Method::POST, &uri, &[0xff, 0x00]);
        assert_eq!(binary, "POST /orders (hex)\nff00");
        assert_ne!(binary, fingerprint(&Method::POST, &uri, b"ff00"));
    }
}
