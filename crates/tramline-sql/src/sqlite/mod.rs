//! SQLite: the embedded default. One file per service, one for the log.
//!
//! The decision to know: every write transaction starts with `BEGIN IMMEDIATE`. A deferred
//! transaction that reads before it writes cannot upgrade its snapshot once another connection
//! committed (SQLITE_BUSY_SNAPSHOT, not even waited for by the busy timeout); taking the write
//! lock up front turns that into an ordinary, bounded wait.

mod inbox;
mod log;
mod outbox;

pub use inbox::Inbox;
pub use log::{SqliteLog, SqliteSubscription};
pub use outbox::SqliteOutbox;

use crate::SqlError;
use sqlx::query_builder::Separated;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool, Transaction};
use std::path::Path;
use std::time::Duration;

/// A write transaction on SQLite.
pub type WriteTx = Transaction<'static, Sqlite>;

/// How to open a SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Connections in a store's main pool. SQLite has one writer at a time; with one
    /// connection, writers of this process queue in the pool rather than sleeping in SQLite's
    /// busy handler.
    pub max_connections: u32,
    /// Connections of a separate read-only pool, for stores whose readers should not queue
    /// behind writers (the log's polls).
    pub readers: u32,
    /// How long a writer waits for the lock before failing with a transient busy error.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            max_connections: 1,
            readers: 4,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// A schema a store needs; each is a set of versioned migrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Schema {
    /// The transactional outbox.
    Outbox,
    /// Dedupe records and parked messages of consumers.
    Inbox,
    /// The embedded log and consumer-group offsets.
    Log,
}

/// Opens (creating if missing) the SQLite file at `path` in WAL mode.
pub async fn open(path: &Path, options: &SqliteOptions) -> Result<SqlitePool, SqlError> {
    pool(path, options, options.max_connections, false).await
}

/// A second pool on an opened file for readers only; in WAL mode they never wait for writers.
/// Its connections are read-only, so a write sent there by mistake fails instead of competing
/// with the writer for the lock.
pub async fn open_readers(path: &Path, options: &SqliteOptions) -> Result<SqlitePool, SqlError> {
    pool(path, options, options.readers, true).await
}

async fn pool(
    path: &Path,
    options: &SqliteOptions,
    size: u32,
    read_only: bool,
) -> Result<SqlitePool, SqlError> {
    let connect = SqliteConnectOptions::new()
        .filename(path)
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
    SqlitePoolOptions::new()
        .max_connections(size.max(1))
        .connect_with(connect)
        .await
        .map_err(SqlError::at("sqlite", "open database"))
}

/// Applies the migrations of each schema, in order; already applied ones are skipped.
pub async fn migrate(pool: &SqlitePool, schemas: &[Schema]) -> Result<(), SqlError> {
    for schema in schemas {
        let mut migrator = match schema {
            Schema::Outbox => sqlx::migrate!("./migrations/sqlite/outbox"),
            Schema::Inbox => sqlx::migrate!("./migrations/sqlite/inbox"),
            Schema::Log => sqlx::migrate!("./migrations/sqlite/log"),
        };
        run_migrator(pool, &mut migrator).await?;
    }
    Ok(())
}

/// Runs one component's migrator in a database shared with other components' migrations.
pub async fn run_migrator(
    pool: &SqlitePool,
    migrator: &mut sqlx::migrate::Migrator,
) -> Result<(), SqlError> {
    // Several components keep their migrations in one database; each must ignore the others'.
    migrator.set_ignore_missing(true);
    migrator.run(pool).await.map_err(|e| {
        SqlError::new(
            "sqlite",
            "apply migrations",
            sqlx::Error::Migrate(Box::new(e)),
        )
    })
}

/// Runs `query`, which must return one row holding one JSON array, and decodes the array.
///
/// sqlx's SQLite driver hands every result row across from its worker thread on its own;
/// folding a batch into one `json_group_array` row makes the whole batch cross once, which is
/// what makes batched reads cheap.
pub async fn fetch_json_rows<'q, 'c, T, E>(
    query: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    executor: E,
    store: &'static str,
    operation: &'static str,
) -> Result<Vec<T>, SqlError>
where
    T: serde::de::DeserializeOwned,
    E: sqlx::Executor<'c, Database = Sqlite>,
{
    use sqlx::Row;
    let row = query
        .fetch_one(executor)
        .await
        .map_err(SqlError::at(store, operation))?;
    let json: &str = row.try_get(0).map_err(SqlError::at(store, operation))?;
    serde_json::from_str(json)
        .map_err(|e| SqlError::new(store, operation, sqlx::Error::Decode(Box::new(e))))
}

/// Prepared statements kept per connection. Multi-row statements differ by their row count,
/// so a store uses a few hundred distinct statements; re-preparing them costs more than
/// keeping them.
const STATEMENT_CACHE: usize = 1024;

/// Rows per multi-row statement: few statements per batch, well under SQLite's parameter limit.
pub const ROWS_PER_STATEMENT: usize = 100;

/// Writes `rows` with as few multi-row statements as possible: `insert` is the statement up to
/// `VALUES` (exclusive), `suffix` what follows the values (e.g. `ON CONFLICT …`), and `bind`
/// pushes one row's values. Returns the rows the statements changed.
pub async fn insert_rows<T>(
    conn: &mut SqliteConnection,
    store: &'static str,
    operation: &'static str,
    insert: &'static str,
    suffix: &'static str,
    rows: &[T],
    bind: impl Fn(&mut Separated<'_, '_, Sqlite, &'static str>, &T),
) -> Result<u64, SqlError> {
    let mut changed = 0;
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new(insert);
        q.push_values(chunk, |mut row, item| bind(&mut row, item));
        q.push(suffix);
        changed += q
            .build()
            .execute(&mut *conn)
            .await
            .map_err(SqlError::at(store, operation))?
            .rows_affected();
    }
    Ok(changed)
}

/// Starts a write transaction that holds the write lock from its first statement.
pub async fn begin_write(pool: &SqlitePool, store: &'static str) -> Result<WriteTx, SqlError> {
    pool.begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(SqlError::at(store, "begin write transaction"))
}
