//! SQLite: the embedded default, one file per store, WAL mode.

use crate::db::DbOptions;
use crate::SqlError;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteError, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::SqlitePool;
use std::str::FromStr;
use tramline_core::RetryCause;

/// Prepared statements kept per connection. Multi-row statements differ by their row count,
/// so a store uses a few hundred distinct statements; re-preparing costs more than keeping.
pub(crate) const STATEMENT_CACHE: usize = 1024;

/// Opens the file a `sqlite://` URL names: the writers' pool (created if missing), or a
/// read-only pool whose connections never compete with the writer for the lock.
pub(crate) async fn connect(
    url: &str,
    options: &DbOptions,
    read_only: bool,
) -> Result<SqlitePool, SqlError> {
    let at = SqlError::at("sqlite", "open database");
    let connect = SqliteConnectOptions::from_str(url)
        .map_err(&at)?
        .create_if_missing(!read_only)
        .read_only(read_only)
        .journal_mode(SqliteJournalMode::Wal)
        // NORMAL in WAL mode: a commit survives a process crash; only an OS crash or power
        // loss may roll back the last transactions, never corrupt the file.
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(options.busy_timeout)
        .foreign_keys(true)
        .statement_cache_capacity(STATEMENT_CACHE)
        // Checkpoint every 32 MiB of WAL instead of 4: hot pages (log ends, inbox and outbox
        // tails) are written back once per checkpoint rather than a thousand times.
        .pragma("wal_autocheckpoint", "8192")
        .pragma("temp_store", "memory")
        .pragma("cache_size", "-4096");
    let size = if read_only {
        options.readers
    } else {
        options.max_connections.unwrap_or(1)
    };
    let pool = SqlitePoolOptions::new()
        .max_connections(size.max(1))
        .acquire_timeout(options.acquire_timeout);
    if read_only {
        // Readers connect on first use: most stores never read outside a write transaction.
        Ok(pool.connect_lazy_with(connect))
    } else {
        // Turning a new file to WAL needs it alone: when several processes open one fresh
        // file at once, SQLite answers "busy" at once instead of waiting; wait and retry.
        let mut attempt = 0;
        loop {
            match pool.clone().connect_with(connect.clone()).await {
                Err(sqlx::Error::Database(e))
                    if attempt < 50
                        && e.try_downcast_ref::<SqliteError>()
                            .and_then(retry_cause)
                            .is_some() =>
                {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                opened => return opened.map_err(at),
            }
        }
    }
}

/// SQLite primary result codes that mean "someone else holds the lock, try again".
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;

/// Why a SQLite error may pass on a retry.
pub(crate) fn retry_cause(e: &SqliteError) -> Option<RetryCause> {
    use sqlx::error::DatabaseError;
    let code = e.code()?.parse::<i32>().ok()?;
    matches!(code & 0xff, SQLITE_BUSY | SQLITE_LOCKED).then_some(RetryCause::Busy)
}
