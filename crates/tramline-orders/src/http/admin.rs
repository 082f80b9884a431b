//! The admin API of a listener whose process runs consumers: their parked messages, listed,
//! shown, retried and skipped — the operations of `tramline parked` (docs/OPERATIONS.md).
//! Reads are open; retry and skip are commands, so they need the bearer token when one is
//! configured. They are idempotent by nature (a message released already answers 404), so
//! they take no `Idempotency-Key`.

use super::problem::Problem;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tramline_sql::parked::{self, ParkedError, ParkedFilter, ParkedMessage, ParkedOps, Released};

/// Most parked messages one page returns.
pub const MAX_LIMIT: i64 = 1000;

/// The consumers whose parked messages a listener serves (all in one database).
#[derive(Clone, Default)]
pub struct ParkedConsumers(pub Vec<Arc<dyn ParkedOps>>);

impl std::fmt::Debug for ParkedConsumers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|c| c.consumer()).collect();
        f.debug_tuple("ParkedConsumers").field(&names).finish()
    }
}

/// The admin API's OpenAPI document, merged into each listener's that serves it.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list_parked, get_parked, retry_parked, skip_parked),
    components(schemas(Parked, ParkedPage, ReleasedMessages, Problem))
)]
pub struct AdminApi;

/// A parked message.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Parked {
    /// Its number in this service's database.
    pub id: i64,
    /// The consumer group that parked it.
    pub consumer: String,
    /// The message id.
    pub message_id: String,
    /// The topic it was read from.
    pub topic: String,
    /// Its partition.
    pub partition: i64,
    /// Its offset.
    pub offset: i64,
    /// Its key (an order id).
    pub key: String,
    /// Its headers, a JSON object as text.
    pub headers: String,
    /// Its payload as received: untrusted input.
    pub payload: String,
    /// Why it was parked.
    pub reason: String,
    /// When it was parked (ms since the Unix epoch).
    pub parked_at: i64,
    /// Whether it waits behind an earlier parked message of its key rather than failed itself.
    pub held: bool,
}

impl From<ParkedMessage> for Parked {
    fn from(m: ParkedMessage) -> Self {
        Parked {
            id: m.id,
            consumer: m.consumer,
            message_id: m.message_id,
            topic: m.topic,
            partition: m.partition,
            offset: m.offset,
            key: m.key,
            headers: m.headers,
            payload: m.payload,
            reason: m.reason,
            parked_at: m.parked_at,
            held: m.held,
        }
    }
}

/// One page of parked messages, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ParkedPage {
    /// The messages.
    pub items: Vec<Parked>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
}

/// What a retry or a skip did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleasedMessages {
    /// Parked messages applied now, by number.
    pub applied: Vec<i64>,
    /// Parked messages found applied before and removed.
    pub duplicates: Vec<i64>,
    /// The message skipped, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<i64>,
    /// The message that failed again and stays parked, holding its key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub still_parked: Option<i64>,
    /// Its new error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl From<Released> for ReleasedMessages {
    fn from(r: Released) -> Self {
        let (still_parked, reason) = r
            .still_parked
            .map_or((None, None), |(id, e)| (Some(id), Some(e)));
        ReleasedMessages {
            applied: r.applied,
            duplicates: r.duplicates,
            skipped: r.skipped,
            still_parked,
            reason,
        }
    }
}

/// Filters and page of `GET /admin/parked`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ParkedParams {
    /// Only this consumer group's.
    consumer: Option<String>,
    /// Only this key's.
    key: Option<String>,
    /// The `next` of the previous page; the first page without it.
    after: Option<i64>,
    /// Messages per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// Parked messages, oldest first, a page at a time.
#[utoipa::path(get, path = "/admin/parked", tag = "admin", params(ParkedParams),
    responses(
        (status = 200, description = "one page", body = ParkedPage),
        (status = 400, description = "an unknown parameter or a value of the wrong type", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a limit out of range", body = Problem, content_type = "application/problem+json")))]
pub async fn list_parked(
    State(consumers): State<ParkedConsumers>,
    params: Result<Query<ParkedParams>, QueryRejection>,
) -> Result<Json<ParkedPage>, Problem> {
    let Query(params) =
        params.map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "malformed", e.body_text()))?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("limit must be between 1 and {MAX_LIMIT}, got {limit}"),
        ));
    }
    let Some(db) = consumers.0.first().map(|c| c.db().clone()) else {
        return Ok(Json(ParkedPage {
            items: Vec::new(),
            next: None,
        }));
    };
    let filter = ParkedFilter {
        consumer: params.consumer,
        key: params.key,
        after: params.after,
        limit: Some(limit),
    };
    let items: Vec<Parked> = parked::list(&db, &filter)
        .await
        .map_err(|e| unavailable(&e))?
        .into_iter()
        .map(Parked::from)
        .collect();
    let next = (items.len() as i64 == limit)
        .then(|| items.last().map(|m| m.id))
        .flatten();
    Ok(Json(ParkedPage { items, next }))
}

