//! A declared read model's table and its guarded writes (`tramline_core::readmodel` says the
//! rule; this writes it in SQL).
//!
//! The table has the key, every declared column, and per group: one version column per
//! *version set* (columns written by the same events, [`Declaration::version_sets`]):
//! `<group>_version` when the group has one (a snapshot group always does), else
//! `<group>__v<n>`; for a group with an event that deletes the row, the presence register
//! `<group>__present` with its version `<group>__version` (the newest version of the group
//! applied to the row); and for a group ordered by record positions `<group>__origin`, where
//! its events for the row come from.
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
    Change, ColumnType, Declaration, DeclarationError, Effect, MergeError, Origin, VersionSource,
    PRESENCE,
};

const STORE: &str = "read model";

mod install;
mod query;
pub use install::InstallError;
pub use query::{canonical_value, type_name, Filter, FilterError, Row};

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
    /// For a group whose events may delete the row: the presence register and its version.
    presence: Option<(String, String)>,
    /// For a positional group: where its events for the row come from
    /// (`topic/partition/record key`), set by the first and checked for every later one.
    origin: Option<String>,
}

/// A declared read model's table on a database.
#[derive(Debug, Clone)]
pub struct ReadModelTable {
    declaration: Declaration,
    groups: Vec<GroupTable>,
    /// The store name in errors: `read model <table>`.
    store: String,
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

