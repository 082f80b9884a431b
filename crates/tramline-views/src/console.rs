//! The web console: a page at `/` of a view's listener showing the view's rows (filtered,
//! keyset pages, one row's detail), the pipeline's health (the process's `/metrics`, drawn)
//! and the parked messages (the admin API, retried and skipped with the bearer token).
//!
//! Every asset is compiled into the binary (no CDN, no build step, no network at run time),
//! and every console response carries a strict Content-Security-Policy: scripts and styles
//! only from the listener itself, nothing inline. The page renders untrusted values (payloads,
//! addresses) as text only.
//!
//! Rows update live: the view's consumer publishes the keys each committed batch changed on a
//! [`ChangeFeed`]; `/console/live` (server-sent events) reads those rows back and sends them
//! as `rows` events, or `resync` when it fell behind (the page then reloads what it shows).
//! The streams end when the listener stops, so a shutdown never waits for an open console.

use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_util::sync::CancellationToken;
use tramline_core::changes::{ChangeFeed, ChangedKeys};
use tramline_sql::readmodel::ReadModelTable;

/// The policy on every console response: nothing but the listener's own scripts, styles and
/// requests; no inline code, no framing, no form posts.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// Most changed rows one `rows` event carries; past that the page is told to `resync`.
pub const MAX_LIVE_ROWS: usize = 200;

/// Least time between two `resync` events of one stream: a console watching a busy view
/// reloads what it shows at most this often, and the changes in between are not sent (the
/// reload shows them).
pub const RESYNC_PAUSE: Duration = Duration::from_secs(1);

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");
const ICON: &str = include_str!("console/icon.svg");

/// What the page needs to know about the view it shows (`/console/config.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsoleConfig {
    /// The page's title, e.g. `Order Status View`.
    pub title: String,
    /// The query API's collection, e.g. `/order-status`.
    pub collection: String,
    /// The JSON field holding a row's key.
    pub key: String,
    /// The table's columns.
    pub columns: Vec<Field>,
    /// The filters the collection takes, as query parameters.
    pub filters: Vec<Filter>,
    /// The row's column groups (one per source), for the detail page.
    pub groups: Vec<GroupFields>,
    /// The view's consumer group (the `group` label of its metrics).
    pub group: String,
    /// Whether the listener serves the admin API (`/admin/parked`).
    pub parked: bool,
    /// Whether commands (retry, skip) need the bearer token.
    pub auth: bool,
}

/// A field of a row and its label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Field {
    /// The JSON field.
    pub field: String,
    /// What the page calls it.
    pub label: String,
}

impl Field {
    /// Field `field`, labelled `label`.
    pub fn new(field: impl Into<String>, label: impl Into<String>) -> Self {
        Field {
            field: field.into(),
            label: label.into(),
        }
    }
}

/// A filter: a query parameter of the collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Filter {
    /// The query parameter.
    pub param: String,
    /// Its label.
    pub label: String,
    /// The values it takes, when it is a closed set (statuses); `None`: free text.
    pub options: Option<Vec<String>>,
}

/// One source's fields of a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupFields {
    /// The group's name.
    pub name: String,
    /// Its label.
    pub label: String,
    /// Its fields.
    pub fields: Vec<Field>,
    /// The field holding the version its columns are at, if the rows show it.
    pub version: Option<String>,
    /// The field holding when it last changed (ms since the epoch), if the rows show it.
    pub changed_at: Option<String>,
}

impl ConsoleConfig {
    /// The console of a declared view `name` served at `path`, consumed by `group`: every
    /// column in the table, a free-text filter per column, the declaration's groups.
    pub fn declared(name: &str, path: &str, table: &ReadModelTable, group: &str) -> Self {
        let declaration = table.declaration();
        let key = declaration.key.name.clone();
        let columns: Vec<Field> = table
            .columns()
            .into_iter()
            .map(|(column, _)| Field::new(column, column))
            .collect();
        ConsoleConfig {
            title: name.to_owned(),
            collection: path.to_owned(),
            key,
            filters: columns
                .iter()
                .skip(1)
                .map(|c| Filter {
                    param: c.field.clone(),
                    label: c.label.clone(),
                    options: None,
                })
                .collect(),
            columns,
            groups: declaration
                .groups
                .iter()
                .map(|g| GroupFields {
                    name: g.name.clone(),
                    label: g.name.clone(),
                    fields: g
                        .columns
                        .iter()
                        .map(|c| Field::new(&c.name, &c.name))
                        .collect(),
                    version: None,
                    changed_at: None,
                })
                .collect(),
            group: group.to_owned(),
            parked: false,
            auth: false,
        }
    }
}

/// The future of one row's read: the row as its API shows it, `None` if there is none.
pub type RowFuture = Pin<Box<dyn Future<Output = Result<Option<Value>, String>> + Send>>;

/// Where live rows come from: the keys a consumer changed, and how to read one row.
#[derive(Clone)]
pub struct LiveRows {
    feed: ChangeFeed,
    row: Arc<dyn Fn(String) -> RowFuture + Send + Sync>,
}

