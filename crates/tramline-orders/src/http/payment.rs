//! The payment service's API: approve, reject and read payments (a payment is created by the
//! service itself when it sees `OrderCreated`).

use super::idempotency::{idempotent, IdempotencyKey};
use super::problem::Problem;
use crate::domain::payment::{Payment, PaymentStatus};
use crate::services::payment::PaymentService;
use crate::services::request::Reply;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use utoipa::OpenApi;

/// The payment service's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "tramline payment service",
        description = "Approve, reject and read payments."
    ),
    paths(
        approve_payment,
        reject_payment,
        get_payment,
        super::health,
        super::ready
    ),
    components(schemas(Payment, PaymentStatus, Problem, super::Status))
)]
pub struct PaymentApi;

/// Approves a PENDING payment.
#[utoipa::path(post, path = "/payments/{id}/approve", tag = "payments",
    params(("id" = String, Path, description = "the payment id"), IdempotencyKey),
    responses(
        (status = 200, description = "approved", body = Payment,
            headers(("Idempotent-Replayed" = String, description = "`true` on a replayed response"))),
        (status = 400, description = "malformed Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such payment", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the payment is no longer PENDING, or a request with the same Idempotency-Key is in progress", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "a body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "the Idempotency-Key was used with another request", body = Problem, content_type = "application/problem+json")))]
pub async fn approve_payment(
    State(payments): State<PaymentService>,
    Path(id): Path<String>,
) -> Result<Json<Payment>, Problem> {
    Ok(Json(payments.approve(&id).await?))
}

/// Rejects a PENDING payment.
#[utoipa::path(post, path = "/payments/{id}/reject", tag = "payments",
    params(("id" = String, Path, description = "the payment id"), IdempotencyKey),
    responses(
        (status = 200, description = "rejected", body = Payment,
            headers(("Idempotent-Replayed" = String, description = "`true` on a replayed response"))),
        (status = 400, description = "malformed Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such payment", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the payment is no longer PENDING, or a request with the same Idempotency-Key is in progress", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "a body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "the Idempotency-Key was used with another request", body = Problem, content_type = "application/problem+json")))]
pub async fn reject_payment(
    State(payments): State<PaymentService>,
    Path(id): Path<String>,
) -> Result<Json<Payment>, Problem> {
    Ok(Json(payments.reject(&id).await?))
}

/// Reads a payment.
#[utoipa::path(get, path = "/payments/{id}", tag = "payments",
    params(("id" = String, Path, description = "the payment id")),
    responses(
        (status = 200, description = "the payment", body = Payment),
        (status = 404, description = "no such payment", body = Problem, content_type = "application/problem+json")))]
pub async fn get_payment(
    State(payments): State<PaymentService>,
    Path(id): Path<String>,
) -> Result<Json<Payment>, Problem> {
    Ok(Json(payments.get(&id).await?))
}

/// The payment service's routes, its `/openapi.json`, `/health` and `/ready`; both commands
/// answer 200 with the changed payment (recorded with an `Idempotency-Key`).
pub fn router(payments: PaymentService, options: &super::ApiOptions) -> Router {
    let db = payments.db().clone();
    let routes = Router::new()
        .route("/payments/{id}", get(get_payment))
        .route(
            "/payments/{id}/approve",
            idempotent(post(approve_payment), &db, Reply::OK),
        )
        .route(
            "/payments/{id}/reject",
            idempotent(post(reject_payment), &db, Reply::OK),
        )
        .with_state(payments);
    super::service(routes, PaymentApi::openapi(), db.db, options)
}
