//! The services' HTTP APIs (axum): one router per service, its OpenAPI document generated from
//! the handlers (utoipa), `/health` (the process runs) and `/ready` (its database answers).
//!
//! Every error is a problem details document ([`problem::Problem`]); a request body that does
//! not parse is a 400 or 422, never a panic or a 500.

pub mod delivery;
pub mod order;
pub mod payment;
pub mod problem;
pub mod view;

use crate::services::ServiceDb;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use problem::Problem;
use serde::Serialize;

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

/// A service's `routes` with its OpenAPI document at `/openapi.json`, `/health`, `/ready`, and
/// a 404 problem for any other path.
pub fn service(routes: Router, api: utoipa::openapi::OpenApi, db: ServiceDb) -> Router {
    let document = serde_json::to_value(&api).expect("an OpenAPI document serialises");
    routes
        .route(
            "/openapi.json",
            get(move || std::future::ready(Json(document.clone()))),
        )
        .merge(operations(db))
        .fallback(not_found)
}

/// Answers any unknown route with a 404 problem.
pub async fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not-found", "no such resource")
}