    /// The error a consumer's handler returns for a batch this refused: the database's
    /// failure as it is; any other refusal as poison naming `first`, the batch's first record
    /// (the runtime then applies record by record to find the one to park).
    pub fn into_handler_error(self, first: &tramline_core::Record) -> tramline_core::Error {
        match self {
            ReadModelError::Sql(e) => tramline_core::Error::from(e),
            other => tramline_core::Error::poison(
                &first.envelope,
                tramline_core::error::sentence(&other),
            ),
        }
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
                let version_sets = declaration.version_sets(&g.name);
                let single = version_sets.len() == 1;
                let sets = version_sets
                    .into_iter()
                    .enumerate()
                    .map(|(i, columns)| VersionSet {
                        version: if single {
                            format!("{}_version", g.name)
                        } else {
                            format!("{}__v{i}", g.name)
                        },
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
                    presence: declaration
                        .events
                        .iter()
                        .any(|e| e.group == g.name && e.effect == Effect::DeleteRow)
                        .then(|| {
                            (
                                format!("{}__present", g.name),
                                format!("{}__version", g.name),
                            )
                        }),
                    origin: (g.version == VersionSource::Position)
                        .then(|| format!("{}__origin", g.name)),
                }
            })
            .collect();
        Ok(ReadModelTable {
            store: format!("{STORE} {}", declaration.table),
            declaration,
            groups,
        })
    }

    /// The store name its errors carry: `read model <table>`.
    pub fn store(&self) -> &str {
        &self.store
    }

    /// The declaration.
    pub fn declaration(&self) -> &Declaration {
        &self.declaration
    }

    /// Every column of the table on `dialect` with its type, the hidden ones included.
    fn physical_columns(&self, dialect: Dialect) -> Vec<(String, String)> {
        let d = &self.declaration;
        let key_type = match dialect {
            Dialect::MySql => "VARCHAR(255)",
            _ => "TEXT",
        };
        let mut columns = vec![(
            d.key.name.clone(),
            format!("{key_type} NOT NULL PRIMARY KEY"),
        )];
        for g in &self.groups {
            for set in &g.sets {
                for (column, ty) in &set.columns {
                    columns.push((column.clone(), sql_type(dialect, *ty)));
                }
                columns.push((set.version.clone(), "BIGINT".into()));
            }
            if let Some((presence, version)) = &g.presence {
                columns.push((presence.clone(), "SMALLINT".into()));
                columns.push((version.clone(), "BIGINT".into()));
            }
            if let Some(origin) = &g.origin {
                columns.push((origin.clone(), "TEXT".into()));
            }
        }
        columns
    }

    /// `CREATE TABLE IF NOT EXISTS` for the table on `dialect`.
    pub fn create_sql(&self, dialect: Dialect) -> String {
        let d = &self.declaration;
        let columns: Vec<String> = self
            .physical_columns(dialect)
            .into_iter()
            .map(|(name, ty)| format!("{name} {ty}"))
            .collect();
        // Keys compare byte by byte everywhere (MariaDB's default collation would fold case
        // and make `o-A` and `o-a` one row), so keyset pages follow one order.
        let options = match dialect {
            Dialect::MySql => " DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin",
            _ => "",
        };
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({}){options}",
            d.table,
            columns.join(", ")
        )
    }

    /// Creates the table if it is missing.
    pub async fn create(&self, db: &Db) -> Result<(), SqlError> {
        let stmt = db.stmt(&self.create_sql(db.dialect()));
        db.execute(&stmt, &self.store, "create table").await?;
        Ok(())
    }

    /// Applies `changes` in `tx`: per group one guarded upsert of the newest change per key
    /// and version set, keys in order.
    pub async fn apply(&self, tx: &mut Tx, changes: &[KeyedChange]) -> Result<(), ReadModelError> {
        let changes = self.normalise(changes)?;
        let rows = self.newest(&changes)?;
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
            if let Some((presence, version)) = &g.presence {
                names.extend([presence.as_str(), version.as_str()]);
                guarded.push((version, vec![presence]));
            }
            names.extend(g.origin.as_deref());
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
            &self.store,
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
                    if g.presence.is_some() {
                        // 1 while present, 0 once deleted; NULL where the group never wrote
                        // (and a NULL version: this batch leaves the group as it is).
                        let present = last.map(|c| {
                            i64::from(c.writes.get(PRESENCE).is_some_and(Option::is_some))
                        });
                        row.bind(present);
                        row.bind(last.map(|c| c.version));
                    }
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

    /// `changes` with every value of a declared column in its column type's canonical text
    /// ([`canonical`]), or the first value that is not of its column's type. Changes of groups
    /// the table does not have are left out (they write nothing).
    fn normalise(&self, changes: &[KeyedChange]) -> Result<Vec<KeyedChange>, ReadModelError> {
        let mut normalised = Vec::with_capacity(changes.len());
        for (key, change) in changes {
            let Some(g) = self.groups.iter().find(|g| g.name == change.group) else {
                continue;
            };
            let mut change = change.clone();
            for (column, ty) in g.sets.iter().flat_map(|s| &s.columns) {
                if let Some(Some(v)) = change.writes.get_mut(column) {
                    *v = canonical(*ty, v).map_err(|why| ReadModelError::Value {
                        key: key.clone(),
                        column: column.clone(),
                        value: v.clone(),
                        why,
                    })?;
                }
            }
            normalised.push((key.clone(), change));
        }
        Ok(normalised)
    }

    /// Per key (in order), per group: the newest change writing each version set and the
    /// group's newest change (of changes already [`normalise`](Self::normalise)d).
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
                tx.fetch_json(&stmt, &self.store, "check origins").await?;
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

/// `value` in `ty`'s canonical text, the one every database gives back, or why it is not of
/// the type (the message it makes is then poison: silently rounding or reinterpreting it
/// would make the view wrong):
///
/// - Text: as is; a NUL character is refused (PostgreSQL cannot store one).
/// - Integer: `42`, in the 64-bit range; a whole number written as a decimal or with an
///   exponent (`3.0`, `3e2`) is taken, a fraction (`3.5`) is refused.
/// - Decimal: exactly `scale` digits after the point (`12.5` → `12.50`, `-.5` → `-0.50`,
///   `1.25e1` → `12.50`), worked out on the digits (never through a float); more non-zero
///   digits after the point than `scale`, or more before it than `precision - scale`, are
///   refused. Zero has no sign.
/// - Boolean: `true` or `false` (from `true`/`1`, `false`/`0`).
/// - Timestamp: UTC `YYYY-MM-DDTHH:MM:SS.ffffffZ` (always six fraction digits), from RFC 3339
///   (any offset), RFC 1123 (`Wed, 02 Dec 2026 10:15:00 GMT`, HTTP and Eventuate headers) or
///   whole epoch milliseconds; years 1000 to 9999 (what MariaDB's DATETIME holds) and whole
///   microseconds (what every database keeps) only.
/// - Json: the compact serde_json text of the parsed value, object keys sorted; `-0.0` is
///   `0.0` (PostgreSQL's JSONB has no negative zero), and a NUL character in a string is
///   refused (JSONB cannot store one).
pub(crate) fn canonical(ty: ColumnType, value: &str) -> Result<String, &'static str> {
    match ty {
        ColumnType::Integer => {
            const RANGE: &str = "is out of the 64-bit integer range";
            let n = Exact::parse(value).ok_or("is not a whole number")?;
            if n.fraction_len() > 0 {
                return Err("is not a whole number");
            }
            if n.integer_len() > 19 {
                return Err(RANGE);
            }
            let whole: i64 = n.text(0).parse().map_err(|_| RANGE)?;
            Ok(whole.to_string())
        }
        ColumnType::Decimal { precision, scale } => {
            let n = Exact::parse(value).ok_or("is not a decimal number")?;
            if n.fraction_len() > i64::from(scale) {
                return Err("has more digits after the point than the column's scale");
            }
            if n.integer_len() > i64::from(precision.saturating_sub(scale)) {
                return Err(
                    "has more digits before the point than the column's precision leaves \
                     (precision minus scale)",
                );
            }
            Ok(n.text(usize::from(scale)))
        }
        ColumnType::Boolean => match value {
            "true" | "1" => Ok("true".to_owned()),
            "false" | "0" => Ok("false".to_owned()),
            _ => Err("is not a boolean (true, false, 1 or 0)"),
        },
        ColumnType::Timestamp => canonical_timestamp(value),
        ColumnType::Json => canonical_json(value),
        // Text, and any type added later (its column is TEXT, see `sql_type`).
        _ => {
            if value.contains('\0') {
                Err("holds a NUL character, which PostgreSQL cannot store")
            } else {
                Ok(value.to_owned())
            }
        }
    }
}

