//! Leader election of relays through the outbox's own database: no ZooKeeper, no etcd.
//!
//! - **MariaDB**: `GET_LOCK` on a connection the leader holds for the whole term. When the
//!   process dies (SIGKILL included) the server drops the connection and the lock with it;
//!   the connection's `wait_timeout` is the lease, so a leader that stops talking (paused,
//!   cut off) loses the lock too.
//! - **PostgreSQL**: a session advisory lock, the same way, with `idle_session_timeout` as the
//!   lease.
//! - **SQLite**: a lease row, renewed by its holder; a standby takes it once it ran out.
//!
//! Each takeover writes the next term into `tramline_relay_leader`, with the holder's name, so
//! operators (and [`leader`]) can see who leads. The relay confirms its term after each fetch,
//! before publishing (see `tramline_core::election`), which is the fence: a leader that lost
//! its lock or lease publishes nothing more.
//!
//! ```
//! use std::time::Duration;
//! use tramline_core::election::Election;
//! use tramline_sql::election::{leader, SqlElection};
//! use tramline_sql::{migrate, Db, DbOptions, Schema};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let url = format!("sqlite://{}", dir.path().join("order.db").display());
//! let db = Db::connect(&url, &DbOptions::default()).await?;
//! migrate(&db, &[Schema::Election]).await?;
//! let lease = Duration::from_secs(5);
//! let first = SqlElection::open(db.clone(), "order", "relay-a", lease).await?;
//! let second = SqlElection::open(db.clone(), "order", "relay-b", lease).await?;
//! let term = first.campaign().await?.expect("nobody led yet");
//! assert_eq!(second.campaign().await?, None, "one leader at a time");
//! assert_eq!(leader(&db, "order").await?.map(|l| l.holder), Some("relay-a".to_owned()));
//! first.resign(term).await?;
//! assert_eq!(second.campaign().await?, Some(term + 1), "resigning hands over at once");
//! # Ok(())
//! # }
//! ```

use crate::db::Session;
use crate::{Db, Dialect, SqlError};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tramline_core::election::{Election, Term};
use tramline_core::envelope::now_ms;
use tramline_core::Error;

const STORE: &str = "relay election";
const TABLE: &str = "tramline_relay_leader";

/// The recorded leader of an election (see [`leader`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Leader {
    /// The leading relay's name ([`SqlElection::open`]'s `holder`).
    pub holder: String,
    /// Its term: grows by one with every takeover.
    pub term: i64,
    /// When the term began, ms since the Unix epoch.
    pub since_ms: i64,
    /// SQLite: when the lease runs out unless renewed (0 after a resignation). MariaDB and
    /// PostgreSQL: `None` — the lock is the lead, held as long as the leader's connection.
    pub expires_at_ms: Option<i64>,
}

/// The leader recorded for `election` in `db`, if any relay ever led it (its schema
/// must be migrated). On MariaDB and PostgreSQL the row outlives a dead leader until the next
/// takeover: the lock, not the row, is the lead.
pub async fn leader(db: &Db, election: &str) -> Result<Option<Leader>, SqlError> {
    let mut stmt = db.stmt(&format!(
        "SELECT {} FROM {TABLE} WHERE election = ",
        db.dialect()
            .json_tuples(&["holder", "term", "since_ms", "expires_at_ms"])
    ));
    stmt.bind(election);
    let rows: Vec<(String, i64, i64, Option<i64>)> =
        db.fetch_json(&stmt, STORE, "read the leader").await?;
    Ok(rows
        .into_iter()
        .next()
        .map(|(holder, term, since_ms, expires_at_ms)| Leader {
            holder,
            term,
            since_ms,
            expires_at_ms,
        }))
}

/// A name for this process among the relays of an election: host, pid and a random part, so
/// that a restarted process is a new holder.
pub fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    // A UUIDv7 ends in random bits.
    let random = uuid::Uuid::now_v7().simple().to_string();
    format!("{host}/{}/{}", std::process::id(), &random[24..])
}

/// One relay's part in the election of one outbox's relays, in that outbox's database.
pub struct SqlElection {
    db: Db,
    election: String,
    holder: String,
    lease: Duration,
    state: Mutex<State>,
}

impl std::fmt::Debug for SqlElection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlElection")
            .field("election", &self.election)
            .field("holder", &self.holder)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    /// MariaDB, PostgreSQL: the connection that campaigns, and holds the lock while leading.
    session: Option<Session>,
    /// Whether `session` took the lock: a term that ended without a resignation leaves it
    /// to be dropped, never reused.
    leads: bool,
    /// SQLite: when the lease was last taken or renewed (the instant before the statement,
    /// so the local view of the lease never outlasts the database's).
    renewed: Option<Instant>,
}

