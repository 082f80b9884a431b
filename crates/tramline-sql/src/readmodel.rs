//! A declared read model's table and its guarded writes (`tramline_core::readmodel` says the
//! rule; this writes it in SQL).
//!
//! The table has the key, every declared column, and per group: one version column per
//! *version set* (columns written by the same events, [`Declaration::version_sets`]; a
//! snapshot group has one), the presence register `<group>__present` with its version
//! `<group>__version` (the newest version of the group applied to the row), and for a group
//! ordered by record positions `<group>__origin`, where its events for the row come from.
//! A batch is one multi-row upsert, a row per key in key order (so concurrent batches lock
//! rows in one order and cannot deadlock), whose assignments are guarded version set by
//! version set ([`Dialect::register_upsert`]): no read-modify-write and no insert race. A
//! batch first keeps, per key and version set, only the newest change that writes it
//! (PostgreSQL refuses an upsert touching one row twice); a set the batch does not write has
//! a NULL version, which leaves it as it is. After the upsert, the stored origins of
//! positional groups are compared with the batch's, and a difference fails the batch.

use crate::{insert_rows, Db, Dialect, SqlError, Tx};
use std::collections::BTreeMap;
use tramline_core::readmodel::{
    Change, ColumnType, Declaration, DeclarationError, MergeError, Origin, VersionSource, PRESENCE,
};

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
    /// For a positional group: where its events for the row come from
    /// (`topic/partition/record key`), set by the first and checked for every later one.
    origin: Option<String>,
}

/// A declared read model's table on a database.
#[derive(Debug, Clone)]
pub struct ReadModelTable {
    declaration: Declaration,
    groups: Vec<GroupTable>,
}

/// One group's part of a batch for one key: the newest change writing each version set,
/// and the group's newest change.
type GroupNewest<'a> = (Vec<Option<&'a Change>>, Option<&'a Change>);

/// A change to apply: the view key and what the event writes.
pub type KeyedChange = (String, Change);

