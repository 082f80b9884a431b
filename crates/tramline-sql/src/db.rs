//! A store's database on any of the three dialects, chosen by URL, and the statements run on
//! it.
//!
//! The decision to know: stores build their SQL with [`Stmt`], which writes each dialect's
//! placeholders, and read through [`Db::fetch_json`], which takes one JSON document per
//! statement. That keeps every store written once, with the dialects' differences confined to
//! [`crate::dialect`]; and it is also what makes batched reads cheap on SQLite, whose driver
//! hands every result row across threads on its own.

use crate::dialect::{mysql, postgres, sqlite, Dialect};
use crate::SqlError;
use serde::de::DeserializeOwned;
use sqlx::{MySql, MySqlPool, PgPool, Postgres, Row, Sqlite, SqlitePool, Transaction};
use std::time::Duration;

/// Binds a [`Stmt`]'s values to a query of one concrete driver.
macro_rules! bind {
    ($db:ty, $stmt:expr) => {{
        let stmt: &Stmt = $stmt;
        let mut q = sqlx::query::<$db>(&stmt.sql);
        for arg in &stmt.args {
            q = match arg {
                Arg::Int(v) => q.bind(*v),
                // Borrowed: the statement outlives the query, so no copy per argument.
                Arg::Text(v) => q.bind(v.as_deref()),
            };
        }
        q
    }};
}

/// How to open a store's database. `None` means the dialect's default.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Connections in the pool (SQLite: 1, so writers queue in the pool rather than spin in
    /// SQLite's busy handler; servers: 8).
    pub max_connections: Option<u32>,
    /// SQLite only: connections of a separate read-only pool for readers that should not
    /// queue behind writers (the log's polls).
    pub readers: u32,
    /// SQLite only: how long a writer waits for the lock before a transient busy error.
    pub busy_timeout: Duration,
    /// How long a caller waits for a free connection before a transient error.
    pub acquire_timeout: Duration,
    /// Servers only: a statement running longer is cancelled (zero: no limit).
    pub statement_timeout: Duration,
    /// Servers only: how long a statement waits for a row lock before a transient error.
    pub lock_timeout: Duration,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            max_connections: None,
            readers: 4,
            busy_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(60),
            lock_timeout: Duration::from_secs(20),
        }
    }
}

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    MySql(MySqlPool),
    Postgres(PgPool),
}

/// A store's database: a connection pool on one dialect.
#[derive(Debug, Clone)]
pub struct Db {
    pool: Pool,
    /// SQLite: a read-only pool on the same file; servers: none (MVCC readers never wait).
    readers: Option<SqlitePool>,
}

