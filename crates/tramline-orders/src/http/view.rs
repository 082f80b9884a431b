//! The Order Status View's query API: one order's row, and a filtered, keyset-paginated list.

use super::problem::Problem;
use crate::domain::delivery::DeliveryStatus;
use crate::domain::order::OrderStatus;
use crate::domain::payment::PaymentStatus;
use crate::view::{OrderStatusQuery, OrderStatusRow, StatusFilter};
use crate::OrderSystemError;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;

/// Most rows one page returns.
pub const MAX_LIMIT: u32 = 1000;

/// The view's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "tramline Order Status View",
        description = "One denormalized row per order: the order, its payment and its delivery."
    ),
    paths(get_order_status, list_order_status, super::health, super::ready),
    components(schemas(
        OrderStatusRow,
        OrderStatusPage,
        OrderStatus,
        PaymentStatus,
        DeliveryStatus,
        Problem,
        super::Status
    ))
)]
pub struct ViewApi;

/// Filters and page of `GET /order-status`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only orders in this status.
    order_status: Option<OrderStatus>,
    /// Only orders whose payment is in this status.
    payment_status: Option<PaymentStatus>,
    /// Only orders whose delivery is in this status.
    delivery_status: Option<DeliveryStatus>,
    /// Only this customer's orders.
    customer_id: Option<String>,
    /// The `next` cursor of the previous page; the first page without it.
    after: Option<String>,
    /// Rows per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// One page of rows, in order id order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrderStatusPage {
    /// The rows.
    pub items: Vec<OrderStatusRow>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// One order's row.
#[utoipa::path(get, path = "/order-status/{order_id}", tag = "order-status",
    params(("order_id" = String, Path, description = "the order id")),
    responses(
        (status = 200, description = "the order's row", body = OrderStatusRow),
        (status = 404, description = "the view has no row for this order (yet)", body = Problem, content_type = "application/problem+json")))]
pub async fn get_order_status(
    State(view): State<OrderStatusQuery>,
    Path(order_id): Path<String>,
) -> Result<Json<OrderStatusRow>, Problem> {
    match view.get(&order_id).await? {
        Some(row) => Ok(Json(row)),
        None => Err(OrderSystemError::NotFound {
            entity: "order status of order",
            id: order_id,
        }
        .into()),
    }
}

/// Rows matching the filters, a page at a time.
#[utoipa::path(get, path = "/order-status", tag = "order-status", params(ListParams),
    responses(
        (status = 200, description = "one page", body = OrderStatusPage),
        (status = 400, description = "an unknown parameter or a value of the wrong type", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a limit out of range", body = Problem, content_type = "application/problem+json")))]
pub async fn list_order_status(
    State(view): State<OrderStatusQuery>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<OrderStatusPage>, Problem> {
    let Query(params) =
        params.map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "malformed", e.body_text()))?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(OrderSystemError::Invalid {
            field: "limit",
            reason: format!("must be between 1 and {MAX_LIMIT}, got {limit}"),
        }
        .into());
    }
    let filter = StatusFilter {
        order_status: params.order_status.map(|s| s.as_str().to_owned()),
        payment_status: params.payment_status.map(|s| s.as_str().to_owned()),
        delivery_status: params.delivery_status.map(|s| s.as_str().to_owned()),
        customer_id: params.customer_id,
    };
    let items = view
        .search(&filter, params.after.as_deref().unwrap_or(""), limit)
        .await?;
    let next = (items.len() == limit as usize)
        .then(|| items.last().map(|r| r.order_id.clone()))
        .flatten();
    Ok(Json(OrderStatusPage { items, next }))
}

/// The view's routes, its `/openapi.json`, `/health` and `/ready`.
pub fn router(view: OrderStatusQuery, options: &super::ApiOptions) -> Router {
    let db = view.db().clone();
    let routes = Router::new()
        .route("/order-status", get(list_order_status))
        .route("/order-status/{order_id}", get(get_order_status))
        .with_state(view);
    super::service(routes, ViewApi::openapi(), db.db, options)
}