/// Why changes could not be applied to a read model's table.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadModelError {
    /// The database failed.
    #[error(transparent)]
    Sql(#[from] SqlError),
    /// A value is not of its column's type.
    #[error("view key {key:?}: column {column}: {value:?} {why}")]
    Value {
        /// The view key.
        key: String,
        /// The column.
        column: String,
        /// The value given.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A positional change from another partition or aggregate than the group's first.
    #[error("view key {key:?}")]
    Origin {
        /// The view key.
        key: String,
        /// The conflict.
        #[source]
        source: MergeError,
    },
}

impl ReadModelError {
    /// Whether trying again may succeed (deadlock, busy, lost connection).
    pub fn is_transient(&self) -> bool {
        matches!(self, ReadModelError::Sql(e) if e.is_transient())
    }
}

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
                    origin: (g.version == VersionSource::Position)
                        .then(|| format!("{}__origin", g.name)),
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
            if let Some(origin) = &g.origin {
                columns.push(format!("{origin} TEXT"));
            }
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
    pub async fn apply(&self, tx: &mut Tx, changes: &[KeyedChange]) -> Result<(), ReadModelError> {
        let rows = self.newest(changes)?;
        if rows.is_empty() {
            return Ok(());
        }
        let dialect = tx.dialect();
        let table = &self.declaration.table;
        let mut names = vec![self.declaration.key.name.as_str()];
        let mut guarded: Vec<(&str, Vec<&str>)> = Vec::new();
        for g in &self.groups {
            for set in &g.sets {
                names.extend(set.columns.iter().map(|(c, _)| c.as_str()));
                names.push(&set.version);
                guarded.push((
                    &set.version,
                    set.columns.iter().map(|(c, _)| c.as_str()).collect(),
                ));
            }
            names.extend([g.presence.as_str(), g.version.as_str()]);
            names.extend(g.origin.as_deref());
            guarded.push((&g.version, vec![&g.presence]));
        }
        let insert = format!("INSERT INTO {table} ({})", names.join(", "));
        let mut upsert = dialect.register_upsert(table, &self.declaration.key.name, &guarded);
        for origin in self.groups.iter().filter_map(|g| g.origin.as_deref()) {
            // The first origin stays; later ones are compared with it below.
            upsert += &match dialect {
                Dialect::MySql => format!(", {origin} = COALESCE({origin}, VALUES({origin}))"),
                _ => format!(", {origin} = COALESCE({table}.{origin}, excluded.{origin})"),
            };
        }
        insert_rows(
            tx,
            STORE,
            "upsert",
            &insert,
            &upsert,
            &rows,
            |row, (key, groups)| {
                row.bind(*key);
                for (g, (sets, last)) in self.groups.iter().zip(groups) {
                    for (set, change) in g.sets.iter().zip(sets) {
                        for (column, ty) in &set.columns {
                            let value =
                                change.and_then(|c| c.writes.get(column).cloned().flatten());
                            bind_value(row, dialect, *ty, value);
                        }
                        row.bind(change.map(|c| c.version));
                    }
                    // 1 while present, 0 once deleted; NULL where the group never wrote (and a
                    // NULL version: this batch leaves the group as it is).
                    let present = last
                        .map(|c| i64::from(c.writes.get(PRESENCE).is_some_and(Option::is_some)));
                    row.bind(present);
                    row.bind(last.map(|c| c.version));
                    if g.origin.is_some() {
                        row.bind(&last.and_then(|c| c.origin.as_ref()).map(origin_text));
                    }
                }
            },
        )
        .await?;
        if self.groups.iter().any(|g| g.origin.is_some()) {
            self.check_origins(tx, &rows).await?;
        }
        Ok(())
    }

    /// Per key (in order), per group: the newest change writing each version set and the
    /// group's newest change; values checked against their columns' types.
    fn newest<'a>(
        &self,
        changes: &'a [KeyedChange],
    ) -> Result<Vec<(&'a str, Vec<GroupNewest<'a>>)>, ReadModelError> {
        let mut rows: BTreeMap<&str, Vec<GroupNewest<'_>>> = BTreeMap::new();
        for (key, change) in changes {
            let Some(at) = self.groups.iter().position(|g| g.name == change.group) else {
                continue;
            };
            let g = &self.groups[at];
            let groups = rows.entry(key.as_str()).or_insert_with(|| {
                self.groups
                    .iter()
                    .map(|g| (vec![None; g.sets.len()], None))
                    .collect()
            });
            let (sets, last) = &mut groups[at];
            if let (Some(first), Some(now)) = (last.and_then(|c| c.origin.as_ref()), &change.origin)
            {
                if first != now {
                    return Err(ReadModelError::Origin {
                        key: key.clone(),
                        source: MergeError::OtherOrigin {
                            group: g.name.clone(),
                            first: Box::new(first.clone()),
                            now: Box::new(now.clone()),
                        },
                    });
                }
            }
            if last.is_none_or(|seen| change.version > seen.version) {
                *last = Some(change);
            }
            for (slot, set) in sets.iter_mut().zip(&g.sets) {
                let writes = change.writes.contains_key(&set.columns[0].0);
                if writes && slot.is_none_or(|seen| change.version > seen.version) {
                    *slot = Some(change);
                }
            }
            for (column, ty) in g.sets.iter().flat_map(|s| &s.columns) {
                if let Some(Some(v)) = change.writes.get(column) {
                    check_value(*ty, v).map_err(|why| ReadModelError::Value {
                        key: key.clone(),
                        column: column.clone(),
                        value: v.clone(),
                        why,
                    })?;
                }
            }
        }
        Ok(rows.into_iter().collect())
    }

    /// Refuses the batch (its transaction rolls back) if a row's positional group was fed
    /// from another origin than this batch's change for it.
    async fn check_origins(
        &self,
        tx: &mut Tx,
        rows: &[(&str, Vec<GroupNewest<'_>>)],
    ) -> Result<(), ReadModelError> {
        let key = &self.declaration.key.name;
        let origins: Vec<&str> = self
            .groups
            .iter()
            .filter_map(|g| g.origin.as_deref())
            .collect();
        let mut fields = vec![key.as_str()];
        fields.extend(&origins);
        for chunk in rows.chunks(crate::db::ROWS_PER_STATEMENT) {
            let mut stmt = tx.stmt(&format!(
                "SELECT {} FROM {} WHERE {key} IN ",
                tx.dialect().json_tuples(&fields),
                self.declaration.table
            ));
            stmt.bind_list(chunk.iter().map(|(k, _)| *k));
            let stored: Vec<Vec<Option<String>>> =
                tx.fetch_json(&stmt, STORE, "check origins").await?;
            let stored: BTreeMap<String, Vec<Option<String>>> = stored
                .into_iter()
                .filter_map(|mut row| {
                    let k = row.remove(0)?;
                    Some((k, row))
                })
                .collect();
            for (k, groups) in chunk {
                let positional = self
                    .groups
                    .iter()
                    .zip(groups)
                    .filter(|(g, _)| g.origin.is_some());
                for (i, (g, (_, last))) in positional.enumerate() {
                    let now = last.and_then(|c| c.origin.as_ref());
                    let first = stored.get(*k).and_then(|row| row.get(i)).cloned().flatten();
                    if let (Some(now), Some(first)) = (now, first) {
                        if origin_text(now) != first {
                            return Err(ReadModelError::Origin {
                                key: (*k).to_owned(),
                                source: MergeError::OtherOrigin {
                                    group: g.name.clone(),
                                    first: Box::new(parse_origin(&first)),
                                    now: Box::new(now.clone()),
                                },
                            });
                        }
                    }
                }
            }
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

/// An origin as the table keeps it: `topic/partition/record key` (a Kafka topic name holds
/// no `/`).
fn origin_text(o: &Origin) -> String {
    format!("{}/{}/{}", o.topic, o.partition, o.record_key)
}

fn parse_origin(text: &str) -> Origin {
    let mut parts = text.splitn(3, '/');
    Origin {
        topic: parts.next().unwrap_or_default().to_owned(),
        partition: parts.next().and_then(|p| p.parse().ok()).unwrap_or(-1),
        record_key: parts.next().unwrap_or_default().to_owned(),
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

/// A declared read model as a consumer: decode each record by the declaration, claim its
/// message id, apply the new changes and commit, all in one transaction; the consumer runtime
/// commits offsets only after that. Records the view does not react to are claimed too (so a
/// redelivery counts as a duplicate) and change nothing; a record that cannot be decoded, has
/// a value of the wrong type or comes from another origin is poison, parked with its reason.
#[derive(Debug)]
pub struct ReadModelProjection {
    db: Db,
    inbox: crate::Inbox,
    table: ReadModelTable,
}

impl ReadModelProjection {
    /// The projection of `table` in `db` (whose inbox schema and table must exist), its
    /// dedupe records under `consumer`.
    pub fn new(db: Db, consumer: &str, table: ReadModelTable) -> Self {
        ReadModelProjection {
            db,
            inbox: crate::Inbox::new(consumer),
            table,
        }
    }

    /// The table it writes.
    pub fn table(&self) -> &ReadModelTable {
        &self.table
    }

    /// The inbox, e.g. to count parked messages.
    pub fn inbox(&self) -> &crate::Inbox {
        &self.inbox
    }
}

impl tramline_core::ports::Handler for ReadModelProjection {
    async fn apply(
        &self,
        batch: &[tramline_core::Record],
    ) -> Result<tramline_core::ports::Applied, tramline_core::Error> {
        use tramline_core::Error;
        if batch.is_empty() {
            return Ok(Default::default());
        }
        // Decode before claiming: a poison message must leave no dedupe record behind.
        let mut decoded = Vec::with_capacity(batch.len());
        for record in batch {
            let change = self
                .table
                .declaration()
                .decode(record)
                .map_err(|e| Error::poison(&record.envelope, e))?;
            decoded.push(change);
        }
        let mut tx = self.db.begin(STORE).await?;
        let new = self.inbox.claim(&mut tx, batch).await?;
        let fresh: Vec<KeyedChange> = decoded
            .into_iter()
            .zip(&new)
            .filter_map(|(change, new)| if *new { change } else { None })
            .collect();
        let applied = new.iter().filter(|n| **n).count();
        // A refusal names the batch's first record; the runtime then applies record by record
        // to find the one to park.
        self.table
            .apply(&mut tx, &fresh)
            .await
            .map_err(|e| match e {
                ReadModelError::Sql(e) => Error::from(e),
                other => Error::poison(&batch[0].envelope, poison_reason(&other)),
            })?;
        tx.commit(STORE).await?;
        Ok(tramline_core::ports::Applied {
            applied,
            duplicates: batch.len() - applied,
        })
    }

    async fn park(
        &self,
        record: &tramline_core::Record,
        reason: &tramline_core::Error,
    ) -> Result<(), tramline_core::Error> {
        Ok(self.inbox.park(&self.db, record, reason).await?)
    }
}

/// An error and its causes in one sentence, for a parked message's reason.
fn poison_reason(e: &dyn std::error::Error) -> String {
    let mut reason = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        reason.push_str(": ");
        reason.push_str(&c.to_string());
        cause = c.source();
    }
    reason
}
