//! The services' HTTP APIs (axum): one router per service, its OpenAPI document generated from
//! the handlers (utoipa), `/health` (the process runs) and `/ready` (its database answers).
//!
//! Every error is a problem details document ([`problem::Problem`]); a request body that does
//! not parse is a 400 or 422, never a panic or a 500. Every command (POST) honours an
//! `Idempotency-Key` ([`idempotency`]) and takes a body of at most 64 KiB; every request runs
//! in its W3C trace context ([`trace`]). The conventions are written up in docs/HTTP.md.

pub mod delivery;
pub mod idempotency;
pub mod order;
pub mod payment;
pub mod problem;
pub mod trace;
pub mod view;

use crate::services::ServiceDb;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use problem::Problem;
use serde::Serialize;
use std::sync::Arc;

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

/// Readiness: the service's database answers.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "ready", body = Status),
        (status = 503, description = "the database does not answer", body = Problem, content_type = "application/problem+json")))]
pub async fn ready(State(db): State<ServiceDb>) -> Result<Json<Status>, Problem> {
    let ping = db.db.stmt("SELECT 1");
    match db.db.fetch_i64(&ping, "ready", "ping").await {
        Ok(_) => Ok(Json(Status { status: "ok" })),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the service's database does not answer",
            ))
        }
    }
}

/// `/health` and `/ready` for a service on `db`.
pub fn operations(db: ServiceDb) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(db)
}

/// What every service's API shares.
#[derive(Debug, Clone, Default)]
pub struct ApiOptions {
    /// When set, commands (every POST) require `Authorization: Bearer <token>`; reads, the
    /// OpenAPI document and the health checks stay open.
    pub bearer_token: Option<String>,
}

/// A service's `routes` with its OpenAPI document at `/openapi.json`, `/health`, `/ready`, and
/// a 404 problem for any other path; commands guarded by the bearer token if one is set, their
/// bodies limited to [`idempotency::COMMAND_BODY_LIMIT`]; every request (the 404s included)
/// served in its trace context.
pub fn service(
    routes: Router,
    api: utoipa::openapi::OpenApi,
    db: ServiceDb,
    options: &ApiOptions,
) -> Router {
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
        .merge(operations(db))
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

/// Answers any unknown route with a 404 problem.
pub async fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not-found", "no such resource")
}
