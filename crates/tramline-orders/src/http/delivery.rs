//! The delivery service's API: start, complete and read deliveries (a delivery is created by
//! the service itself when it sees `PaymentApproved`).

use super::problem::Problem;
use crate::domain::delivery::{Delivery, DeliveryStatus};
use crate::services::delivery::DeliveryService;
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
    params(("id" = String, Path, description = "the delivery id")),
    responses(
        (status = 200, description = "started", body = Delivery),
        (status = 404, description = "no such delivery", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the delivery is not READY", body = Problem, content_type = "application/problem+json")))]
pub async fn start_delivery(
    State(deliveries): State<DeliveryService>,
    Path(id): Path<String>,
) -> Result<Json<Delivery>, Problem> {
    Ok(Json(deliveries.start(&id).await?))
}

/// Completes a started delivery (delivered).
#[utoipa::path(post, path = "/deliveries/{id}/complete", tag = "deliveries",
    params(("id" = String, Path, description = "the delivery id")),
    responses(
        (status = 200, description = "completed", body = Delivery),
        (status = 404, description = "no such delivery", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the delivery is not started", body = Problem, content_type = "application/problem+json")))]
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

/// The delivery service's routes, its `/openapi.json`, `/health` and `/ready`.
pub fn router(deliveries: DeliveryService, options: &super::ApiOptions) -> Router {
    let db = deliveries.db().clone();
    let routes = Router::new()
        .route("/deliveries/{id}", get(get_delivery))
        .route("/deliveries/{id}/start", post(start_delivery))
        .route("/deliveries/{id}/complete", post(complete_delivery))
        .with_state(deliveries);
    super::service(routes, DeliveryApi::openapi(), db, options)
}