/// A URL with its password replaced, for messages and logs: the one in the user-info
/// (`user:***@host`) and a `password=` query parameter (`?password=***`).
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (location, query) = match rest.split_once('?') {
        Some((location, query)) => (location, Some(query)),
        None => (rest, None),
    };
    let location = match location.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{user}:***@{host}")
        }
        _ => location.to_owned(),
    };
    let query = query.map(|q| {
        q.split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if name.eq_ignore_ascii_case("password") => format!("{name}=***"),
                _ => pair.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    match query {
        Some(query) => format!("{scheme}://{location}?{query}"),
        None => format!("{scheme}://{location}"),
    }
}

impl From<SqlitePool> for Db {
    /// The caller's own pool, used as it is (tramline's connection settings — busy timeout,
    /// WAL — are the caller's to choose).
    fn from(pool: SqlitePool) -> Self {
        Db {
            pool: Pool::Sqlite(pool),
            readers: None,
        }
    }
}

impl From<MySqlPool> for Db {
    /// The caller's own pool, used as it is (tramline's session settings — statement and
    /// lock timeouts — are the caller's to choose).
    fn from(pool: MySqlPool) -> Self {
        Db {
            pool: Pool::MySql(pool),
            readers: None,
        }
    }
}

impl From<PgPool> for Db {
    /// The caller's own pool, used as it is (tramline's session settings — statement and
    /// lock timeouts — are the caller's to choose).
    fn from(pool: PgPool) -> Self {
        Db {
            pool: Pool::Postgres(pool),
            readers: None,
        }
    }
}

impl Db {
    /// A database on the caller's own sqlx pool (`SqlitePool`, `MySqlPool` or `PgPool`), so
    /// that a service that already has one does not open a second.
    pub fn from_pool(pool: impl Into<Db>) -> Db {
        pool.into()
    }

    /// Opens the database at `url`: `sqlite://path` (created if missing), `mysql://…` or
    /// `mariadb://…`, `postgres://…` or `postgresql://…`.
    pub async fn connect(url: &str, options: &DbOptions) -> Result<Db, SqlError> {
        let dialect = Dialect::from_url(url)?;
        let pool = match dialect {
            Dialect::Sqlite => Pool::Sqlite(sqlite::connect(url, options, false).await?),
            Dialect::MySql => Pool::MySql(mysql::connect(url, options).await?),
            Dialect::Postgres => Pool::Postgres(postgres::connect(url, options).await?),
        };
        let readers = match dialect {
            Dialect::Sqlite if options.readers > 0 => {
                Some(sqlite::connect(url, options, true).await?)
            }
            _ => None,
        };
        Ok(Db { pool, readers })
    }

    /// The database's dialect.
    pub fn dialect(&self) -> Dialect {
        match self.pool {
            Pool::Sqlite(_) => Dialect::Sqlite,
            Pool::MySql(_) => Dialect::MySql,
            Pool::Postgres(_) => Dialect::Postgres,
        }
    }

    /// A new statement in this database's dialect.
    pub fn stmt(&self, sql: &str) -> Stmt {
        Stmt::new(self.dialect(), sql)
    }

    /// The same database for reads that must not queue behind writers: on SQLite a
    /// read-only pool (WAL readers never wait), elsewhere the pool itself.
    pub fn readers(&self) -> Db {
        match &self.readers {
            Some(r) => Db {
                pool: Pool::Sqlite(r.clone()),
                readers: None,
            },
            None => self.clone(),
        }
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`): a deferred transaction that reads before it writes cannot upgrade its
    /// snapshot once another connection committed, and fails without waiting.
    pub async fn begin(&self, store: &str) -> Result<Tx, SqlError> {
        let at = SqlError::at(store, "begin transaction");
        let inner = match &self.pool {
            Pool::Sqlite(p) => TxInner::Sqlite(p.begin_with("BEGIN IMMEDIATE").await.map_err(at)?),
            Pool::MySql(p) => TxInner::MySql(p.begin().await.map_err(at)?),
            Pool::Postgres(p) => TxInner::Postgres(p.begin().await.map_err(at)?),
        };
        Ok(Tx { inner })
    }

    /// Runs a statement; returns the rows it changed, as the driver counts them (not a
    /// dedupe signal: MariaDB counts an upsert's update twice and an unchanged row not at all).
    pub async fn execute(
        &self,
        stmt: &Stmt,
        store: &str,
        operation: &'static str,
    ) -> Result<u64, SqlError> {
        let at = SqlError::at(store, operation);
        Ok(match &self.pool {
            Pool::Sqlite(p) => bind!(Sqlite, stmt)
                .execute(p)
                .await
                .map_err(at)?
                .rows_affected(),
            Pool::MySql(p) => bind!(MySql, stmt)
                .execute(p)
                .await
                .map_err(at)?
                .rows_affected(),
            Pool::Postgres(p) => bind!(Postgres, stmt)
                .execute(p)
                .await
                .map_err(at)?
                .rows_affected(),
        })
    }

    /// Runs SQL text outside any transaction, binding nothing: statements PostgreSQL refuses
    /// in a transaction block (`VACUUM`).
    pub async fn execute_raw(
        &self,
        sql: &str,
        store: &str,
        operation: &'static str,
    ) -> Result<(), SqlError> {
        let at = SqlError::at(store, operation);
        match &self.pool {
            Pool::Sqlite(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
            Pool::MySql(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
            Pool::Postgres(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
        }
        .map_err(at)
    }

    /// Runs a statement returning one row whose first column is a JSON array (built with
    /// [`Dialect::json_objects`] or [`Dialect::json_tuples`]; NULL for no rows) and decodes
    /// its elements.
    pub async fn fetch_json<T: DeserializeOwned>(
        &self,
        stmt: &Stmt,
        store: &str,
        operation: &'static str,
    ) -> Result<Vec<T>, SqlError> {
        let at = SqlError::at(store, operation);
        let json: Option<String> = match &self.pool {
            Pool::Sqlite(p) => bind!(Sqlite, stmt)
                .fetch_one(p)
                .await
                .map_err(&at)?
                .try_get(0),
            Pool::MySql(p) => mysql_text(&bind!(MySql, stmt).fetch_one(p).await.map_err(&at)?),
            Pool::Postgres(p) => bind!(Postgres, stmt)
                .fetch_one(p)
                .await
                .map_err(&at)?
                .try_get(0),
        }
        .map_err(&at)?;
        decode_json(json, store, operation)
    }

    /// Runs a statement returning one integer (a count).
    pub async fn fetch_i64(
        &self,
        stmt: &Stmt,
        store: &str,
        operation: &'static str,
    ) -> Result<i64, SqlError> {
        let at = SqlError::at(store, operation);
        match &self.pool {
            Pool::Sqlite(p) => bind!(Sqlite, stmt)
                .fetch_one(p)
                .await
                .map_err(&at)?
                .try_get(0),
            Pool::MySql(p) => bind!(MySql, stmt)
                .fetch_one(p)
                .await
                .map_err(&at)?
                .try_get(0),
            Pool::Postgres(p) => bind!(Postgres, stmt)
                .fetch_one(p)
                .await
                .map_err(&at)?
                .try_get(0),
        }
        .map_err(&at)
    }

    /// Applies a component's versioned migrations; applied ones are skipped. Several
    /// components keep their migrations in one database; each is recorded in tramline's own
    /// history (`tramline_migrations`, see [`crate::history`]), never in sqlx's, so a
    /// service's own sqlx migrations run beside them. Processes opening one database at once
    /// take turns: a lock file beside a SQLite database, `GET_LOCK` on MariaDB, an advisory
    /// lock per schema on PostgreSQL.
    pub async fn run_migrator(
        &self,
        migrator: &mut sqlx::migrate::Migrator,
    ) -> Result<(), SqlError> {
        let at = |e| SqlError::new("migrations", "lock the database for migrations", e);
        match &self.pool {
            Pool::Sqlite(p) => {
                let path = p.connect_options().get_filename().to_owned();
                let _lock = lock_file(&path).await?;
                self.apply_tracked(migrator).await
            }
            // The lock is held on a connection of its own, outside the pool (which may have
            // room for one connection only, needed by the migrations themselves).
            Pool::MySql(_) | Pool::Postgres(_) => {
                let (lock, unlock) = match self.dialect() {
                    Dialect::MySql => (
                        "SELECT GET_LOCK(CONCAT('tramline_migrate.', DATABASE()), 300) = 1",
                        "SELECT RELEASE_LOCK(CONCAT('tramline_migrate.', DATABASE())) = 1",
                    ),
                    _ => (
                        "SELECT true FROM (SELECT pg_advisory_lock(hashtext('tramline_migrate.' || current_schema()))) AS locked",
                        "SELECT pg_advisory_unlock(hashtext('tramline_migrate.' || current_schema()))",
                    ),
                };
                let mut session = self.session().await.map_err(at)?;
                if session.fetch_bool(lock).await.map_err(at)? != Some(true) {
                    return Err(at(sqlx::Error::Protocol(
                        "another process held the migration lock for 5 minutes".into(),
                    )));
                }
                let applied = self.apply_tracked(migrator).await;
                session.fetch_bool(unlock).await.map_err(at)?;
                session.close().await;
                applied
            }
        }
    }

    /// A new connection outside the pool, with the pool's options, whose session state (a
    /// lock) lasts exactly as long as it does. Not on SQLite, which has no sessions.
    pub(crate) async fn session(&self) -> Result<Session, sqlx::Error> {
        use sqlx::Connection;
        match &self.pool {
            Pool::MySql(p) => Ok(Session::MySql(
                sqlx::MySqlConnection::connect_with(&p.connect_options()).await?,
            )),
            Pool::Postgres(p) => Ok(Session::Postgres(
                sqlx::PgConnection::connect_with(&p.connect_options()).await?,
            )),
            Pool::Sqlite(_) => Err(sqlx::Error::Configuration(
                "SQLite has no server sessions to hold".into(),
            )),
        }
    }

    /// Whether the database answers: a connection from the pool, pinged.
    pub async fn ping(&self, store: &str) -> Result<(), SqlError> {
        use sqlx::Connection;
        let at = SqlError::at(store, "ping");
        match &self.pool {
            Pool::Sqlite(p) => p.acquire().await.map_err(&at)?.ping().await,
            Pool::MySql(p) => p.acquire().await.map_err(&at)?.ping().await,
            Pool::Postgres(p) => p.acquire().await.map_err(&at)?.ping().await,
        }
        .map_err(&at)
    }

    /// Closes the pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(p) => p.close().await,
            Pool::MySql(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
        if let Some(r) = &self.readers {
            r.close().await;
        }
    }
}

/// A connection of its own, outside any pool (see [`Db::session`]).
pub(crate) enum Session {
    MySql(sqlx::MySqlConnection),
    Postgres(sqlx::PgConnection),
}

impl Session {
    /// Runs `sql` (no parameters, no rows).
    pub(crate) async fn execute(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        match self {
            Session::MySql(c) => sqlx::query(sql).execute(c).await.map(drop),
            Session::Postgres(c) => sqlx::query(sql).execute(c).await.map(drop),
        }
    }

    /// Closes the connection, politely; a connection already gone is simply dropped.
    pub(crate) async fn close(self) {
        use sqlx::Connection;
        let _ = match self {
            Session::MySql(c) => c.close().await,
            Session::Postgres(c) => c.close().await,
        };
    }

    /// Runs `sql` (no parameters), returning its one row's first column as a boolean
    /// (`NULL` as `None`).
    pub(crate) async fn fetch_bool(&mut self, sql: &str) -> Result<Option<bool>, sqlx::Error> {
        match self {
            Session::MySql(c) => {
                let v: Option<i64> = sqlx::query_scalar(sql).fetch_one(c).await?;
                Ok(v.map(|v| v != 0))
            }
            Session::Postgres(c) => {
                sqlx::query_scalar::<_, Option<bool>>(sql)
                    .fetch_one(c)
                    .await
            }
        }
    }
}

/// The first column of a MariaDB row as text: JSON aggregates come back typed as a BLOB.
fn mysql_text(row: &sqlx::mysql::MySqlRow) -> Result<Option<String>, sqlx::Error> {
    let bytes: Option<Vec<u8>> = row.try_get(0)?;
    bytes
        .map(|b| String::from_utf8(b).map_err(|e| sqlx::Error::Decode(Box::new(e))))
        .transpose()
}

fn decode_json<T: DeserializeOwned>(
    json: Option<String>,
    store: &str,
    operation: &'static str,
) -> Result<Vec<T>, SqlError> {
    match json {
        // An aggregate over no rows is NULL on MariaDB and PostgreSQL.
        None => Ok(Vec::new()),
        Some(json) => serde_json::from_str(&json).map_err(|e| {
            SqlError::new(
                store.to_owned(),
                operation,
                sqlx::Error::Decode(Box::new(e)),
            )
        }),
    }
}

enum TxInner {
    Sqlite(Transaction<'static, Sqlite>),
    MySql(Transaction<'static, MySql>),
    Postgres(Transaction<'static, Postgres>),
}

/// A write transaction on a [`Db`]; rolled back if dropped without [`Tx::commit`].
pub struct Tx {
    inner: TxInner,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("dialect", &self.dialect())
            .finish()
    }
}

impl Tx {
    /// The transaction's dialect.
    pub fn dialect(&self) -> Dialect {
        match self.inner {
            TxInner::Sqlite(_) => Dialect::Sqlite,
            TxInner::MySql(_) => Dialect::MySql,
            TxInner::Postgres(_) => Dialect::Postgres,
        }
    }

    /// A new statement in this transaction's dialect.
    pub fn stmt(&self, sql: &str) -> Stmt {
        Stmt::new(self.dialect(), sql)
    }

    /// The transaction's sqlx connection, for a handler's own sqlx queries that must commit
    /// with the transaction (its dedupe records, say):
    ///
    /// ```no_run
    /// # async fn example(tx: &mut tramline_sql::Tx) -> Result<(), sqlx::Error> {
    /// use tramline_sql::Conn;
    /// if let Conn::Sqlite(conn) = tx.conn() {
    ///     sqlx::query("UPDATE totals SET n = n + 1").execute(conn).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn conn(&mut self) -> Conn<'_> {
        match &mut self.inner {
            TxInner::Sqlite(t) => Conn::Sqlite(t),
            TxInner::MySql(t) => Conn::MySql(t),
            TxInner::Postgres(t) => Conn::Postgres(t),
        }
    }

    /// [`Db::execute`] inside the transaction.
    pub async fn execute(
        &mut self,
        stmt: &Stmt,
        store: &str,
        operation: &'static str,
    ) -> Result<u64, SqlError> {
        Writer::execute(&mut self.conn(), stmt, store, operation).await
    }

    /// Runs SQL text that may hold several statements (a migration file), binding nothing.
    pub async fn execute_raw(
        &mut self,
        sql: &str,
        store: &str,
        operation: &'static str,
    ) -> Result<(), SqlError> {
        let at = SqlError::at(store, operation);
        match &mut self.inner {
            TxInner::Sqlite(t) => sqlx::raw_sql(sql).execute(&mut **t).await.map(|_| ()),
            TxInner::MySql(t) => sqlx::raw_sql(sql).execute(&mut **t).await.map(|_| ()),
            TxInner::Postgres(t) => sqlx::raw_sql(sql).execute(&mut **t).await.map(|_| ()),
        }
        .map_err(at)
    }

    /// [`Db::fetch_json`] inside the transaction.
    pub async fn fetch_json<T: DeserializeOwned>(
        &mut self,
        stmt: &Stmt,
        store: &str,
        operation: &'static str,
    ) -> Result<Vec<T>, SqlError> {
        let at = SqlError::at(store, operation);
        let json: Option<String> = match &mut self.inner {
            TxInner::Sqlite(t) => bind!(Sqlite, stmt)
                .fetch_one(&mut **t)
                .await
                .map_err(&at)?
                .try_get(0),
            TxInner::MySql(t) => {
                mysql_text(&bind!(MySql, stmt).fetch_one(&mut **t).await.map_err(&at)?)
            }
            TxInner::Postgres(t) => bind!(Postgres, stmt)
                .fetch_one(&mut **t)
                .await
                .map_err(&at)?
                .try_get(0),
        }
        .map_err(&at)?;
        decode_json(json, store, operation)
    }

    /// Runs a statement whose rows are one text column each, such as an `INSERT …
    /// RETURNING` (which cannot aggregate its rows into one JSON document for
    /// [`Tx::fetch_json`]), and returns them; a NULL is left out.
    pub async fn fetch_texts(
        &mut self,
        stmt: &Stmt,
        store: &str,
        operation: &'static str,
    ) -> Result<Vec<String>, SqlError> {
        let at = SqlError::at(store, operation);
        let texts: Result<Vec<Option<String>>, sqlx::Error> = match &mut self.inner {
            TxInner::Sqlite(t) => bind!(Sqlite, stmt)
                .fetch_all(&mut **t)
                .await
                .map_err(&at)?
                .iter()
                .map(|row| row.try_get(0))
                .collect(),
            TxInner::MySql(t) => bind!(MySql, stmt)
                .fetch_all(&mut **t)
                .await
                .map_err(&at)?
                .iter()
                .map(mysql_text)
                .collect(),
            TxInner::Postgres(t) => bind!(Postgres, stmt)
                .fetch_all(&mut **t)
                .await
                .map_err(&at)?
                .iter()
                .map(|row| row.try_get(0))
                .collect(),
        };
        Ok(texts.map_err(&at)?.into_iter().flatten().collect())
    }

    /// Commits.
    pub async fn commit(self, store: &str) -> Result<(), SqlError> {
        let at = SqlError::at(store, "commit");
        match self.inner {
            TxInner::Sqlite(t) => t.commit().await.map_err(at),
            TxInner::MySql(t) => t.commit().await.map_err(at),
            TxInner::Postgres(t) => t.commit().await.map_err(at),
        }
    }
}

/// One of the caller's own connections, for tramline to write through: `&mut *tx` of an
/// open `sqlx::Transaction` (any of the three databases), so that what tramline writes (an
/// outbox message) commits or rolls back with the caller's own writes.
///
/// ```no_run
/// # async fn example(pool: sqlx::PgPool, outbox: tramline_sql::SqlOutbox, message: tramline_core::Envelope) -> Result<(), Box<dyn std::error::Error>> {
/// let mut tx = pool.begin().await?;
/// sqlx::query("UPDATE accounts SET balance = balance - 10 WHERE id = 1")
///     .execute(&mut *tx)
///     .await?;
/// outbox.append_in(&mut *tx, &[message]).await?;
/// tx.commit().await?;
/// outbox.notify();
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub enum Conn<'c> {
    /// A SQLite connection.
    Sqlite(&'c mut sqlx::SqliteConnection),
    /// A MariaDB/MySQL connection.
    MySql(&'c mut sqlx::MySqlConnection),
    /// A PostgreSQL connection.
    Postgres(&'c mut sqlx::PgConnection),
}

impl<'c> From<&'c mut sqlx::SqliteConnection> for Conn<'c> {
    fn from(c: &'c mut sqlx::SqliteConnection) -> Self {
        Conn::Sqlite(c)
    }
}

impl<'c> From<&'c mut sqlx::MySqlConnection> for Conn<'c> {
    fn from(c: &'c mut sqlx::MySqlConnection) -> Self {
        Conn::MySql(c)
    }
}

impl<'c> From<&'c mut sqlx::PgConnection> for Conn<'c> {
    fn from(c: &'c mut sqlx::PgConnection) -> Self {
        Conn::Postgres(c)
    }
}

