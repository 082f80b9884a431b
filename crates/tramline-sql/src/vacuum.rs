//! Stands in for PostgreSQL's autovacuum on a server that has it turned off.
//!
//! tramline's tables churn: every published outbox row is updated once, every retention
//! sweep deletes, the embedded log's partitions and the consumers' offsets are rewritten on
//! every batch. PostgreSQL reclaims the dead row versions this leaves, and refreshes the
//! statistics its planner chooses plans by, only when something vacuums and analyzes the
//! tables — normally autovacuum. With `autovacuum = off` nothing does: dead rows pile up,
//! deletes no longer shrink anything, and a table never analyzed keeps the planner's guesses
//! for an empty one (a dedupe lookup by `(consumer, message_id)` then reads every record of
//! the consumer, because the planner believes `consumer = $1` is selective). Measured on the
//! demo: 4,930 events/s at 20,000 orders falling to 2,644 at 100,000, against a steady
//! ~6,000 with autovacuum on.
//!
//! [`Vacuum`] asks the server once whether autovacuum runs. If it does, it does nothing.
//! If not, it does for the tables of the connection's schema (`current_schema()`: the store's
//! own) what autovacuum would: every [`Vacuum::every`] it reads `pg_stat_user_tables` and
//! runs `VACUUM (ANALYZE)` on a table whose dead or inserted rows passed the server's own
//! `autovacuum_vacuum_*` thresholds, or `ANALYZE` on one whose changes passed
//! `autovacuum_analyze_*`. A table whose owner turned autovacuum off for it
//! (`autovacuum_enabled = false`) is left alone. On SQLite and MariaDB it does nothing.

use crate::{Db, Dialect, SqlError};
use serde::Deserialize;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tramline_core::telemetry::{VACUUM_RUNS, VACUUM_STAND_IN};

/// What a pass did to one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `VACUUM (ANALYZE)`: dead or newly inserted rows passed the vacuum thresholds.
    Vacuum,
    /// `ANALYZE`: changed rows passed the analyze threshold.
    Analyze,
}

impl Action {
    /// The `action` label of [`VACUUM_RUNS`].
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Vacuum => "vacuum",
            Action::Analyze => "analyze",
        }
    }
}

/// The autovacuum stand-in of one database (see the module).
#[derive(Debug, Clone)]
pub struct Vacuum {
    db: Db,
    store: String,
    every: Duration,
}

/// One table's counters beside the thresholds, as the query returns them.
#[derive(Debug, Deserialize)]
struct Due {
    table: String,
    /// Vacuum (and analyze); else analyze only.
    vacuum: bool,
}

impl Vacuum {
    /// The stand-in of `db`, named `store` in metrics and errors, looking every 5 s.
    pub fn new(db: Db, store: impl Into<String>) -> Self {
        Vacuum {
            db,
            store: store.into(),
            every: Duration::from_secs(5),
        }
    }

    /// Looks at the tables every `every` instead (autovacuum's own naptime is a minute, but
    /// it starts on tables the moment they pass a threshold; a small table passes fast).
    pub fn every(mut self, every: Duration) -> Self {
        self.every = every;
        self
    }

    /// The store's name.
    pub fn store(&self) -> &str {
        &self.store
    }

    /// Whether this database needs the stand-in: PostgreSQL with `autovacuum` off.
    pub async fn needed(&self) -> Result<bool, SqlError> {
        if self.db.dialect() != Dialect::Postgres {
            return Ok(false);
        }
        let stmt = self
            .db
            .stmt("SELECT CAST(CASE WHEN current_setting('autovacuum') = 'on' THEN 0 ELSE 1 END AS BIGINT)");
        Ok(self
            .db
            .fetch_i64(&stmt, &self.store, "read the autovacuum setting")
            .await?
            == 1)
    }

