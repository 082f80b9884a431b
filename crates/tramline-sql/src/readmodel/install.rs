//! Installing a declared read model's table: created when missing, and refused at start when
//! an existing table does not have exactly the columns the declaration needs (a declaration
//! changed under a table that was built for another one; see `tramline view rebuild`).

use super::{ReadModelTable, STORE};
use crate::{Db, Dialect, SqlError};

/// Why a read model's table cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// The database failed.
    #[error(transparent)]
    Sql(#[from] SqlError),
    /// The table exists with other columns than the declaration needs.
    #[error("table {table} does not match the declaration: {}", differences(.missing, .unexpected))]
    Mismatch {
        /// The table.
        table: String,
        /// Columns the declaration needs that the table lacks.
        missing: Vec<String>,
        /// Columns the table has that the declaration does not know.
        unexpected: Vec<String>,
    },
}

fn differences(missing: &[String], unexpected: &[String]) -> String {
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("it lacks {}", missing.join(", ")));
    }
    if !unexpected.is_empty() {
        parts.push(format!("it has {} besides", unexpected.join(", ")));
    }
    parts.join("; ")
}

impl ReadModelTable {
    /// Creates the table if it is missing; an existing table must have exactly the columns
    /// the declaration needs (names compared without regard to case, as the databases do).
    pub async fn install(&self, db: &Db) -> Result<(), InstallError> {
        let existing = db.columns_of(&self.declaration.table).await?;
        if existing.is_empty() {
            self.create(db).await?;
            return Ok(());
        }
        let needed: Vec<String> = self
            .physical_columns(db.dialect())
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        let has = |list: &[String], name: &str| list.iter().any(|c| c.eq_ignore_ascii_case(name));
        let missing: Vec<String> = needed
            .iter()
            .filter(|c| !has(&existing, c))
            .cloned()
            .collect();
        let unexpected: Vec<String> = existing
            .iter()
            .filter(|c| !has(&needed, c))
            .cloned()
            .collect();
        if missing.is_empty() && unexpected.is_empty() {
            Ok(())
        } else {
            Err(InstallError::Mismatch {
                table: self.declaration.table.clone(),
                missing,
                unexpected,
            })
        }
    }
}

impl Db {
    /// `table`'s columns as the database has them (none: no such table).
    pub(crate) async fn columns_of(&self, table: &str) -> Result<Vec<String>, SqlError> {
        let d = self.dialect();
        let sql = match d {
            Dialect::Sqlite => "SELECT json_group_array(name) FROM pragma_table_info(",
            Dialect::MySql => {
                "SELECT JSON_ARRAYAGG(column_name) FROM information_schema.columns \
                 WHERE table_schema = DATABASE() AND table_name = "
            }
            Dialect::Postgres => {
                "SELECT json_agg(column_name)::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = "
            }
        };
        let mut stmt = self.stmt(sql);
        stmt.bind(table);
        if d == Dialect::Sqlite {
            stmt.push(")");
        }
        self.fetch_json(&stmt, STORE, "read a table's columns")
            .await
    }
}