/// Where tramline's writes run: its own [`Tx`], or one of the caller's connections
/// ([`Conn`]).
pub trait Writer: Send {
    /// The database's dialect.
    fn dialect(&self) -> Dialect;

    /// Runs a statement; the rows it changed.
    fn execute(
        &mut self,
        stmt: &Stmt,
        store: &str,
        operation: &'static str,
    ) -> impl std::future::Future<Output = Result<u64, SqlError>> + Send;
}

impl Writer for Tx {
    fn dialect(&self) -> Dialect {
        Tx::dialect(self)
    }

    async fn execute(
        &mut self,
        stmt: &Stmt,
        store: &str,
        operation: &'static str,
    ) -> Result<u64, SqlError> {
        Tx::execute(self, stmt, store, operation).await
    }
}

impl Writer for Conn<'_> {
    fn dialect(&self) -> Dialect {
        match self {
            Conn::Sqlite(_) => Dialect::Sqlite,
            Conn::MySql(_) => Dialect::MySql,
            Conn::Postgres(_) => Dialect::Postgres,
        }
    }

    async fn execute(
        &mut self,
        stmt: &Stmt,
        store: &str,
        operation: &'static str,
    ) -> Result<u64, SqlError> {
        let at = SqlError::at(store, operation);
        Ok(match self {
            Conn::Sqlite(c) => bind!(Sqlite, stmt)
                .execute(&mut **c)
                .await
                .map_err(at)?
                .rows_affected(),
            Conn::MySql(c) => bind!(MySql, stmt)
                .execute(&mut **c)
                .await
                .map_err(at)?
                .rows_affected(),
            Conn::Postgres(c) => bind!(Postgres, stmt)
                .execute(&mut **c)
                .await
                .map_err(at)?
                .rows_affected(),
        })
    }
}