/// A number in plain or exponent notation, exactly: its significant digits and where the
/// point goes among them.
#[derive(Debug, PartialEq, Eq)]
struct Exact {
    /// Below zero (never for zero itself).
    negative: bool,
    /// The digits from the first non-zero one to the last non-zero one; empty for zero.
    digits: String,
    /// How many of `digits` stand before the point: beyond their length, zeros follow them
    /// (`12` with point 4 is 1200); below zero, zeros precede them after the point (`5` with
    /// point -1 is 0.05). 0 for zero.
    point: i64,
}

impl Exact {
    /// `[+-]digits[.digits][(e|E)[+-]digits]`, with digits on at least one side of the point
    /// (`5.` and `.5` are taken); `None` for anything else.
    fn parse(value: &str) -> Option<Exact> {
        let (negative, unsigned) = match value.as_bytes().first() {
            Some(b'-') => (true, &value[1..]),
            Some(b'+') => (false, &value[1..]),
            _ => (false, value),
        };
        let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
            Some((m, e)) => (m, Some(e)),
            None => (unsigned, None),
        };
        let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (integer.is_empty() && fraction.is_empty())
            || !all_digits(integer)
            || !all_digits(fraction)
        {
            return None;
        }
        let exponent: i64 = match exponent {
            None => 0,
            Some(e) => {
                let magnitude = e.strip_prefix(['+', '-']).unwrap_or(e);
                if magnitude.is_empty() || !all_digits(magnitude) {
                    return None;
                }
                // Far beyond any column's digits either way, and small enough that the
                // point's arithmetic below cannot overflow.
                let magnitude = magnitude.parse::<i64>().unwrap_or(i64::MAX).min(1_000_000);
                if e.starts_with('-') {
                    -magnitude
                } else {
                    magnitude
                }
            }
        };
        let all = format!("{integer}{fraction}");
        let leading = all.bytes().take_while(|&b| b == b'0').count();
        let digits = all[leading..].trim_end_matches('0');
        if digits.is_empty() {
            return Some(Exact {
                negative: false,
                digits: String::new(),
                point: 0,
            });
        }
        Some(Exact {
            negative,
            digits: digits.to_owned(),
            point: len_i64(integer) - len_i64(&all[..leading]) + exponent,
        })
    }

    /// Digits before the point, without leading zeros.
    fn integer_len(&self) -> i64 {
        if self.digits.is_empty() {
            0
        } else {
            self.point.max(0)
        }
    }

    /// Digits after the point, up to the last non-zero one.
    fn fraction_len(&self) -> i64 {
        (len_i64(&self.digits) - self.point).max(0)
    }

    /// The number with exactly `scale` digits after the point (no point for 0), where
    /// `fraction_len() <= scale` and `integer_len()` is a column's at most.
    fn text(&self, scale: usize) -> String {
        let zeros = |n: i64| "0".repeat(usize::try_from(n).unwrap_or(0));
        let len = len_i64(&self.digits);
        let split = usize::try_from(self.point.clamp(0, len)).unwrap_or(0);
        let (before, after) = self.digits.split_at(split);
        let mut text = String::new();
        if self.negative {
            text.push('-');
        }
        if before.is_empty() {
            text.push('0');
        } else {
            text.push_str(before);
            text += &zeros(self.point - len);
        }
        if scale > 0 {
            let mut fraction = zeros(-self.point);
            fraction.push_str(after);
            fraction += &"0".repeat(scale.saturating_sub(fraction.len()));
            text.push('.');
            text.push_str(&fraction);
        }
        text
    }
}