impl SqlElection {
    /// Takes part in `election` (an outbox's name) in `db` as `holder` (unique among the
    /// relays: [`holder_name`] makes one); [`crate::Schema::Election`] must be migrated.
    /// `lease` bounds how long a leader that stopped answering keeps the lead: a SIGKILLed
    /// leader's lock goes at once on MariaDB and PostgreSQL, its lease on SQLite after at most
    /// `lease`. Standbys campaign every fifth of it.
    pub async fn open(
        db: Db,
        election: impl Into<String>,
        holder: impl Into<String>,
        lease: Duration,
    ) -> Result<Self, SqlError> {
        let election = SqlElection {
            db,
            election: election.into(),
            holder: holder.into(),
            lease: lease.max(Duration::from_secs(1)),
            state: Mutex::new(State::default()),
        };
        let mut seed = election.db.stmt(&format!(
            "INSERT INTO {TABLE} (election, holder, term, since_ms, expires_at_ms) VALUES ("
        ));
        seed.bind(election.election.as_str())
            .push(", '', 0, 0, 0)")
            .push(&election.db.dialect().insert_missing(&["election"]));
        // Relays starting together seed the same row at once: a deadlock or busy database is
        // tried again.
        let mut attempt = 0;
        loop {
            match election.db.execute(&seed, STORE, "seed the election").await {
                Ok(_) => return Ok(election),
                Err(e) if e.retry_cause().is_some() && attempt < 20 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(10 * attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// This relay's name in the election.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The lock's name: MariaDB's locks are server-wide, so the database is part of it
    /// (hashed: lock names are at most 64 characters); PostgreSQL's advisory locks are per
    /// database already, the schema is part of it.
    fn lock_sql(&self, dialect: Dialect, op: LockOp) -> String {
        let name = self.election.replace('\'', "''");
        match dialect {
            Dialect::MySql => {
                let lock =
                    format!("CONCAT('tramline_relay.', SHA1(CONCAT(DATABASE(), '.', '{name}')))");
                match op {
                    LockOp::Take => format!("SELECT GET_LOCK({lock}, 0) = 1"),
                    LockOp::Holds => format!("SELECT IS_USED_LOCK({lock}) = CONNECTION_ID()"),
                    LockOp::Release => format!("SELECT RELEASE_LOCK({lock}) = 1"),
                }
            }
            _ => {
                let keys = format!(
                    "hashtext('tramline_relay'), hashtext(current_schema() || '.' || '{name}')"
                );
                match op {
                    LockOp::Take => format!("SELECT pg_try_advisory_lock({keys})"),
                    LockOp::Holds => format!(
                        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
                         AND pid = pg_backend_pid() AND granted AND objsubid = 2 \
                         AND classid::bigint = (hashtext('tramline_relay')::bigint & 4294967295) \
                         AND objid::bigint = (hashtext(current_schema() || '.' || '{name}')::bigint & 4294967295))"
                    ),
                    LockOp::Release => format!("SELECT pg_advisory_unlock({keys})"),
                }
            }
        }
    }

    /// The recorded term and whether its lease still runs (SQLite).
    async fn recorded(&self) -> Result<(i64, bool), SqlError> {
        let recorded = leader(&self.db, &self.election).await?;
        let now = now_ms();
        Ok(recorded
            .map(|l| (l.term, l.expires_at_ms.is_some_and(|at| at > now)))
            .unwrap_or((0, false)))
    }

    /// Writes term `term + 1` for this holder if `term` is still the recorded one.
    async fn take_term(&self, term: i64, expires_at_ms: Option<i64>) -> Result<bool, SqlError> {
        let mut stmt = self.db.stmt(&format!("UPDATE {TABLE} SET holder = "));
        stmt.bind(self.holder.as_str())
            .push(", term = ")
            .bind(term + 1)
            .push(", since_ms = ")
            .bind(now_ms())
            .push(", expires_at_ms = ")
            .bind(expires_at_ms)
            .push(" WHERE election = ")
            .bind(self.election.as_str())
            .push(" AND term = ")
            .bind(term);
        Ok(self.db.execute(&stmt, STORE, "take the lead").await? == 1)
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }

    async fn campaign_lease(&self, state: &mut State) -> Result<Option<Term>, SqlError> {
        let (term, running) = self.recorded().await?;
        if running {
            return Ok(None);
        }
        let started = Instant::now();
        if !self
            .take_term(term, Some(now_ms() + self.lease_ms()))
            .await?
        {
            return Ok(None); // another standby took it first
        }
        state.renewed = Some(started);
        Ok(u64::try_from(term + 1).ok())
    }

    async fn campaign_lock(&self, state: &mut State) -> Result<Option<Term>, SqlError> {
        let at = SqlError::at(STORE, "take the lock");
        let dialect = self.db.dialect();
        let take = self.lock_sql(dialect, LockOp::Take);
        // A standby's kept connection may have been ended meanwhile (its idle timeout is the
        // lease too): then once more on a new one.
        let mut taken = match state.session.as_mut() {
            Some(session) => session.fetch_bool(&take).await,
            None => Err(sqlx::Error::PoolClosed),
        };
        if taken.is_err() {
            state.session = None;
            let mut session = self.db.session().await.map_err(&at)?;
            // The lease: the server ends a session idle this long, and the lock with it.
            let timeout = match dialect {
                Dialect::MySql => {
                    format!("SET SESSION wait_timeout = {}", self.lease.as_secs().max(1))
                }
                _ => format!("SET idle_session_timeout = {}", self.lease_ms()),
            };
            session.execute(&timeout).await.map_err(&at)?;
            taken = session.fetch_bool(&take).await;
            if taken.is_ok() {
                state.session = Some(session);
            }
        }
        match taken.map_err(&at)? {
            Some(true) => {}
            _ => return Ok(None),
        }
        state.leads = true;
        let (term, _) = self.recorded().await?;
        if !self.take_term(term, None).await? {
            // Only the lock's holder writes the row: someone wrote it without the lock.
            return Err(at(sqlx::Error::Protocol(format!(
                "{TABLE} changed under the lock of election {}",
                self.election
            ))));
        }
        Ok(u64::try_from(term + 1).ok())
    }
}

#[derive(Clone, Copy)]
enum LockOp {
    Take,
    Holds,
    Release,
}

impl Election for SqlElection {
    async fn campaign(&self) -> Result<Option<Term>, Error> {
        let mut state = self.state.lock().await;
        if std::mem::take(&mut state.leads) {
            // A term that ended without a resignation: whatever the connection still holds
            // goes with it.
            if let Some(session) = state.session.take() {
                session.close().await;
            }
        }
        state.renewed = None;
        Ok(match self.db.dialect() {
            Dialect::Sqlite => self.campaign_lease(&mut state).await?,
            _ => self.campaign_lock(&mut state).await?,
        })
    }

    async fn confirm(&self, term: Term) -> Result<bool, Error> {
        let mut state = self.state.lock().await;
        let dialect = self.db.dialect();
        if dialect != Dialect::Sqlite {
            let holds = self.lock_sql(dialect, LockOp::Holds);
            let leads = state.leads;
            let Some(session) = state.session.as_mut().filter(|_| leads) else {
                return Ok(false);
            };
            return match session.fetch_bool(&holds).await {
                Ok(holds) => Ok(holds == Some(true)),
                Err(e) => {
                    // The connection is gone, and the lock with it.
                    state.session = None;
                    Err(SqlError::new(STORE, "confirm the lock", e).into())
                }
            };
        }
        let Some(renewed) = state.renewed else {
            return Ok(false);
        };
        // Renewed within the last third of the lease: it holds without asking.
        if renewed.elapsed() < self.lease / 3 {
            return Ok(true);
        }
        let started = Instant::now();
        let mut stmt = self
            .db
            .stmt(&format!("UPDATE {TABLE} SET expires_at_ms = "));
        stmt.bind(now_ms() + self.lease_ms())
            .push(" WHERE election = ")
            .bind(self.election.as_str())
            .push(" AND holder = ")
            .bind(self.holder.as_str())
            .push(" AND term = ")
            .bind(i64::try_from(term).unwrap_or(i64::MAX));
        let renewed = self.db.execute(&stmt, STORE, "renew the lease").await? == 1;
        state.renewed = renewed.then_some(started);
        Ok(renewed)
    }

    async fn resign(&self, term: Term) -> Result<(), Error> {
        let mut state = self.state.lock().await;
        state.renewed = None;
        state.leads = false;
        let dialect = self.db.dialect();
        if let Some(mut session) = state.session.take() {
            let released = session
                .fetch_bool(&self.lock_sql(dialect, LockOp::Release))
                .await;
            session.close().await;
            released.map_err(|e| SqlError::new(STORE, "release the lock", e))?;
            return Ok(());
        }
        if dialect == Dialect::Sqlite {
            let mut stmt = self.db.stmt(&format!(
                "UPDATE {TABLE} SET expires_at_ms = 0 WHERE election = "
            ));
            stmt.bind(self.election.as_str())
                .push(" AND holder = ")
                .bind(self.holder.as_str())
                .push(" AND term = ")
                .bind(i64::try_from(term).unwrap_or(i64::MAX));
            self.db.execute(&stmt, STORE, "resign the lease").await?;
        }
        Ok(())
    }

    fn interval(&self) -> Duration {
        self.lease / 5
    }
}