impl LiveRows {
    /// Rows changed as `feed` says, each read with `row` (the query API's own read).
    pub fn new<F, Fut>(feed: ChangeFeed, row: F) -> Self
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<Value>, String>> + Send + 'static,
    {
        LiveRows {
            feed,
            row: Arc::new(move |key| Box::pin(row(key))),
        }
    }
}

impl std::fmt::Debug for LiveRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveRows")
            .field("feed", &self.feed)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Console {
    config: Arc<ConsoleConfig>,
    live: Option<LiveRows>,
    stop: CancellationToken,
}

/// The console's routes: `/`, its assets under `/console/`, `/console/config.json` and the
/// live rows at `/console/live` (none without `live`: the stream then only keeps alive).
/// `stop` ends every live stream (cancel it when the listener stops).
pub fn router(config: ConsoleConfig, live: Option<LiveRows>, stop: CancellationToken) -> Router {
    let console = Console {
        config: Arc::new(config),
        live,
        stop,
    };
    let asset = |content_type: &'static str, body: &'static str| {
        get(move || std::future::ready(([(header::CONTENT_TYPE, content_type)], body)))
    };
    Router::new()
        .route("/", asset("text/html; charset=utf-8", INDEX))
        .route(
            "/console/console.js",
            asset("text/javascript; charset=utf-8", SCRIPT),
        )
        .route(
            "/console/console.css",
            asset("text/css; charset=utf-8", STYLE),
        )
        .route("/console/icon.svg", asset("image/svg+xml", ICON))
        .route("/console/config.json", get(config_json))
        .route("/console/live", get(live_rows))
        .with_state(console)
        .layer(axum::middleware::map_response(guarded))
}

/// The console's security headers, on every console response.
async fn guarded(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-cache"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn config_json(State(console): State<Console>) -> Json<Arc<ConsoleConfig>> {
    Json(Arc::clone(&console.config))
}

/// A live stream's state: what it waits on, and when it last told the page to resync.
struct LiveStream {
    live: Option<(LiveRows, tokio::sync::broadcast::Receiver<ChangedKeys>)>,
    stop: CancellationToken,
    last_resync: Option<tokio::time::Instant>,
}

/// What a live stream sends next.
enum Step {
    /// Changed rows.
    Rows(Vec<Value>),
    /// Too much changed: the page reloads what it shows.
    Resync,
}

async fn live_rows(
    State(console): State<Console>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let stream = LiveStream {
        live: console.live.map(|l| {
            let receiver = l.feed.subscribe();
            (l, receiver)
        }),
        stop: console.stop,
        last_resync: None,
    };
    let events = futures_util::stream::unfold(stream, |mut s| async move {
        let step = tokio::select! {
            _ = s.stop.cancelled() => return None,
            step = next_step(&mut s.live) => step?,
        };
        let event = match step {
            Step::Rows(rows) => Event::default()
                .event("rows")
                .data(Value::Array(rows).to_string()),
            Step::Resync => {
                if let Some(last) = s.last_resync {
                    tokio::select! {
                        _ = s.stop.cancelled() => return None,
                        _ = tokio::time::sleep_until(last + RESYNC_PAUSE) => {}
                    }
                }
                // What changed meanwhile is in the reload: start again from now.
                if let Some((_, receiver)) = &mut s.live {
                    *receiver = receiver.resubscribe();
                }
                s.last_resync = Some(tokio::time::Instant::now());
                Event::default().event("resync").data("{}")
            }
        };
        Some((Ok(event), s))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// What a live stream sends next: the rows of the keys changed since the last step, or
/// `resync` when more changed than one event carries (or the stream fell behind); `None` when
/// the consumer is gone. A stream without live rows waits for ever (keep-alives only).
async fn next_step(
    live: &mut Option<(LiveRows, tokio::sync::broadcast::Receiver<ChangedKeys>)>,
) -> Option<Step> {
    let Some((rows, receiver)) = live else {
        return std::future::pending().await;
    };
    let mut keys = BTreeSet::new();
    match receiver.recv().await {
        Ok(batch) => keys.extend(batch.iter().cloned()),
        Err(RecvError::Lagged(_)) => return Some(Step::Resync),
        Err(RecvError::Closed) => return None,
    }
    // Whatever else is waiting goes in the same event.
    loop {
        match receiver.try_recv() {
            Ok(batch) => keys.extend(batch.iter().cloned()),
            Err(TryRecvError::Lagged(_)) => return Some(Step::Resync),
            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
        }
        if keys.len() > MAX_LIVE_ROWS {
            return Some(Step::Resync);
        }
    }
    if keys.len() > MAX_LIVE_ROWS {
        return Some(Step::Resync);
    }
    let mut found = Vec::with_capacity(keys.len());
    for key in keys {
        match (rows.row)(key).await {
            Ok(Some(row)) => found.push(row),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not read a changed row for the console");
                return Some(Step::Resync);
            }
        }
    }
    Some(Step::Rows(found))
}
