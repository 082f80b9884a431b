//! A declared read model's table and its guarded writes (`tramline_core::readmodel` says the
//! rule; this writes it in SQL).
//!
//! The table has the key, every declared column, and per group: one version column per
//! *version set* (columns written by the same events, [`Declaration::version_sets`]; a
//! snapshot group has one), the presence register `<group>__present` with its version
//! `<group>__version` (the newest version of the group applied to the row). A batch is
//! written per group with one multi-row upsert whose assignments are guarded set by set
//! ([`Dialect::register_upsert`]): no read-modify-write, no insert race, and rows written in
//! key order so concurrent batches lock them in one order. A batch first keeps, per key and
//! version set, only the newest change that writes it (PostgreSQL refuses an upsert touching
//! one row twice).

use crate::{insert_rows, Db, Dialect, SqlError, Tx};
use std::collections::BTreeMap;
use tramline_core::readmodel::{Change, ColumnType, Declaration, DeclarationError, PRESENCE};

const STORE: &str = "read model";

/// One version set of a group: its version column and the columns it guards.
#[derive(Debug, Clone)]
struct VersionSet {
    version: String,
    columns: Vec<(String, ColumnType)>,
}

/// A group's columns as the table holds them.
#[derive(Debug, Clone)]
struct GroupTable {
    name: String,
    sets: Vec<VersionSet>,
    presence: String,
    version: String,
}

/// A declared read model's table on a database.
#[derive(Debug, Clone)]
pub struct ReadModelTable {
    declaration: Declaration,
    groups: Vec<GroupTable>,
}

/// A change to apply: the view key and what the event writes.
pub type KeyedChange = (String, Change);

impl ReadModelTable {
    /// The table of `declaration`, or every reason it cannot be made safe.
    pub fn new(declaration: Declaration) -> Result<Self, Vec<DeclarationError>> {
        let problems = declaration.validate();
        if !problems.is_empty() {
            return Err(problems);
        }
        let groups = declaration
            .groups
            .iter()
            .map(|g| {
                let types: BTreeMap<&str, ColumnType> =
                    g.columns.iter().map(|c| (c.name.as_str(), c.ty)).collect();
                let sets = declaration
                    .version_sets(&g.name)
                    .into_iter()
                    .enumerate()
                    .map(|(i, columns)| VersionSet {
                        version: format!("{}__v{i}", g.name),
                        columns: columns
                            .into_iter()
                            .map(|c| {
                                let ty = types[c.as_str()];
                                (c, ty)
                            })
                            .collect(),
                    })
                    .collect();
                GroupTable {
                    name: g.name.clone(),
                    sets,
                    presence: format!("{}__present", g.name),
                    version: format!("{}__version", g.name),
                }
            })
            .collect();
        Ok(ReadModelTable {
            declaration,
            groups,
        })
    }

    /// The declaration.
    pub fn declaration(&self) -> &Declaration {
        &self.declaration
    }