/// A text's length in bytes as an i64 (a `String` holds at most `isize::MAX` bytes).
fn len_i64(s: &str) -> i64 {
    i64::try_from(s.len()).unwrap_or(i64::MAX)
}

/// See [`canonical`].
fn canonical_timestamp(value: &str) -> Result<String, &'static str> {
    use time::format_description::{well_known::Rfc3339, BorrowedFormatItem};
    use time::{macros::format_description, OffsetDateTime, PrimitiveDateTime};
    /// RFC 1123 as HTTP writes it (and Eventuate's `DATE` header).
    const RFC_1123: &[BorrowedFormatItem<'static>] = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    /// The canonical text: UTC, six fraction digits.
    const CANONICAL: &[BorrowedFormatItem<'static>] =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    const NOT: &str =
        "is not a timestamp (RFC 3339, RFC 1123 or whole milliseconds since the epoch)";
    const RANGE: &str = "is outside the years 1000 to 9999, which every database can store";
    let digits = value.strip_prefix('-').unwrap_or(value);
    let at = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        let millis: i64 = value.parse().map_err(|_| RANGE)?;
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
            .map_err(|_| RANGE)?
    } else if let Ok(at) = OffsetDateTime::parse(value, &Rfc3339) {
        at
    } else {
        let at = PrimitiveDateTime::parse(value, RFC_1123).map_err(|_| NOT)?;
        // Written back the same, or the weekday is not the date's.
        if at.format(RFC_1123).ok().as_deref() != Some(value) {
            return Err(NOT);
        }
        at.assume_utc()
    };
    let utc = at.checked_to_offset(time::UtcOffset::UTC).ok_or(RANGE)?;
    if !(1000..=9999).contains(&utc.year()) {
        return Err(RANGE);
    }
    if !utc.nanosecond().is_multiple_of(1000) {
        return Err(
            "is finer than a microsecond (or a leap second), which the databases cannot keep",
        );
    }
    utc.format(CANONICAL).map_err(|_| NOT)
}

/// See [`canonical`].
fn canonical_json(value: &str) -> Result<String, &'static str> {
    let parsed: serde_json::Value = serde_json::from_str(value).map_err(|_| "is not JSON")?;
    serde_json::to_string(&tidy_json(parsed)?).map_err(|_| "is not JSON")
}

/// `value` with object keys in order (whatever serde_json's map keeps) and `-0.0` as `0.0`;
/// an error for a NUL character in a string or key.
fn tidy_json(value: serde_json::Value) -> Result<serde_json::Value, &'static str> {
    use serde_json::Value;
    const NUL: &str = "holds a NUL character (\\u0000), which PostgreSQL's JSONB cannot store";
    const NEGATIVE_ZERO: u64 = (-0.0f64).to_bits();
    Ok(match value {
        Value::String(s) if s.contains('\0') => return Err(NUL),
        // Only a float can be -0.0 (serde_json reads `-0` as one).
        Value::Number(n) if n.as_f64().is_some_and(|f| f.to_bits() == NEGATIVE_ZERO) => {
            Value::from(0.0)
        }
        Value::Array(items) => {
            Value::Array(items.into_iter().map(tidy_json).collect::<Result<_, _>>()?)
        }
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut sorted = serde_json::Map::new();
            for (k, v) in entries {
                if k.contains('\0') {
                    return Err(NUL);
                }
                sorted.insert(k, tidy_json(v)?);
            }
            Value::Object(sorted)
        }
        other => other,
    })
}