/// A value bound to a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// An integer, or a NULL integer.
    Int(Option<i64>),
    /// A text, or a NULL text.
    Text(Option<String>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}
impl From<i32> for Arg {
    fn from(v: i32) -> Self {
        Arg::Int(Some(v.into()))
    }
}
impl From<u32> for Arg {
    fn from(v: u32) -> Self {
        Arg::Int(Some(v.into()))
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(Some(v.to_owned()))
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(Some(v))
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Self {
        Arg::Text(Some(v.clone()))
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        Arg::Text(v.map(str::to_owned))
    }
}
impl From<&Option<String>> for Arg {
    fn from(v: &Option<String>) -> Self {
        Arg::Text(v.clone())
    }
}

/// A statement under construction: SQL text with the dialect's placeholders, and its values.
#[derive(Debug, Clone)]
pub struct Stmt {
    dialect: Dialect,
    sql: String,
    args: Vec<Arg>,
}

/// Rows per multi-row statement: few statements per batch, far under every dialect's limit of
/// bound values per statement.
pub const ROWS_PER_STATEMENT: usize = 100;

impl Stmt {
    /// A statement starting with `sql`.
    pub fn new(dialect: Dialect, sql: &str) -> Self {
        Stmt {
            dialect,
            sql: sql.to_owned(),
            args: Vec::new(),
        }
    }