    /// `CREATE TABLE IF NOT EXISTS` for the table on `dialect`.
    pub fn create_sql(&self, dialect: Dialect) -> String {
        let d = &self.declaration;
        let key_type = match dialect {
            Dialect::MySql => "VARCHAR(255)",
            _ => "TEXT",
        };
        let mut columns = vec![format!("{} {key_type} NOT NULL PRIMARY KEY", d.key.name)];
        for g in &self.groups {
            for set in &g.sets {
                for (column, ty) in &set.columns {
                    columns.push(format!("{column} {}", sql_type(dialect, *ty)));
                }
                columns.push(format!("{} BIGINT", set.version));
            }
            columns.push(format!("{} SMALLINT", g.presence));
            columns.push(format!("{} BIGINT", g.version));
        }
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({})",
            d.table,
            columns.join(", ")
        )
    }

    /// Creates the table if it is missing.
    pub async fn create(&self, db: &Db) -> Result<(), SqlError> {
        let stmt = db.stmt(&self.create_sql(db.dialect()));
        db.execute(&stmt, STORE, "create table").await?;
        Ok(())
    }

    /// Applies `changes` in `tx`: per group one guarded upsert of the newest change per key
    /// and version set, keys in order.
    pub async fn apply(&self, tx: &mut Tx, changes: &[KeyedChange]) -> Result<(), SqlError> {
        for g in &self.groups {
            // key → (per set: the newest change writing it; the newest change of the group).
            let mut newest: BTreeMap<&str, (Vec<Option<&Change>>, &Change)> = BTreeMap::new();
            for (key, change) in changes.iter().filter(|(_, c)| c.group == g.name) {
                let entry = newest
                    .entry(key.as_str())
                    .or_insert_with(|| (vec![None; g.sets.len()], change));
                if change.version > entry.1.version {
                    entry.1 = change;
                }
                for (i, set) in g.sets.iter().enumerate() {
                    let writes = change.writes.contains_key(&set.columns[0].0);
                    let newer = entry.0[i].is_none_or(|seen| change.version > seen.version);
                    if writes && newer {
                        entry.0[i] = Some(change);
                    }
                }
            }
            if newest.is_empty() {
                continue;
            }
            for (key, (sets, _)) in &newest {
                for (set, change) in g.sets.iter().zip(sets) {
                    for (column, ty) in &set.columns {
                        let value = change
                            .and_then(|c| c.writes.get(column))
                            .and_then(Option::as_deref);
                        if let Some(v) = value {
                            check_value(*ty, v).map_err(|why| {
                                SqlError::new(
                                    STORE,
                                    "convert a value",
                                    sqlx::Error::Encode(
                                        format!("{key}: column {column}: {v:?} {why}").into(),
                                    ),
                                )
                            })?;
                        }
                    }
                }
            }
            let rows: Vec<_> = newest.into_iter().collect();
            let mut names = vec![self.declaration.key.name.as_str()];
            for set in &g.sets {
                names.extend(set.columns.iter().map(|(c, _)| c.as_str()));
                names.push(&set.version);
            }
            names.extend([g.presence.as_str(), g.version.as_str()]);
            let insert = format!(
                "INSERT INTO {} ({})",
                self.declaration.table,
                names.join(", ")
            );
            let mut guarded: Vec<(&str, Vec<&str>)> = g
                .sets
                .iter()
                .map(|s| {
                    let columns = s.columns.iter().map(|(c, _)| c.as_str()).collect();
                    (s.version.as_str(), columns)
                })
                .collect();
            guarded.push((g.version.as_str(), vec![g.presence.as_str()]));
            let dialect = tx.dialect();
            let upsert = dialect.register_upsert(
                &self.declaration.table,
                &self.declaration.key.name,
                &guarded,
            );
            insert_rows(
                tx,
                STORE,
                "upsert",
                &insert,
                &upsert,
                &rows,
                |row, (key, (sets, last))| {
                    row.bind(*key);
                    for (set, change) in g.sets.iter().zip(sets) {
                        for (column, ty) in &set.columns {
                            let value =
                                change.and_then(|c| c.writes.get(column).cloned().flatten());
                            bind_value(row, dialect, *ty, value);
                        }
                        row.bind(change.map(|c| c.version));
                    }
                    // 1 while present, 0 once deleted; NULL only where the group never wrote.
                    let present = last.writes.get(PRESENCE).is_some_and(Option::is_some);
                    row.bind(i64::from(present));
                    row.bind(Some(last.version));
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Every row a reader sees (rows a group deleted are left out): key → column → value as
    /// text.
    pub async fn rows(
        &self,
        db: &Db,
    ) -> Result<BTreeMap<String, BTreeMap<String, Option<String>>>, SqlError> {
        let d = db.dialect();
        let mut fields = vec![(
            self.declaration.key.name.clone(),
            as_text(d, &self.declaration.key.name),
        )];
        let mut presence = Vec::new();
        for g in &self.groups {
            for set in &g.sets {
                for (column, _) in &set.columns {
                    fields.push((column.clone(), as_text(d, column)));
                }
            }
            presence.push(format!("({0} IS NULL OR {0} = 1)", g.presence));
        }
        let pairs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, e)| (k.as_str(), e.as_str()))
            .collect();
        let stmt = db.stmt(&format!(
            "SELECT {} FROM {} WHERE {}",
            d.json_objects(&pairs),
            self.declaration.table,
            presence.join(" AND ")
        ));
        let found: Vec<BTreeMap<String, Option<String>>> =
            db.fetch_json(&stmt, STORE, "read rows").await?;
        let key = &self.declaration.key.name;
        Ok(found
            .into_iter()
            .map(|mut row| {
                let k = row.remove(key).flatten().unwrap_or_default();
                (k, row)
            })
            .collect())
    }
}

/// The column type of `ty` on `dialect`. SQLite keeps decimals as text, so they stay exact.
fn sql_type(dialect: Dialect, ty: ColumnType) -> String {
    match (dialect, ty) {
        (_, ColumnType::Text) => "TEXT".into(),
        (Dialect::Sqlite, ColumnType::Integer) => "INTEGER".into(),
        (_, ColumnType::Integer) => "BIGINT".into(),
        (Dialect::Sqlite, ColumnType::Decimal { .. }) => "TEXT".into(),
        (_, ColumnType::Decimal { precision, scale }) => format!("DECIMAL({precision}, {scale})"),
        (Dialect::Postgres, ColumnType::Boolean) => "BOOLEAN".into(),
        (_, ColumnType::Boolean) => "SMALLINT".into(),
        (Dialect::Sqlite, ColumnType::Timestamp) => "TEXT".into(),
        (Dialect::MySql, ColumnType::Timestamp) => "DATETIME(6)".into(),
        (Dialect::Postgres, ColumnType::Timestamp) => "TIMESTAMPTZ".into(),
        (Dialect::Sqlite, ColumnType::Json) => "TEXT".into(),
        (Dialect::MySql, ColumnType::Json) => "JSON".into(),
        (Dialect::Postgres, ColumnType::Json) => "JSONB".into(),
        (_, _) => "TEXT".into(),
    }
}

/// Whether `value` is one of `ty`'s (the stores convert the rest).
fn check_value(ty: ColumnType, value: &str) -> Result<(), &'static str> {
    match ty {
        ColumnType::Integer if value.parse::<i64>().is_err() => Err("is not a whole number"),
        ColumnType::Decimal { .. } if value.parse::<f64>().is_err() => Err("is not a decimal"),
        _ => Ok(()),
    }
}

/// Binds a column's value, converted for its type.
fn bind_value(
    row: &mut crate::db::Tuple<'_>,
    dialect: Dialect,
    ty: ColumnType,
    value: Option<String>,
) {
    match (dialect, ty) {
        (_, ColumnType::Integer) => {
            row.bind(value.and_then(|v| v.parse::<i64>().ok()));
        }
        (Dialect::Postgres, ColumnType::Text) | (Dialect::MySql, _) | (Dialect::Sqlite, _) => {
            row.bind(&value);
        }
        (Dialect::Postgres, other) => {
            row.bind_cast(&value, &sql_type(Dialect::Postgres, other));
        }
    }
}

/// A column read back as text.
fn as_text(dialect: Dialect, column: &str) -> String {
    match dialect {
        Dialect::Sqlite => format!("CAST({column} AS TEXT)"),
        Dialect::MySql => format!("CAST({column} AS CHAR)"),
        Dialect::Postgres => format!("{column}::text"),
    }
}