/// Binds a column's value (in its canonical text, see [`canonical`]), converted for its
/// column on `dialect`.
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
        // SMALLINT 1 or 0.
        (Dialect::Sqlite | Dialect::MySql, ColumnType::Boolean) => {
            row.bind(value.map(|v| i64::from(v == "true")));
        }
        // DATETIME(6) holds the UTC time, written without the `T` and `Z`.
        (Dialect::MySql, ColumnType::Timestamp) => {
            row.bind(&value.map(|v| v.trim_end_matches('Z').replacen('T', " ", 1)));
        }
        (Dialect::Postgres, ColumnType::Text) | (Dialect::MySql, _) | (Dialect::Sqlite, _) => {
            row.bind(&value);
        }
        (Dialect::Postgres, other) => {
            row.bind_cast(&value, &sql_type(Dialect::Postgres, other));
        }
    }
}

/// The SQL expression reading `column` (of type `ty`) back as text, for [`read_back`] to turn
/// into the canonical text. Timestamps are formatted by the database (in UTC, six fraction
/// digits); MariaDB and SQLite give booleans as `1`/`0`, PostgreSQL as `true`/`false`, and
/// JSON comes back as each database writes it.
fn select_expr(dialect: Dialect, column: &str, ty: ColumnType) -> String {
    match (dialect, ty) {
        (Dialect::MySql, ColumnType::Timestamp) => {
            format!("DATE_FORMAT({column}, '%Y-%m-%dT%H:%i:%s.%fZ')")
        }
        (Dialect::Postgres, ColumnType::Timestamp) => {
            format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
        }
        (Dialect::Sqlite, _) => format!("CAST({column} AS TEXT)"),
        // A JSON column cast to text, so the document arrives as a string, not embedded.
        (Dialect::MySql, _) => format!("CAST({column} AS CHAR)"),
        (Dialect::Postgres, _) => format!("{column}::text"),
    }
}

/// What [`select_expr`] returned for a column of type `ty`, in the canonical text (see
/// [`canonical`]): `1` is `true`, JSON is re-canonicalised (MariaDB and PostgreSQL's JSONB
/// rewrite it). A stored value that is not of the type (a table written before values
/// were normalised) is returned as it is.
fn read_back(ty: ColumnType, stored: Option<String>) -> Option<String> {
    let stored = stored?;
    match ty {
        ColumnType::Text => Some(stored),
        _ => Some(canonical(ty, &stored).unwrap_or(stored)),
    }
}

/// A declared read model as a consumer ([`crate::TransactionalConsumer`]): each record
/// decoded by the declaration, its message id claimed, the new changes applied and committed
/// in one transaction; offsets are committed after that. Records the view does not react to
/// are claimed too (so a redelivery counts as a duplicate) and change nothing; a record that
/// cannot be decoded, has a value of the wrong type or comes from another origin is poison,
/// parked with its reason.
pub type ReadModelProjection = crate::TransactionalConsumer<ReadModelTable>;

impl crate::consumer::Apply for ReadModelTable {
    type Item = KeyedChange;
    type Output = ();

    fn store(&self) -> &str {
        &self.store
    }

    fn decode(
        &self,
        record: &tramline_core::Record,
    ) -> Result<Option<KeyedChange>, tramline_core::Error> {
        self.declaration
            .decode(record)
            .map_err(|e| tramline_core::Error::poison(&record.envelope, e))
    }

    async fn apply(
        &self,
        tx: &mut Tx,
        items: Vec<KeyedChange>,
        batch: &[tramline_core::Record],
    ) -> Result<(), tramline_core::Error> {
        // A refusal names the batch's first record; the runtime then applies record by record
        // to find the one to park.
        ReadModelTable::apply(self, tx, &items)
            .await
            .map_err(|e| e.into_handler_error(&batch[0]))
    }

