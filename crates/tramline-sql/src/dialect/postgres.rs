//! PostgreSQL at READ COMMITTED (its default); row locks, so deadlocks happen and are retried.

use crate::db::DbOptions;
use crate::SqlError;
use sqlx::postgres::{PgConnectOptions, PgDatabaseError, PgPoolOptions};
use sqlx::PgPool;
use std::str::FromStr;
use tramline_core::RetryCause;

/// Prepared statements kept per connection. The server counts them for all its clients
/// together (MariaDB refuses more than `max_prepared_stmt_count`, 16,382 by default), and
/// the stores need a few dozen shapes each.
const SERVER_STATEMENT_CACHE: usize = 128;

/// Opens a pool on a `postgres://` or `postgresql://` URL (a `search_path` may come with it
/// as `?options=-c search_path=…`).
pub(crate) async fn connect(url: &str, options: &DbOptions) -> Result<PgPool, SqlError> {
    let at = SqlError::at("postgres", "open database");
    let mut connect = PgConnectOptions::from_str(url)
        .map_err(&at)?
        .statement_cache_capacity(SERVER_STATEMENT_CACHE);
    if !options.statement_timeout.is_zero() {
        connect = connect.options([(
            "statement_timeout",
            format!("{}ms", options.statement_timeout.as_millis()),
        )]);
    }
    connect = connect.options([
        (
            "lock_timeout",
            format!("{}ms", options.lock_timeout.as_millis().max(1)),
        ),
        // Plan every execution with the table's current size. A generic plan cached while a
        // store's table was nearly empty (a sequential scan is cheapest then) would otherwise
        // stick as the table grows, turning each inbox look-up into a scan of the table.
        ("plan_cache_mode", "force_custom_plan".to_owned()),
    ]);
    PgPoolOptions::new()
        .max_connections(options.max_connections.unwrap_or(8).max(1))
        .acquire_timeout(options.acquire_timeout)
        .connect_with(connect)
        .await
        .map_err(at)
}

/// Why a PostgreSQL error may pass on a retry, by SQLSTATE.
pub(crate) fn retry_cause(e: &PgDatabaseError) -> Option<RetryCause> {
    match e.code() {
        "40P01" => Some(RetryCause::Deadlock),
        "40001" => Some(RetryCause::Serialization),
        // lock_not_available (lock_timeout), query_canceled (statement_timeout).
        "55P03" | "57014" => Some(RetryCause::Timeout),
        // Connection exceptions and the server shutting down.
        c if c.starts_with("08") || c.starts_with("57P") => Some(RetryCause::Connection),
        _ => None,
    }
}
