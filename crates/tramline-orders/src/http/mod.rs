//! The services' HTTP APIs (axum): one router per service, its OpenAPI document generated from
//! the handlers (utoipa), `/health` (the process runs) and `/ready` (its database answers).
//!
//! Every error is a problem details document ([`problem::Problem`]); a request body that does
//! not parse is a 400 or 422, never a panic or a 500. Every command (POST) honours an
//! `Idempotency-Key` ([`idempotency`]) and takes a body of at most 64 KiB; every request runs
//! in its W3C trace context ([`trace`]). The conventions are written up in docs/HTTP.md.

pub mod admin;
pub mod delivery;
pub mod idempotency;
pub mod order;
pub mod payment;
pub mod problem;
pub mod trace;
pub mod view;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use problem::Problem;
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;
use tramline_sql::Db;

/// What `/health` and `/ready` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// `ok`.
    pub status: &'static str,
}

/// Liveness: the process serves requests.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "the process runs", body = Status)))]
pub async fn health() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// Readiness: the service's database answers, and so does everything else it needs (the
/// broker, other databases: [`ApiOptions::probes`]).
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "ready", body = Status),
        (status = 503, description = "the database or the broker does not answer", body = Problem, content_type = "application/problem+json")))]
pub async fn ready(State(readiness): State<Readiness>) -> Result<Json<Status>, Problem> {
    let unavailable = |what: &str| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("{what} does not answer"),
        )
    };
    if let Err(e) = readiness.db.ping("ready").await {
        tracing::warn!(error = %tramline_core::error::sentence(&e), "not ready");
        return Err(unavailable("the service's database"));
    }
    for probe in readiness.probes.iter() {
        if let Err(e) = (probe.check)().await {
            tracing::warn!(error = %e, probe = %probe.name, "not ready");
            return Err(unavailable(&probe.name));
        }
    }
    Ok(Json(Status { status: "ok" }))
}

/// What `/ready` checks.
#[derive(Debug, Clone)]
pub struct Readiness {
    db: Db,
    probes: Arc<[Probe]>,
}

/// The future a [`Probe`] runs: `Err` says why the dependency is not usable.
pub type ProbeFuture = std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One more thing `/ready` checks besides the service's database, e.g. that the broker answers.
#[derive(Clone)]
pub struct Probe {
    name: std::borrow::Cow<'static, str>,
    check: Arc<dyn Fn() -> ProbeFuture + Send + Sync>,
}

impl Probe {
    /// A check named `name` (said in the 503 when it fails, e.g. "the Kafka brokers").
    pub fn new<F, Fut>(name: impl Into<std::borrow::Cow<'static, str>>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Probe {
            name: name.into(),
            check: Arc::new(move || Box::pin(check())),
        }
    }
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe").field("name", &self.name).finish()
    }
}

/// `/health` and `/ready` for a service on `db`, `/ready` also running `probes`.
pub fn operations(db: Db, probes: &[Probe]) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(Readiness {
            db,
            probes: probes.into(),
        })
}

/// The OpenAPI document of a process without an API of its own (the relay): its health
/// checks only.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "tramline relay",
        description = "Publishes the services' outboxes; only its health checks are served."
    ),
    paths(health, ready),
    components(schemas(Status, Problem))
)]
pub struct OperationsApi;

/// What every service's API shares.
#[derive(Debug, Clone, Default)]
pub struct ApiOptions {
    /// When set, commands (every POST) require `Authorization: Bearer <token>`; reads, the
    /// OpenAPI document and the health checks stay open.
    pub bearer_token: Option<String>,
    /// What `/ready` checks besides the service's database (the broker, …).
    pub probes: Vec<Probe>,
    /// The consumers whose parked messages the listener's admin API serves (`/admin/parked`,
    /// [`admin`]); none: no admin API.
    pub parked: admin::ParkedConsumers,
}

/// A service's `routes` with its OpenAPI document at `/openapi.json`, `/health`, `/ready`, and
/// a 404 problem for any other path; commands guarded by the bearer token if one is set, their
/// bodies limited to [`idempotency::COMMAND_BODY_LIMIT`]; every request (the 404s included)
/// served in its trace context.
pub fn service(
    routes: Router,
    api: utoipa::openapi::OpenApi,
    db: Db,
    options: &ApiOptions,
) -> Router {
    let (routes, api) = match options.parked.0.is_empty() {
        true => (routes, api),
        false => (
            routes.merge(admin::routes(options.parked.clone())),
            api.merge_from(<admin::AdminApi as utoipa::OpenApi>::openapi()),
        ),
    };
    let document = serde_json::to_value(&api).expect("an OpenAPI document serialises");
    let routes = routes.layer(DefaultBodyLimit::max(idempotency::COMMAND_BODY_LIMIT));
    let routes = match &options.bearer_token {
        Some(token) => {
            let token: Arc<str> = Arc::from(token.as_str());
            routes.layer(axum::middleware::from_fn_with_state(token, require_bearer))
        }
        None => routes,
    };
    routes
        .route(
            "/openapi.json",
            get(move || std::future::ready(Json(document.clone()))),
        )
        .merge(operations(db, &options.probes))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(trace::propagate))
}

/// Refuses a command without the configured bearer token (401, `WWW-Authenticate: Bearer`).
async fn require_bearer(State(token): State<Arc<str>>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(p) if same_secret(p.as_bytes(), token.as_bytes()) => next.run(request).await,
        _ => {
            let mut response = Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "commands need a valid bearer token",
            )
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            response
        }
    }
}

/// Compares two secrets in time that does not depend on where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A listener's outer layers: every request counted and timed by service, method, route
/// template and status (`tramline_http_requests_total`,
/// `tramline_http_request_duration_seconds`), and answered 503 past `timeout`.
pub fn instrumented(service: &str, routes: Router, timeout: std::time::Duration) -> Router {
    let service: Arc<str> = Arc::from(service);
    routes
        .layer(axum::middleware::from_fn(move |r, n| {
            time_limit(timeout, r, n)
        }))
        .layer(axum::middleware::from_fn(move |r, n| {
            count_and_time(Arc::clone(&service), r, n)
        }))
}

/// Answers 503 (a problem) when a request takes longer than `limit`.
async fn time_limit(limit: std::time::Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request took longer than {} s (http.request_timeout_secs)",
                limit.as_secs()
            ),
        )
        .into_response(),
    }
}

async fn count_and_time(service: Arc<str>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [
        ("service", service.to_string()),
        ("method", method),
        ("route", route),
        ("status", status),
    ];
    metrics::counter!("tramline_http_requests_total", &labels).increment(1);
    metrics::histogram!("tramline_http_request_duration_seconds", &labels[..3])
        .record(started.elapsed().as_secs_f64());
    response
}

/// Answers any unknown route with a 404 problem.
pub async fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not-found", "no such resource")
}
