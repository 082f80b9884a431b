//! Reading a declared read model's table the way readers see it: one row by key, and pages
//! of rows filtered by column values, in key order (keyset pagination, so a page costs the
//! same at any depth). Rows a group deleted are never returned. Values come back as their
//! column type's canonical text (see [`canonical`]).

use super::{read_back, select_expr, ReadModelTable};
use crate::{Db, Dialect, SqlError, Stmt};
use std::collections::BTreeMap;
use tramline_core::readmodel::ColumnType;

/// A row as readers see it: column → canonical text (`None` for NULL), the key included.
pub type Row = BTreeMap<String, Option<String>>;

/// Why a filter cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// No such column.
    #[error("{0:?} is not a column of the view")]
    UnknownColumn(String),
    /// The column's type cannot be compared for equality in every database.
    #[error("{column:?} is a {ty} column, which cannot be filtered on")]
    NotFilterable {
        /// The column.
        column: String,
        /// Its type.
        ty: &'static str,
    },
    /// The value is not one of the column's type.
    #[error("{column:?}: {value:?} {why}")]
    Value {
        /// The column.
        column: String,
        /// The value.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// A condition of a page: `column` equals `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    column: String,
    ty: ColumnType,
    value: String,
}

/// `value` as the canonical text of `ty` (what [`ReadModelTable::get`] returns), or why it is
/// not one of its values.
pub fn canonical_value(ty: ColumnType, value: &str) -> Result<String, &'static str> {
    super::canonical(ty, value)
}

/// A column type's name as the declaration format spells it.
pub fn type_name(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Text => "text",
        ColumnType::Integer => "integer",
        ColumnType::Decimal { .. } => "decimal",
        ColumnType::Boolean => "boolean",
        ColumnType::Timestamp => "timestamp",
        ColumnType::Json => "json",
        _ => "other",
    }
}

impl ReadModelTable {
    /// The columns readers see, the key first, then every group's columns in declaration
    /// order.
    pub fn columns(&self) -> Vec<(&str, ColumnType)> {
        let d = &self.declaration;
        std::iter::once((d.key.name.as_str(), d.key.ty))
            .chain(
                d.groups
                    .iter()
                    .flat_map(|g| g.columns.iter().map(|c| (c.name.as_str(), c.ty))),
            )
            .collect()
    }

    /// A filter `column = value`, checked against the column's type.
    pub fn filter(&self, column: &str, value: &str) -> Result<Filter, FilterError> {
        let ty = self
            .columns()
            .into_iter()
            .find(|(c, _)| *c == column)
            .map(|(_, ty)| ty)
            .ok_or_else(|| FilterError::UnknownColumn(column.to_owned()))?;
        if matches!(ty, ColumnType::Json | ColumnType::Timestamp) {
            return Err(FilterError::NotFilterable {
                column: column.to_owned(),
                ty: type_name(ty),
            });
        }
        let value = canonical_value(ty, value).map_err(|why| FilterError::Value {
            column: column.to_owned(),
            value: value.to_owned(),
            why,
        })?;
        Ok(Filter {
            column: column.to_owned(),
            ty,
            value,
        })
    }

    /// The row of `key`, unless there is none or a group deleted it.
    pub async fn get(&self, db: &Db, key: &str) -> Result<Option<Row>, SqlError> {
        let d = db.dialect();
        let sql = format!(
            "{} WHERE {} AND {} = ",
            self.json_rows(d, &self.declaration.table),
            self.visible(),
            self.declaration.key.name
        );
        let mut stmt = Stmt::new(d, &sql);
        stmt.bind(key);
        let rows = self.fetch(db, &stmt, "read a row").await?;
        Ok(rows.into_iter().next())
    }

