//! tramline's own migration history, `tramline_migrations`, so that its schema installs beside
//! a service's own sqlx migrations: sqlx keeps its history in `_sqlx_migrations`, where a
//! user's `0001_init.sql` would clash with tramline's `0001_outbox.sql` and where each
//! migrator refuses versions it does not know. tramline applies its migration files itself
//! (the files sqlx embeds), one at a time, each recorded with its checksum; on PostgreSQL and
//! SQLite the migration and its record commit together. A database that an earlier tramline
//! migrated through `_sqlx_migrations` is taken over: tramline's rows there (same version and
//! checksum) move into `tramline_migrations` and leave `_sqlx_migrations` to its owner.

use crate::db::Stmt;
use crate::{Db, Dialect, SqlError};
use sqlx::migrate::Migrator;
use std::collections::BTreeMap;

const STORE: &str = "migrations";
/// tramline's history table.
pub const HISTORY: &str = "tramline_migrations";

fn failed(operation: &'static str, why: String) -> SqlError {
    SqlError::new(STORE, operation, sqlx::Error::Protocol(why))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The history's row for `m`, applied now.
fn record(d: Dialect, m: &sqlx::migrate::Migration) -> Stmt {
    let mut stmt = Stmt::new(
        d,
        &format!("INSERT INTO {HISTORY} (version, description, checksum, applied_at) VALUES ("),
    );
    stmt.bind(m.version)
        .push(", ")
        .bind(m.description.to_string())
        .push(", ")
        .bind(hex(&m.checksum))
        .push(", ")
        .bind(tramline_core::envelope::now_ms())
        .push(")");
    stmt
}

impl Db {
    /// Applies `migrator`'s migrations not yet in tramline's history, in version order, each
    /// recorded there; the caller holds the database's migration lock.
    pub(crate) async fn apply_tracked(&self, migrator: &Migrator) -> Result<(), SqlError> {
        let d = self.dialect();
        let create = match d {
            Dialect::MySql => format!(
                "CREATE TABLE IF NOT EXISTS {HISTORY} (version BIGINT NOT NULL PRIMARY KEY, \
                 description TEXT NOT NULL, checksum VARCHAR(128) NOT NULL, \
                 applied_at BIGINT NOT NULL) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4"
            ),
            _ => format!(
                "CREATE TABLE IF NOT EXISTS {HISTORY} (version BIGINT NOT NULL PRIMARY KEY, \
                 description TEXT NOT NULL, checksum TEXT NOT NULL, applied_at BIGINT NOT NULL)"
            ),
        };
        self.execute(&self.stmt(&create), STORE, "create the history")
            .await?;
        self.take_over_sqlx_history(migrator).await?;
        let applied = self.applied().await?;
        for m in migrator
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
        {
            let checksum = hex(&m.checksum);
            match applied.get(&m.version) {
                Some(recorded) if *recorded == checksum => continue,
                Some(_) => {
                    return Err(failed(
                        "check applied migrations",
                        format!(
                            "migration {} ({}) was changed after it was applied",
                            m.version, m.description
                        ),
                    ))
                }
                None => {}
            }
            let record = record(d, m);
            let mut tx = self.begin(STORE).await?;
            tx.execute_raw(&m.sql, STORE, "apply a migration").await?;
            // MariaDB commits DDL at once; the record follows in the same transaction object.
            tx.execute(&record, STORE, "record a migration").await?;
            tx.commit(STORE).await?;
        }
        Ok(())
    }

    /// Version → checksum (hex) of every migration in tramline's history.
    async fn applied(&self) -> Result<BTreeMap<i64, String>, SqlError> {
        let d = self.dialect();
        let stmt = self.stmt(&format!(
            "SELECT {} FROM {HISTORY}",
            d.json_tuples(&["version", "checksum"])
        ));
        let rows: Vec<(i64, String)> = self.fetch_json(&stmt, STORE, "read the history").await?;
        Ok(rows
            .into_iter()
            .map(|(v, c)| (v, c.to_ascii_lowercase()))
            .collect())
    }

    /// Moves this migrator's rows (same version and checksum) from `_sqlx_migrations`, where
    /// an earlier tramline recorded them, into tramline's history.
    async fn take_over_sqlx_history(&self, migrator: &Migrator) -> Result<(), SqlError> {
        if self.columns_of("_sqlx_migrations").await?.is_empty() {
            return Ok(());
        }
        let d = self.dialect();
        let checksum = match d {
            Dialect::Postgres => "encode(checksum, 'hex')",
            _ => "hex(checksum)",
        };
        let stmt = self.stmt(&format!(
            "SELECT {} FROM _sqlx_migrations WHERE success",
            d.json_tuples(&["version", checksum])
        ));
        let recorded: Vec<(i64, String)> =
            self.fetch_json(&stmt, STORE, "read sqlx's history").await?;
        let recorded: BTreeMap<i64, String> = recorded
            .into_iter()
            .map(|(v, c)| (v, c.to_ascii_lowercase()))
            .collect();
        let ours: Vec<_> = migrator
            .iter()
            .filter(|m| recorded.get(&m.version) == Some(&hex(&m.checksum)))
            .collect();
        for m in ours {
            let mut tx = self.begin(STORE).await?;
            tx.execute(&record(d, m), STORE, "take over a migration")
                .await?;
            let mut forget = tx.stmt("DELETE FROM _sqlx_migrations WHERE version = ");
            forget.bind(m.version);
            tx.execute(&forget, STORE, "take over a migration").await?;
            tx.commit(STORE).await?;
        }
        Ok(())
    }
}