/// One parked message, with its payload, headers and error.
#[utoipa::path(get, path = "/admin/parked/{id}", tag = "admin",
    params(("id" = i64, Path, description = "the parked message's number")),
    responses(
        (status = 200, description = "the message", body = Parked),
        (status = 400, description = "not a number", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such parked message", body = Problem, content_type = "application/problem+json")))]
pub async fn get_parked(
    State(consumers): State<ParkedConsumers>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<Parked>, Problem> {
    let id = number(id)?;
    let found = match consumers.0.first() {
        Some(c) => parked::get(c.db(), id).await.map_err(|e| unavailable(&e))?,
        None => None,
    };
    found
        .map(|m| Json(Parked::from(m)))
        .ok_or_else(|| not_found(id))
}

/// Applies a parked message again once its cause is fixed — and, when it holds its key, the
/// messages held behind it, in order — each with its dedupe record, until one fails again.
#[utoipa::path(post, path = "/admin/parked/{id}/retry", tag = "admin",
    params(("id" = i64, Path, description = "the parked message's number")),
    responses(
        (status = 200, description = "what was applied; `stillParked` names a message that failed again", body = ReleasedMessages),
        (status = 400, description = "not a number", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "a bearer token is configured and this request has none or another", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such parked message", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "the database failed; nothing changed for the message", body = Problem, content_type = "application/problem+json")))]
pub async fn retry_parked(
    State(consumers): State<ParkedConsumers>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<ReleasedMessages>, Problem> {
    let id = number(id)?;
    let ops = owner(&consumers, id).await?;
    let released = ops.retry(id).await.map_err(|e| problem(id, &e))?;
    Ok(Json(released.into()))
}

/// Records a parked message handled without applying it (the first of its key's), then
/// applies the messages held behind it.
#[utoipa::path(post, path = "/admin/parked/{id}/skip", tag = "admin",
    params(("id" = i64, Path, description = "the parked message's number")),
    responses(
        (status = 200, description = "skipped, and what was released behind it", body = ReleasedMessages),
        (status = 400, description = "not a number", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "a bearer token is configured and this request has none or another", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such parked message", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the message is held behind an earlier one of its key", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "the database failed; nothing changed for the message", body = Problem, content_type = "application/problem+json")))]
pub async fn skip_parked(
    State(consumers): State<ParkedConsumers>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<ReleasedMessages>, Problem> {
    let id = number(id)?;
    let ops = owner(&consumers, id).await?;
    let released = ops.skip(id).await.map_err(|e| problem(id, &e))?;
    Ok(Json(released.into()))
}

/// The consumer that parked message `id`.
async fn owner(consumers: &ParkedConsumers, id: i64) -> Result<Arc<dyn ParkedOps>, Problem> {
    let Some(first) = consumers.0.first() else {
        return Err(not_found(id));
    };
    let message = parked::get(first.db(), id)
        .await
        .map_err(|e| unavailable(&e))?
        .ok_or_else(|| not_found(id))?;
    consumers
        .0
        .iter()
        .find(|c| c.consumer() == message.consumer)
        .cloned()
        .ok_or_else(|| not_found(id))
}

fn number(id: Result<Path<i64>, PathRejection>) -> Result<i64, Problem> {
    id.map(|Path(id)| id)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "malformed", e.body_text()))
}

fn not_found(id: i64) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not-found",
        format!("no parked message {id}"),
    )
}

fn unavailable(e: &dyn std::error::Error) -> Problem {
    tracing::warn!(error = %tramline_core::error::sentence(e), "parked messages unavailable");
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the parked messages cannot be read or changed now",
    )
}

fn problem(id: i64, e: &ParkedError) -> Problem {
    match e {
        ParkedError::NotFound(_) | ParkedError::OtherConsumer { .. } => not_found(id),
        ParkedError::NotFirst { .. } => Problem::new(StatusCode::CONFLICT, "held", e.to_string()),
        _ => unavailable(e),
    }
}

/// The admin routes over `consumers`.
pub fn routes(consumers: ParkedConsumers) -> Router {
    Router::new()
        .route("/admin/parked", get(list_parked))
        .route("/admin/parked/{id}", get(get_parked))
        .route("/admin/parked/{id}/retry", post(retry_parked))
        .route("/admin/parked/{id}/skip", post(skip_parked))
        .with_state(consumers)
}
