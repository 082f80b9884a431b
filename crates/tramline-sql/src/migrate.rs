//! Versioned schema migrations, one set per store and dialect (`migrations/<dialect>/<store>/`),
//! applied when a store opens and by `tramline migrate`.

use crate::{Db, Dialect, SqlError};
use sqlx::migrate::Migrator;

/// A schema a store needs; each is a set of versioned migrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Schema {
    /// The transactional outbox.
    Outbox,
    /// Dedupe records and parked messages of consumers.
    Inbox,
    /// The DB-backed log and consumer-group offsets.
    Log,
    /// The outbox in Eventuate Tram's `message` table layout.
    EventuateOutbox,
    /// Idempotency records of a command API (see [`crate::IdempotencyStore`]).
    Idempotency,
    /// Who leads each election of relays (see [`crate::election::SqlElection`]).
    Election,
}

impl Schema {
    /// The schema's migrations for `dialect`.
    pub fn migrator(self, dialect: Dialect) -> Migrator {
        match (dialect, self) {
            (Dialect::Sqlite, Schema::Outbox) => sqlx::migrate!("./migrations/sqlite/outbox"),
            (Dialect::Sqlite, Schema::Inbox) => sqlx::migrate!("./migrations/sqlite/inbox"),
            (Dialect::Sqlite, Schema::Log) => sqlx::migrate!("./migrations/sqlite/log"),
            (Dialect::MySql, Schema::Outbox) => sqlx::migrate!("./migrations/mysql/outbox"),
            (Dialect::MySql, Schema::Inbox) => sqlx::migrate!("./migrations/mysql/inbox"),
            (Dialect::MySql, Schema::Log) => sqlx::migrate!("./migrations/mysql/log"),
            (Dialect::Postgres, Schema::Outbox) => sqlx::migrate!("./migrations/postgres/outbox"),
            (Dialect::Postgres, Schema::Inbox) => sqlx::migrate!("./migrations/postgres/inbox"),
            (Dialect::Postgres, Schema::Log) => sqlx::migrate!("./migrations/postgres/log"),
            (Dialect::Sqlite, Schema::EventuateOutbox) => {
                sqlx::migrate!("./migrations/sqlite/eventuate")
            }
            (Dialect::MySql, Schema::EventuateOutbox) => {
                sqlx::migrate!("./migrations/mysql/eventuate")
            }
            (Dialect::Postgres, Schema::EventuateOutbox) => {
                sqlx::migrate!("./migrations/postgres/eventuate")
            }
            (Dialect::Sqlite, Schema::Idempotency) => {
                sqlx::migrate!("./migrations/sqlite/idempotency")
            }
            (Dialect::MySql, Schema::Idempotency) => {
                sqlx::migrate!("./migrations/mysql/idempotency")
            }
            (Dialect::Postgres, Schema::Idempotency) => {
                sqlx::migrate!("./migrations/postgres/idempotency")
            }
            (Dialect::Sqlite, Schema::Election) => sqlx::migrate!("./migrations/sqlite/election"),
            (Dialect::MySql, Schema::Election) => sqlx::migrate!("./migrations/mysql/election"),
            (Dialect::Postgres, Schema::Election) => {
                sqlx::migrate!("./migrations/postgres/election")
            }
        }
    }
}

/// Applies the migrations of each schema, in order; already applied ones are skipped.
pub async fn migrate(db: &Db, schemas: &[Schema]) -> Result<(), SqlError> {
    for schema in schemas {
        db.run_migrator(&mut schema.migrator(db.dialect())).await?;
    }
    Ok(())
}
