//! MariaDB (MySQL protocol). InnoDB at the server's isolation (REPEATABLE READ unless the
//! server says otherwise); row locks, so deadlocks happen and are retried.

use crate::db::DbOptions;
use crate::SqlError;
use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError, MySqlPoolOptions};
use sqlx::{Executor, MySqlPool};
use std::str::FromStr;
use tramline_core::RetryCause;

/// Prepared statements kept per connection. The server counts them for all its clients
/// together (MariaDB refuses more than `max_prepared_stmt_count`, 16,382 by default), and
/// the stores need a few dozen shapes each.
const SERVER_STATEMENT_CACHE: usize = 128;

/// Opens a pool on a `mysql://` or `mariadb://` URL.
pub(crate) async fn connect(url: &str, options: &DbOptions) -> Result<MySqlPool, SqlError> {
    let at = SqlError::at("mariadb", "open database");
    let url = match url.strip_prefix("mariadb://") {
        Some(rest) => format!("mysql://{rest}"),
        None => url.to_owned(),
    };
    let connect = MySqlConnectOptions::from_str(&url)
        .map_err(&at)?
        .statement_cache_capacity(SERVER_STATEMENT_CACHE);
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
    let pool = MySqlPoolOptions::new()
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
        .map_err(&at)?;
    let version: String = sqlx::query_scalar("SELECT VERSION()")
        .fetch_one(&pool)
        .await
        .map_err(&at)?;
    check_version(&version).map_err(|message| {
        SqlError::new(
            "mariadb",
            "check server version",
            sqlx::Error::Configuration(message.into()),
        )
    })?;
    Ok(pool)
}

/// Refuses servers without what the stores use: `JSON_ARRAYAGG` (MariaDB 10.5, MySQL 8.0).
fn check_version(version: &str) -> Result<(), String> {
    let mut numbers = version
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    let supported = if version.contains("MariaDB") {
        (major, minor) >= (10, 5)
    } else {
        major >= 8
    };
    if supported {
        Ok(())
    } else {
        Err(format!(
            "server version {version} is too old: tramline needs MariaDB 10.5 or later (tested \
             on 10.11) or MySQL 8.0 or later"
        ))
    }
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

#[cfg(test)]
mod tests {
    use super::check_version;

    #[test]
    fn old_servers_are_refused_with_the_version_needed() {
        assert!(check_version("10.11.19-MariaDB-0+deb12u1").is_ok());
        assert!(check_version("11.4.2-MariaDB").is_ok());
        assert!(check_version("8.0.36").is_ok());
        let err = check_version("10.4.32-MariaDB").expect_err("too old");
        assert!(err.contains("MariaDB 10.5"), "{err}");
        assert!(check_version("5.7.44-log").is_err());
    }
}
