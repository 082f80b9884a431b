//! MariaDB (MySQL protocol). InnoDB at the server's isolation (REPEATABLE READ unless the
//! server says otherwise); row locks, so deadlocks happen and are retried.

use crate::db::DbOptions;
use crate::dialect::sqlite::STATEMENT_CACHE;
use crate::SqlError;
use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError, MySqlPoolOptions};
use sqlx::{Executor, MySqlPool};
use std::str::FromStr;
use tramline_core::RetryCause;

/// Opens a pool on a `mysql://` or `mariadb://` URL.
pub(crate) async fn connect(url: &str, options: &DbOptions) -> Result<MySqlPool, SqlError> {
    let at = SqlError::at("mariadb", "open database");
    let url = match url.strip_prefix("mariadb://") {
        Some(rest) => format!("mysql://{rest}"),
        None => url.to_owned(),
    };
    let connect = MySqlConnectOptions::from_str(&url)
        .map_err(&at)?
        .statement_cache_capacity(STATEMENT_CACHE);
    // Per session: folded JSON results are built with GROUP_CONCAT's machinery and cut at
    // group_concat_max_len (1 MiB by default) without an error, so it is raised well past
    // any batch; statement and lock-wait limits come from the options.
    let mut session = "SET SESSION group_concat_max_len = 1073741824".to_owned();
    if !options.statement_timeout.is_zero() {
        session.push_str(&format!(
            ", max_statement_time = {}",
            options.statement_timeout.as_secs_f64()
        ));
    }
    session.push_str(&format!(
        ", innodb_lock_wait_timeout = {}",
        options.lock_timeout.as_secs().max(1)
    ));
    MySqlPoolOptions::new()
        .max_connections(options.max_connections.unwrap_or(8).max(1))
        .acquire_timeout(options.acquire_timeout)
        .after_connect(move |conn, _| {
            let session = session.clone();
            Box::pin(async move {
                conn.execute(session.as_str()).await?;
                Ok(())
            })
        })
        .connect_with(connect)
        .await
        .map_err(at)
}

/// MariaDB error numbers worth a retry.
const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;
const ER_LOCK_DEADLOCK: u16 = 1213;
const ER_STATEMENT_TIMEOUT: u16 = 1969;

/// Why a MariaDB error may pass on a retry.
pub(crate) fn retry_cause(e: &MySqlDatabaseError) -> Option<RetryCause> {
    match e.number() {
        ER_LOCK_DEADLOCK => Some(RetryCause::Deadlock),
        ER_LOCK_WAIT_TIMEOUT | ER_STATEMENT_TIMEOUT => Some(RetryCause::Timeout),
        _ => None,
    }
}