    /// The SQL text so far.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// Appends SQL text.
    pub fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub fn bind(&mut self, value: impl Into<Arg>) -> &mut Self {
        self.args.push(value.into());
        self.dialect.placeholder(&mut self.sql, self.args.len());
        self
    }

    /// Appends `(p1, p2, …)` bound to `values`, for `IN`; `(NULL)` when there are none,
    /// which matches nothing. The list is padded to a power of two by repeating its last
    /// value (harmless in `IN`), so a query comes in a handful of shapes rather than one per
    /// length: servers cap prepared statements (MariaDB: 16,382 for all clients together).
    pub fn bind_list<T: Into<Arg>>(&mut self, values: impl IntoIterator<Item = T>) -> &mut Self {
        let values: Vec<Arg> = values.into_iter().map(Into::into).collect();
        let Some(last) = values.last().cloned() else {
            self.sql.push_str("(NULL)");
            return self;
        };
        let padded = values.len().next_power_of_two();
        self.sql.push('(');
        for (i, v) in values
            .into_iter()
            .chain(std::iter::repeat_n(last, padded))
            .take(padded)
            .enumerate()
        {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.bind(v);
        }
        self.sql.push(')');
        self
    }

    /// Appends ` VALUES (…), (…)` with one tuple per row, `row` binding each row's values.
    pub fn values<T>(&mut self, rows: &[T], row: impl Fn(&mut Tuple<'_>, &T)) -> &mut Self {
        self.sql.push_str(" VALUES ");
        for (i, item) in rows.iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.sql.push('(');
            let mut tuple = Tuple {
                stmt: self,
                first: true,
            };
            row(&mut tuple, item);
            self.sql.push(')');
        }
        self
    }
}

/// One row's values inside [`Stmt::values`].
pub struct Tuple<'a> {
    stmt: &'a mut Stmt,
    first: bool,
}

