//! The Order Status View's query API: one order's row, and a filtered, keyset-paginated list;
//! and what the web console needs to show it ([`console_config`], [`live_rows`]).

use super::problem::Problem;
use crate::domain::delivery::DeliveryStatus;
use crate::domain::order::OrderStatus;
use crate::domain::payment::PaymentStatus;
use crate::view::{OrderStatusDetail, OrderStatusQuery, OrderStatusRow, StatusFilter};
use crate::OrderSystemError;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tramline_core::changes::ChangeFeed;
use tramline_views::console::{ConsoleConfig, Field, Filter, GroupFields, LiveRows};
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
        OrderStatusDetail,
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
        (status = 200, description = "the order's row, with when each source last changed it", body = OrderStatusDetail),
        (status = 404, description = "the view has no row for this order (yet)", body = Problem, content_type = "application/problem+json")))]
pub async fn get_order_status(
    State(view): State<OrderStatusQuery>,
    Path(order_id): Path<String>,
) -> Result<Json<OrderStatusDetail>, Problem> {
    match view.detail(&order_id).await? {
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

/// The web console's description of the Order Status View ([`tramline_views::console`]):
/// its table, status filters, the three sources with their versions and change times, the
/// consumer `group` whose metrics it draws; `parked` when the listener serves the admin API,
/// `auth` when its commands need the bearer token.
pub fn console_config(group: &str, parked: bool, auth: bool) -> ConsoleConfig {
    let options = |all: Vec<&'static str>| Some(all.into_iter().map(str::to_owned).collect());
    let status = |param: &str, label: &str, all| Filter {
        param: param.into(),
        label: label.into(),
        options: options(all),
    };
    let group_of = |name: &str, label: &str, fields: &[(&str, &str)]| GroupFields {
        name: name.into(),
        label: label.into(),
        fields: fields.iter().map(|(f, l)| Field::new(*f, *l)).collect(),
        version: Some(format!("{name}Version")),
        changed_at: Some(format!("{name}ChangedAt")),
    };
    ConsoleConfig {
        title: "Order Status View".into(),
        collection: "/order-status".into(),
        key: "orderId".into(),
        columns: [
            ("orderId", "Order"),
            ("orderStatus", "Order status"),
            ("customerId", "Customer"),
            ("amountCents", "Amount (cents)"),
            ("paymentStatus", "Payment"),
            ("deliveryStatus", "Delivery"),
        ]
        .into_iter()
        .map(|(f, l)| Field::new(f, l))
        .collect(),
        filters: vec![
            status(
                "orderStatus",
                "Order status",
                OrderStatus::ALL.iter().map(|s| s.as_str()).collect(),
            ),
            status(
                "paymentStatus",
                "Payment status",
                PaymentStatus::ALL.iter().map(|s| s.as_str()).collect(),
            ),
            status(
                "deliveryStatus",
                "Delivery status",
                DeliveryStatus::ALL.iter().map(|s| s.as_str()).collect(),
            ),
            Filter {
                param: "customerId".into(),
                label: "Customer".into(),
                options: None,
            },
        ],
        groups: vec![
            group_of(
                "order",
                "Order",
                &[
                    ("orderStatus", "Status"),
                    ("customerId", "Customer"),
                    ("productId", "Product"),
                    ("quantity", "Quantity"),
                    ("amountCents", "Amount (cents)"),
                    ("shippingAddress", "Shipping address"),
                ],
            ),
            group_of(
                "payment",
                "Payment",
                &[("paymentId", "Payment id"), ("paymentStatus", "Status")],
            ),
            group_of(
                "delivery",
                "Delivery",
                &[("deliveryId", "Delivery id"), ("deliveryStatus", "Status")],
            ),
        ],
        group: group.into(),
        parked,
        auth,
    }
}

/// The view's live rows for the console: the keys `feed` says changed, read as
/// `GET /order-status/{id}` shows them.
pub fn live_rows(view: OrderStatusQuery, feed: ChangeFeed) -> LiveRows {
    LiveRows::new(feed, move |order_id| {
        let view = view.clone();
        async move {
            let detail = view
                .detail(&order_id)
                .await
                .map_err(|e| tramline_core::error::sentence(&e))?;
            detail
                .map(|d| serde_json::to_value(d).map_err(|e| e.to_string()))
                .transpose()
        }
    })
}