    /// Up to `limit` rows with keys after `after` (`""`: from the first) that match every
    /// filter, in key order (byte order of the keys' UTF-8, on every database).
    pub async fn page(
        &self,
        db: &Db,
        filters: &[Filter],
        after: &str,
        limit: u32,
    ) -> Result<Vec<Row>, SqlError> {
        let d = db.dialect();
        let key = &self.declaration.key.name;
        let collate = match d {
            Dialect::Postgres => " COLLATE \"C\"",
            _ => "",
        };
        // Ordered and limited in a subquery, folded into JSON outside it (PostgreSQL does not
        // take both in one SELECT); the page is sorted again once read.
        let inner = format!(
            "(SELECT * FROM {} WHERE {} AND {key}{collate} > ",
            self.declaration.table,
            self.visible()
        );
        let mut stmt = Stmt::new(d, &self.json_rows(d, &inner));
        stmt.bind(after);
        for f in filters {
            stmt.push(&format!(" AND {} = ", f.column));
            bind_filter(&mut stmt, d, f);
        }
        stmt.push(&format!(" ORDER BY {key}{collate} LIMIT "))
            .bind(i64::from(limit))
            .push(") AS page");
        let mut rows = self.fetch(db, &stmt, "read a page").await?;
        rows.sort_unstable_by(|a, b| a.get(key.as_str()).cmp(&b.get(key.as_str())));
        Ok(rows)
    }

    /// Every row a reader sees (rows a group deleted are left out): key → column → value in
    /// its column type's canonical text, the same on every database (`12.50`, `true`,
    /// `2026-12-02T10:15:00.000000Z`, compact JSON with sorted keys).
    pub async fn rows(&self, db: &Db) -> Result<BTreeMap<String, Row>, SqlError> {
        let d = db.dialect();
        let sql = format!(
            "{} WHERE {}",
            self.json_rows(d, &self.declaration.table),
            self.visible()
        );
        let key = &self.declaration.key.name;
        Ok(self
            .fetch(db, &Stmt::new(d, &sql), "read rows")
            .await?
            .into_iter()
            .map(|mut row| (row.remove(key).flatten().unwrap_or_default(), row))
            .collect())
    }

    /// The rows of `source` (the table or a subquery) folded into a JSON array of objects.
    fn json_rows(&self, d: Dialect, source: &str) -> String {
        let columns = self.columns();
        let exprs: Vec<(&str, String)> = columns
            .iter()
            .map(|(c, ty)| (*c, select_expr(d, c, *ty)))
            .collect();
        let pairs: Vec<(&str, &str)> = exprs.iter().map(|(c, e)| (*c, e.as_str())).collect();
        format!("SELECT {} FROM {source}", d.json_objects(&pairs))
    }

    /// The condition that a row is visible: no group deleted it.
    fn visible(&self) -> String {
        let mut visible = vec!["1 = 1".to_owned()];
        visible.extend(
            self.groups
                .iter()
                .filter_map(|g| g.presence.as_ref())
                .map(|(presence, _)| format!("({presence} IS NULL OR {presence} = 1)")),
        );
        visible.join(" AND ")
    }

    async fn fetch(&self, db: &Db, stmt: &Stmt, what: &'static str) -> Result<Vec<Row>, SqlError> {
        let found: Vec<Row> = db.fetch_json(stmt, &self.store, what).await?;
        let types: BTreeMap<&str, ColumnType> = self.columns().into_iter().collect();
        Ok(found
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|(c, v)| {
                        let v = match types.get(c.as_str()) {
                            Some(ty) => read_back(*ty, v),
                            None => v,
                        };
                        (c, v)
                    })
                    .collect()
            })
            .collect())
    }
}

/// Binds a filter's canonical value so that it compares equal to the stored one.
fn bind_filter(stmt: &mut Stmt, d: Dialect, f: &Filter) {
    match (d, f.ty) {
        (_, ColumnType::Integer) => {
            stmt.bind(f.value.parse::<i64>().unwrap_or_default());
        }
        (Dialect::Postgres, ColumnType::Boolean) => {
            stmt.push("CAST(")
                .bind(f.value.as_str())
                .push(" AS BOOLEAN)");
        }
        (_, ColumnType::Boolean) => {
            stmt.bind(i64::from(f.value == "true"));
        }
        (Dialect::Sqlite, ColumnType::Decimal { .. }) => {
            stmt.bind(f.value.as_str());
        }
        (_, ColumnType::Decimal { precision, scale }) => {
            stmt.push("CAST(")
                .bind(f.value.as_str())
                .push(&format!(" AS DECIMAL({precision}, {scale}))"));
        }
        _ => {
            stmt.bind(f.value.as_str());
        }
    }
}