impl Tuple<'_> {
    /// Binds the row's next value.
    pub fn bind(&mut self, value: impl Into<Arg>) -> &mut Self {
        if !self.first {
            self.stmt.sql.push_str(", ");
        }
        self.first = false;
        self.stmt.bind(value);
        self
    }

    /// Binds the row's next value as `CAST(value AS sql_type)`: text written to a column of
    /// another type (PostgreSQL converts no text implicitly).
    pub fn bind_cast(&mut self, value: impl Into<Arg>, sql_type: &str) -> &mut Self {
        if !self.first {
            self.stmt.sql.push_str(", ");
        }
        self.first = false;
        self.stmt.sql.push_str("CAST(");
        self.stmt.bind(value);
        self.stmt.sql.push_str(" AS ");
        self.stmt.sql.push_str(sql_type);
        self.stmt.sql.push(')');
        self
    }
}

/// Writes `rows` with multi-row statements: `insert` is the statement up to `VALUES`
/// (exclusive), `suffix` what follows the values (an upsert clause), `row` binds one row's
/// values. Returns the driver's changed-row count.
///
/// Statements hold [`ROWS_PER_STATEMENT`] rows, or a power of two for the rest (99 rows go
/// as 64 + 32 + 2 + 1), so each insert comes in eight shapes at most and prepared statements
/// stay few (servers cap them; see [`Stmt::bind_list`]).
pub async fn insert_rows<W: Writer, T>(
    tx: &mut W,
    store: &str,
    operation: &'static str,
    insert: &str,
    suffix: &str,
    rows: &[T],
    row: impl Fn(&mut Tuple<'_>, &T),
) -> Result<u64, SqlError> {
    let mut changed = 0;
    for chunk in statement_chunks(rows) {
        let mut stmt = Stmt::new(tx.dialect(), insert);
        stmt.values(chunk, &row).push(suffix);
        changed += Writer::execute(tx, &stmt, store, operation).await?;
    }
    Ok(changed)
}

/// `rows` cut into the statements [`insert_rows`] writes them with.
pub(crate) fn statement_chunks<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (chunk, tail) = rest.split_at(chunk_len(rest.len()));
        rest = tail;
        Some(chunk)
    })
}

