//! The delivery service's API: start, complete and read deliveries (a delivery is created by
//! the service itself when it sees `PaymentApproved`).

use super::idempotency::{idempotent, IdempotencyKey};
use super::problem::Problem;
use crate::domain::delivery::{Delivery, DeliveryStatus};
use crate::services::delivery::DeliveryService;
use crate::services::request::Reply;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use utoipa::OpenApi;

/// The delivery service's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "tramline delivery service",
        description = "Start, complete and read deliveries."
    ),
    paths(
        start_delivery,
        complete_delivery,
        get_delivery,
        super::health,
        super::ready
    ),
    components(schemas(Delivery, DeliveryStatus, Problem, super::Status))
)]
pub struct DeliveryApi;

/// Starts a READY delivery (picked up).
#[utoipa::path(post, path = "/deliveries/{id}/start", tag = "deliveries",
    params(("id" = String, Path, description = "the delivery id"), IdempotencyKey),
    responses(
        (status = 200, description = "started", body = Delivery,
            headers(("Idempotent-Replayed" = String, description = "`true` on a replayed response"))),
        (status = 400, description = "malformed Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such delivery", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the delivery is not READY, or a request with the same Idempotency-Key is in progress", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "a body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "the Idempotency-Key was used with another request", body = Problem, content_type = "application/problem+json")))]
pub async fn start_delivery(
    State(deliveries): State<DeliveryService>,
    Path(id): Path<String>,
) -> Result<Json<Delivery>, Problem> {
    Ok(Json(deliveries.start(&id).await?))
}

/// Completes a started delivery (delivered).
#[utoipa::path(post, path = "/deliveries/{id}/complete", tag = "deliveries",
    params(("id" = String, Path, description = "the delivery id"), IdempotencyKey),
    responses(
        (status = 200, description = "completed", body = Delivery,
            headers(("Idempotent-Replayed" = String, description = "`true` on a replayed response"))),
        (status = 400, description = "malformed Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such delivery", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the delivery is not started, or a request with the same Idempotency-Key is in progress", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "a body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "the Idempotency-Key was used with another request", body = Problem, content_type = "application/problem+json")))]
pub async fn complete_delivery(
    State(deliveries): State<DeliveryService>,
    Path(id): Path<String>,
) -> Result<Json<Delivery>, Problem> {
    Ok(Json(deliveries.complete(&id).await?))
}

/// Reads a delivery.
#[utoipa::path(get, path = "/deliveries/{id}", tag = "deliveries",
    params(("id" = String, Path, description = "the delivery id")),
    responses(
        (status = 200, description = "the delivery", body = Delivery),
        (status = 404, description = "no such delivery", body = Problem, content_type = "application/problem+json")))]
pub async fn get_delivery(
    State(deliveries): State<DeliveryService>,
    Path(id): Path<String>,
) -> Result<Json<Delivery>, Problem> {
    Ok(Json(deliveries.get(&id).await?))
}

/// The delivery service's routes, its `/openapi.json`, `/health` and `/ready`; both commands
/// answer 200 with the changed delivery (recorded with an `Idempotency-Key`).
pub fn router(deliveries: DeliveryService, options: &super::ApiOptions) -> Router {
    let db = deliveries.db().clone();
    let routes = Router::new()
        .route("/deliveries/{id}", get(get_delivery))
        .route(
            "/deliveries/{id}/start",
            idempotent(post(start_delivery), &db, Reply::OK),
        )
        .route(
            "/deliveries/{id}/complete",
            idempotent(post(complete_delivery), &db, Reply::OK),
        )
        .with_state(deliveries);
    super::service(routes, DeliveryApi::openapi(), db.db, options)
}
