//! The order service's API: place, read and cancel orders.

use super::idempotency::{idempotent, IdempotencyKey};
use super::problem::Problem;
use crate::domain::order::{CreateOrder, Order, OrderStatus};
use crate::events::DomainEvent;
use crate::services::order::OrderService;
use crate::services::request::Reply;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use utoipa::OpenApi;

/// The order service's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "tramline order service",
        description = "Place, read and cancel orders."
    ),
    paths(create_order, get_order, cancel_order, super::health, super::ready),
    components(schemas(CreateOrder, Order, OrderStatus, Problem, super::Status))
)]
pub struct OrderApi;

/// Places an order (PENDING); its `OrderCreated` event is published through the outbox.
#[utoipa::path(post, path = "/orders", tag = "orders", request_body = CreateOrder,
    params(IdempotencyKey),
    responses(
        (status = 201, description = "placed; Location names it", body = Order,
            headers(
                ("Location" = String, description = "/orders/{orderId}"),
                ("Idempotent-Replayed" = String, description = "`true` on a replayed response"))),
        (status = 400, description = "malformed body or Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "a request with the same Idempotency-Key is in progress", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "a body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid values, or the Idempotency-Key was used with another request", body = Problem, content_type = "application/problem+json")))]
pub async fn create_order(
    State(orders): State<OrderService>,
    body: Result<Json<CreateOrder>, JsonRejection>,
) -> Result<impl IntoResponse, Problem> {
    let Json(cmd) = body?;
    let order = orders.create(cmd).await?;
    let location = location(&order.order_id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(order),
    ))
}

/// Reads an order.
#[utoipa::path(get, path = "/orders/{id}", tag = "orders",
    params(("id" = String, Path, description = "the order id")),
    responses(
        (status = 200, description = "the order", body = Order),
        (status = 404, description = "no such order", body = Problem, content_type = "application/problem+json")))]
pub async fn get_order(
    State(orders): State<OrderService>,
    Path(id): Path<String>,
) -> Result<Json<Order>, Problem> {
    Ok(Json(orders.get(&id).await?))
}

/// Where a placed order is read: its `Location`.
fn location(order_id: &str) -> String {
    format!("/orders/{order_id}")
}

/// The `Location` of the order an `OrderCreated` event placed, for a replayed 201.
fn placed_location(event: &DomainEvent) -> String {
    location(event.order_id())
}

/// Cancels a PENDING order.
#[utoipa::path(post, path = "/orders/{id}/cancel", tag = "orders",
    params(("id" = String, Path, description = "the order id"), IdempotencyKey),
    responses(
        (status = 200, description = "cancelled", body = Order,
            headers(("Idempotent-Replayed" = String, description = "`true` on a replayed response"))),
        (status = 400, description = "malformed Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such order", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the order is no longer PENDING, or a request with the same Idempotency-Key is in progress", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "a body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "the Idempotency-Key was used with another request", body = Problem, content_type = "application/problem+json")))]
pub async fn cancel_order(
    State(orders): State<OrderService>,
    Path(id): Path<String>,
) -> Result<Json<Order>, Problem> {
    Ok(Json(orders.cancel(&id).await?))
}

/// The order service's routes, its `/openapi.json`, `/health` and `/ready`. Each command
/// route declares its success answer ([`Reply`]) for the idempotency records.
pub fn router(orders: OrderService, options: &super::ApiOptions) -> Router {
    let db = orders.db().clone();
    let routes = Router::new()
        .route(
            "/orders",
            idempotent(post(create_order), &db, Reply::created(placed_location)),
        )
        .route("/orders/{id}", get(get_order))
        .route(
            "/orders/{id}/cancel",
            idempotent(post(cancel_order), &db, Reply::OK),
        )
        .with_state(orders);
    super::service(routes, OrderApi::openapi(), db.db, options)
}