/// Rows in the next statement of [`insert_rows`] when `n` remain.
fn chunk_len(n: usize) -> usize {
    if n >= ROWS_PER_STATEMENT {
        ROWS_PER_STATEMENT
    } else {
        // The largest power of two not above n.
        1 << n.ilog2()
    }
}

/// An exclusive lock on `<database>.migrate-lock`, held until dropped (the file is left
/// behind, empty). In-memory databases need none.
async fn lock_file(database: &std::path::Path) -> Result<Option<std::fs::File>, SqlError> {
    let name = database.as_os_str();
    if name.is_empty() || name == ":memory:" {
        return Ok(None);
    }
    let mut path = name.to_owned();
    path.push(".migrate-lock");
    let at = |e: std::io::Error| {
        SqlError::new(
            "migrations",
            "lock the database for migrations",
            sqlx::Error::Io(e),
        )
    };
    let locked = tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        file.lock()?;
        Ok::<_, std::io::Error>(file)
    })
    .await
    .map_err(|e| at(std::io::Error::other(e)))?
    .map_err(at)?;
    Ok(Some(locked))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_number_postgres_placeholders() {
        let mut s = Stmt::new(Dialect::Postgres, "SELECT 1 WHERE a IN ");
        s.bind_list(["x", "y"]).push(" AND b = ").bind(3i64);
        assert_eq!(s.sql(), "SELECT 1 WHERE a IN ($1, $2) AND b = $3");
        let mut s = Stmt::new(Dialect::MySql, "INSERT INTO t (a, b)");
        s.values(&[(1i64, "p"), (2, "q")], |t, (n, x)| {
            t.bind(*n).bind(*x);
        });
        assert_eq!(s.sql(), "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)");
        let mut s = Stmt::new(Dialect::Sqlite, "x IN ");
        s.bind_list(Vec::<String>::new());
        assert_eq!(s.sql(), "x IN (NULL)");
    }

    #[test]
    fn lists_and_inserts_come_in_few_shapes() {
        let mut s = Stmt::new(Dialect::MySql, "x IN ");
        s.bind_list([1i64, 2, 3]);
        assert_eq!(s.sql(), "x IN (?, ?, ?, ?)");
        assert_eq!(
            s.args.last(),
            Some(&Arg::Int(Some(3))),
            "padded with the last"
        );
        for total in [1usize, 2, 99, 100, 250, 1000] {
            let (mut left, mut written) = (total, 0);
            while left > 0 {
                let n = chunk_len(left);
                assert!(n >= 1 && n <= left);
                written += n;
                left -= n;
            }
            assert_eq!(written, total, "every row written once");
        }
        assert_eq!(chunk_len(99), 64);
        assert_eq!(chunk_len(250), ROWS_PER_STATEMENT);
        let shapes: std::collections::BTreeSet<usize> = (1..=1000).map(chunk_len).collect();
        assert!(shapes.len() <= 8, "{shapes:?}");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("mysql://root:secret@127.0.0.1:3306/test"),
            "mysql://root:***@127.0.0.1:3306/test"
        );
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
        assert_eq!(
            redact("postgres://app@db/shop?sslmode=require&password=hunter2"),
            "postgres://app@db/shop?sslmode=require&password=***"
        );
        assert_eq!(
            redact("mysql://app:pw@db/shop?Password=pw2"),
            "mysql://app:***@db/shop?Password=***"
        );
    }
}