    /// One pass: vacuums or analyzes each table of the schema past its threshold, and says
    /// what it did to which table.
    pub async fn pass(&self) -> Result<Vec<(String, Action)>, SqlError> {
        // autovacuum's rules (PostgreSQL 15, "The Autovacuum Daemon"), with the server's
        // settings: vacuum when dead rows exceed threshold + scale × rows, or inserted rows
        // since the last vacuum exceed the insert threshold + scale × rows; analyze when
        // rows changed since the last analyze exceed threshold + scale × rows. A table never
        // analyzed counts as empty (reltuples -1).
        let due: Vec<Due> = self
            .db
            .fetch_json(
                &self.db.stmt(
                    "SELECT json_agg(json_build_object('table', t, 'vacuum', v))::text \
                     FROM (SELECT format('%I.%I', s.schemaname, s.relname) AS t, \
                       s.n_dead_tup > current_setting('autovacuum_vacuum_threshold')::float8 \
                         + current_setting('autovacuum_vacuum_scale_factor')::float8 * greatest(c.reltuples, 0) \
                       OR s.n_ins_since_vacuum > current_setting('autovacuum_vacuum_insert_threshold')::float8 \
                         + current_setting('autovacuum_vacuum_insert_scale_factor')::float8 * greatest(c.reltuples, 0) AS v, \
                       s.n_mod_since_analyze > current_setting('autovacuum_analyze_threshold')::float8 \
                         + current_setting('autovacuum_analyze_scale_factor')::float8 * greatest(c.reltuples, 0) AS a \
                       FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
                       WHERE s.schemaname = current_schema() \
                         AND NOT EXISTS (SELECT 1 FROM unnest(c.reloptions) o \
                           WHERE o ~* '^autovacuum_enabled=(f|n|0|of)')) AS due \
                     WHERE v OR a",
                ),
                &self.store,
                "read the tables' counters",
            )
            .await?;
        let mut done = Vec::with_capacity(due.len());
        for table in due {
            let (sql, action) = if table.vacuum {
                (format!("VACUUM (ANALYZE) {}", table.table), Action::Vacuum)
            } else {
                (format!("ANALYZE {}", table.table), Action::Analyze)
            };
            self.db
                .execute_raw(&sql, &self.store, "vacuum a table")
                .await?;
            metrics::counter!(VACUUM_RUNS, "store" => self.store.clone(), "action" => action.as_str())
                .increment(1);
            done.push((table.table, action));
        }
        Ok(done)
    }

    /// Until `cancel` fires: on a server without autovacuum, says so once and makes a
    /// [`Vacuum::pass`] every [`Vacuum::every`]; on any other, does nothing more once it
    /// knows, but still returns only when cancelled (a supervisor counts a task that ends
    /// on its own as a failure). A failed pass (or a failure to read the setting) is logged
    /// and tried again at the next tick: it never stops a service.
    pub async fn run(&self, cancel: CancellationToken) -> Result<(), SqlError> {
        let mut every = tokio::time::interval(self.every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let gauge = metrics::gauge!(VACUUM_STAND_IN, "store" => self.store.clone());
        // First learn whether the server needs it.
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = every.tick() => {}
            }
            match self.needed().await {
                Ok(true) => break,
                Ok(false) => {
                    gauge.set(0.0);
                    cancel.cancelled().await;
                    return Ok(());
                }
                Err(e) => tracing::warn!(
                    store = %self.store,
                    error = %tramline_core::error::sentence(&e),
                    "could not read the autovacuum setting; trying again"
                ),
            }
        }
        gauge.set(1.0);
        tracing::warn!(
            store = %self.store,
            "autovacuum is off on this PostgreSQL server: tramline vacuums and analyzes its \
             schema's tables itself (docs/OPERATIONS.md, \"PostgreSQL without autovacuum\")"
        );
        // Then stand in, a pass a tick (the first one at once).
        loop {
            match self.pass().await {
                Ok(done) => {
                    for (table, action) in done {
                        tracing::debug!(store = %self.store, table, action = action.as_str(), "vacuum stand-in");
                    }
                }
                Err(e) => tracing::warn!(
                    store = %self.store,
                    error = %tramline_core::error::sentence(&e),
                    "vacuum stand-in failed; trying again at the next pass"
                ),
            }
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = every.tick() => {}
            }
        }
    }
}