    fn key<'a>(&self, item: &'a KeyedChange) -> Option<&'a str> {
        Some(&item.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MONEY: ColumnType = ColumnType::Decimal {
        precision: 12,
        scale: 2,
    };

    fn ok(ty: ColumnType, value: &str) -> String {
        canonical(ty, value).unwrap_or_else(|why| panic!("{value:?} refused: {why}"))
    }

    #[test]
    fn decimals_get_exactly_their_scale() {
        for (given, expected) in [
            ("12.5", "12.50"),
            ("12.50", "12.50"),
            ("12.500000", "12.50"),
            ("7", "7.00"),
            ("-0.5", "-0.50"),
            ("-.5", "-0.50"),
            ("5.", "5.00"),
            ("+3.1", "3.10"),
            ("0.1", "0.10"),
            ("0", "0.00"),
            ("-0", "0.00"),
            ("-0.000", "0.00"),
            ("000123.40", "123.40"),
            ("-007.01", "-7.01"),
            ("1.25e1", "12.50"),
            ("125E-1", "12.50"),
            ("1e2", "100.00"),
            ("1E+2", "100.00"),
            ("5e-2", "0.05"),
            ("0e999999999999999999999", "0.00"),
            ("9999999999.99", "9999999999.99"),
            ("-9999999999.99", "-9999999999.99"),
        ] {
            assert_eq!(ok(MONEY, given), expected, "{given}");
        }
        let whole = ColumnType::Decimal {
            precision: 5,
            scale: 0,
        };
        assert_eq!(ok(whole, "12.0"), "12");
        assert_eq!(ok(whole, "99999"), "99999");
        let fine = ColumnType::Decimal {
            precision: 4,
            scale: 4,
        };
        assert_eq!(ok(fine, ".5"), "0.5000");
        assert_eq!(ok(fine, "-1e-4"), "-0.0001");
    }

    #[test]
    fn decimals_that_would_be_rounded_or_truncated_are_refused() {
        let scale = "has more digits after the point than the column's scale";
        let precision = "has more digits before the point than the column's precision leaves \
                         (precision minus scale)";
        for (given, why) in [
            ("12.505", scale),
            ("0.001", scale),
            ("1e-3", scale),
            ("1e-999999999999", scale),
            // A float would round this to 1.0; the digits keep its last 1.
            ("0.1000000000000000000000000000001e1", scale),
            ("12345678901.00", precision),
            ("-12345678901", precision),
            ("1e10", precision),
            ("1e999999999999", precision),
        ] {
            assert_eq!(canonical(MONEY, given), Err(why), "{given}");
        }
        for not in [
            "", "-", "+", ".", "e5", "1e", "1e+", "1.2.3", "1,5", " 1", "1 ", "0x10", "NaN", "inf",
            "١", "--1", "1e1.5",
        ] {
            assert_eq!(
                canonical(MONEY, not),
                Err("is not a decimal number"),
                "{not:?}"
            );
        }
    }

    #[test]
    fn integers_are_whole_and_in_range() {
        for (given, expected) in [
            ("42", "42"),
            ("-42", "-42"),
            ("007", "7"),
            ("-0", "0"),
            ("3.0", "3"),
            ("3.000", "3"),
            ("3e2", "300"),
            ("1.5e1", "15"),
            ("9223372036854775807", "9223372036854775807"),
            ("-9223372036854775808", "-9223372036854775808"),
        ] {
            assert_eq!(ok(ColumnType::Integer, given), expected, "{given}");
        }
        for (given, why) in [
            ("3.5", "is not a whole number"),
            ("1e-1", "is not a whole number"),
            ("three", "is not a whole number"),
            ("", "is not a whole number"),
            ("9223372036854775808", "is out of the 64-bit integer range"),
            ("1e19", "is out of the 64-bit integer range"),
            ("1e400", "is out of the 64-bit integer range"),
        ] {
            assert_eq!(canonical(ColumnType::Integer, given), Err(why), "{given}");
        }
    }

    #[test]
    fn booleans_and_text() {
        for (given, expected) in [
            ("true", "true"),
            ("1", "true"),
            ("false", "false"),
            ("0", "false"),
        ] {
            assert_eq!(ok(ColumnType::Boolean, given), expected);
        }
        for not in ["yes", "TRUE", "2", "", " true"] {
            assert!(canonical(ColumnType::Boolean, not).is_err(), "{not:?}");
        }
        assert_eq!(
            ok(ColumnType::Text, "it's \"ünïcödé\" ✓"),
            "it's \"ünïcödé\" ✓"
        );
        assert_eq!(
            canonical(ColumnType::Text, "a\0b"),
            Err("holds a NUL character, which PostgreSQL cannot store")
        );
    }

    #[test]
    fn timestamps_are_utc_with_microseconds() {
        let ts = ColumnType::Timestamp;
        for (given, expected) in [
            ("2026-12-02T10:15:00Z", "2026-12-02T10:15:00.000000Z"),
            ("2026-12-02T11:15:00+01:00", "2026-12-02T10:15:00.000000Z"),
            ("2026-12-02T00:15:00-02:30", "2026-12-02T02:45:00.000000Z"),
            ("2026-12-02T10:15:00.5Z", "2026-12-02T10:15:00.500000Z"),
            ("2026-12-02T10:15:00.123456Z", "2026-12-02T10:15:00.123456Z"),
            (
                "2026-12-02T10:15:00.123456000Z",
                "2026-12-02T10:15:00.123456Z",
            ),
            ("2027-01-01T00:30:00+01:00", "2026-12-31T23:30:00.000000Z"),
            (
                "Wed, 02 Dec 2026 10:15:00 GMT",
                "2026-12-02T10:15:00.000000Z",
            ),
            ("1796206500000", "2026-12-02T10:15:00.000000Z"),
            ("1796206500123", "2026-12-02T10:15:00.123000Z"),
            ("0", "1970-01-01T00:00:00.000000Z"),
            ("-1", "1969-12-31T23:59:59.999000Z"),
        ] {
            assert_eq!(ok(ts, given), expected, "{given}");
            assert_eq!(ok(ts, expected), expected, "canonical is a fixed point");
        }
        let not = "is not a timestamp (RFC 3339, RFC 1123 or whole milliseconds since the epoch)";
        let range = "is outside the years 1000 to 9999, which every database can store";
        for (given, why) in [
            ("tomorrow", not),
            ("", not),
            ("2026-12-02", not),
            ("2026-12-02T10:15:00", not),
            ("2026-12-02T10:15Z", not),
            ("2026-13-02T10:15:00Z", not),
            ("Mon, 02 Dec 2026 10:15:00 GMT", not),
            ("Wed, 2 Dec 2026 10:15:00 GMT", not),
            ("1796206500000.0", not),
            ("0999-12-31T23:59:59Z", range),
            ("9999-12-31T23:59:59-01:00", range),
            ("-99999999999999", range),
            ("99999999999999999999", range),
            (
                "2026-12-02T10:15:00.1234567Z",
                "is finer than a microsecond (or a leap second), which the databases cannot keep",
            ),
        ] {
            assert_eq!(canonical(ts, given), Err(why), "{given}");
        }
    }

    #[test]
    fn json_is_compact_with_sorted_keys() {
        let j = ColumnType::Json;
        for (given, expected) in [
            (r#"{ "b" : 1, "a" : [ 1, 2 ] }"#, r#"{"a":[1,2],"b":1}"#),
            (
                r#"{"z":{"y":true,"x":null}}"#,
                r#"{"z":{"x":null,"y":true}}"#,
            ),
            ("12.5", "12.5"),
            ("-0.0", "0.0"),
            ("[-0]", "[0.0]"),
            ("1e2", "100.0"),
            (r#""é\u00e9""#, r#""éé""#),
            ("null", "null"),
        ] {
            assert_eq!(ok(j, given), expected, "{given}");
            assert_eq!(ok(j, expected), expected, "canonical is a fixed point");
        }
        // As PostgreSQL's JSONB gives documents back.
        assert_eq!(
            ok(j, r#"{"a": 0.0000001, "b": 100.0}"#),
            r#"{"a":1e-7,"b":100.0}"#
        );
        assert_eq!(ok(j, "1e-7"), "1e-7");
        assert_eq!(canonical(j, "{"), Err("is not JSON"));
        assert_eq!(canonical(j, ""), Err("is not JSON"));
        assert!(canonical(j, r#"{"a":"\u0000"}"#).is_err());
        assert!(canonical(j, r#"{"\u0000":1}"#).is_err());
    }

    #[test]
    fn reading_back_gives_the_canonical_text() {
        assert_eq!(
            read_back(ColumnType::Boolean, Some("1".into())).as_deref(),
            Some("true")
        );
        assert_eq!(
            read_back(ColumnType::Boolean, Some("false".into())).as_deref(),
            Some("false")
        );
        assert_eq!(
            read_back(ColumnType::Json, Some(r#"{"b": 1, "a": 2}"#.into())).as_deref(),
            Some(r#"{"a":2,"b":1}"#)
        );
        assert_eq!(read_back(MONEY, None), None);
        assert_eq!(
            read_back(ColumnType::Text, Some("1".into())).as_deref(),
            Some("1")
        );
    }
}
