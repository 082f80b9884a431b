//! The one place that knows how the three SQL dialects differ: placeholders, folding a result
//! into one JSON document, upserts, locking clauses, and (in the submodules) connecting and
//! classifying errors. Stores are written once against these fragments.
//!
//! The traps each fragment avoids are named where it is built: MariaDB evaluates
//! `ON DUPLICATE KEY UPDATE` assignments left to right, so a guarded upsert assigns the guard
//! column last; MariaDB has no `FOR SHARE`; PostgreSQL refuses a locking clause beside an
//! aggregate and an upsert that touches one row twice.

pub(crate) mod mysql;
pub(crate) mod postgres;
pub(crate) mod sqlite;

use std::fmt::Write;

/// A SQL dialect tramline speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// SQLite: the embedded default, one file per store.
    Sqlite,
    /// MariaDB (and MySQL's wire protocol).
    MySql,
    /// PostgreSQL.
    Postgres,
}

/// A column assignment when an upsert finds the row already there.
#[derive(Debug, Clone, Copy)]
pub enum Assign<'a> {
    /// The column takes the new row's value.
    New(&'a str),
    /// The column takes the larger of its value and the new row's (monotonic counters).
    Max(&'a str),
}

/// How a read locks the rows it returns until the transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Exclusive: for rows the transaction will change.
    Update,
    /// Shared: rows others may read but not change until commit.
    Share,
}

impl Dialect {
    /// The dialect a database URL names by its scheme.
    pub fn from_url(url: &str) -> Result<Dialect, crate::SqlError> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Dialect::Sqlite),
            "mysql" | "mariadb" => Ok(Dialect::MySql),
            "postgres" | "postgresql" => Ok(Dialect::Postgres),
            _ => Err(crate::SqlError::new(
                "database",
                "parse database URL",
                sqlx::Error::Configuration(
                    format!(
                        "unsupported database URL scheme {scheme:?} in {}: use sqlite://PATH, \
                         mysql:// (or mariadb://) or postgres://",
                        crate::db::redact(url)
                    )
                    .into(),
                ),
            )),
        }
    }

    /// The dialect's name as users write it in URLs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::MySql => "mysql",
            Dialect::Postgres => "postgres",
        }
    }

    /// Appends the placeholder of the `n`-th bound value (from 1).
    pub(crate) fn placeholder(self, sql: &mut String, n: usize) {
        match self {
            Dialect::Postgres => write!(sql, "${n}").expect("writing to a String cannot fail"),
            Dialect::Sqlite | Dialect::MySql => sql.push('?'),
        }
    }

    /// An aggregate folding the selected rows into one JSON array of objects with the given
    /// `(key, column expression)` fields; `NULL` when there are no rows (see
    /// [`crate::Db::fetch_json`]). Batches cross from the server (or SQLite's worker thread)
    /// as one value instead of a row at a time.
    pub fn json_objects(self, fields: &[(&str, &str)]) -> String {
        let pairs = fields
            .iter()
            .map(|(key, expr)| format!("'{key}', {expr}"))
            .collect::<Vec<_>>()
            .join(", ");
        match self {
            Dialect::Sqlite => format!("json_group_array(json_object({pairs}))"),
            Dialect::MySql => format!("JSON_ARRAYAGG(JSON_OBJECT({pairs}))"),
            Dialect::Postgres => format!("json_agg(json_build_object({pairs}))::text"),
        }
    }

    /// Like [`Dialect::json_objects`], folding each row into a JSON array (a tuple).
    pub fn json_tuples(self, exprs: &[&str]) -> String {
        let list = exprs.join(", ");
        match self {
            Dialect::Sqlite => format!("json_group_array(json_array({list}))"),
            Dialect::MySql => format!("JSON_ARRAYAGG(JSON_ARRAY({list}))"),
            Dialect::Postgres => format!("json_agg(json_build_array({list}))::text"),
        }
    }

    /// The clause after a multi-row `INSERT INTO table (…) VALUES …` that turns it into an
    /// upsert on the unique `key` columns.
    ///
    /// With a `guard` (a version column), a row already there is changed only if its guard is
    /// NULL or older than the new row's, and then every assigned column changes together. On
    /// MariaDB, which has no `WHERE` on its upsert and evaluates the assignments left to right
    /// (a later `IF` would see the guard already overwritten), each assignment is wrapped in
    /// the guard's condition and the guard column is assigned last, whatever its place in
    /// `assigns`.
    pub fn upsert(
        self,
        table: &str,
        key: &[&str],
        assigns: &[Assign<'_>],
        guard: Option<&str>,
    ) -> String {
        let mut ordered: Vec<Assign<'_>> = assigns.to_vec();
        if let Some(g) = guard {
            // Stable: everything else keeps its order, the guard moves to the end.
            ordered.sort_by_key(|a| matches!(a, Assign::New(c) | Assign::Max(c) if *c == g));
        }
        match self {
            Dialect::Sqlite | Dialect::Postgres => {
                let set = ordered
                    .iter()
                    .map(|a| match a {
                        Assign::New(c) => format!("{c} = excluded.{c}"),
                        Assign::Max(c) if self == Dialect::Sqlite => {
                            format!("{c} = MAX({table}.{c}, excluded.{c})")
                        }
                        Assign::Max(c) => format!("{c} = GREATEST({table}.{c}, excluded.{c})"),
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut sql = format!(" ON CONFLICT ({}) DO UPDATE SET {set}", key.join(", "));
                if let Some(g) = guard {
                    write!(
                        sql,
                        " WHERE {table}.{g} IS NULL OR {table}.{g} < excluded.{g}"
                    )
                    .expect("writing to a String cannot fail");
                }
                sql
            }
            Dialect::MySql => {
                let set = ordered
                    .iter()
                    .map(|a| {
                        let (c, new) = match a {
                            Assign::New(c) => (c, format!("VALUES({c})")),
                            Assign::Max(c) => (c, format!("GREATEST({c}, VALUES({c}))")),
                        };
                        match guard {
                            Some(g) => {
                                format!("{c} = IF({g} IS NULL OR {g} < VALUES({g}), {new}, {c})")
                            }
                            None => format!("{c} = {new}"),
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(" ON DUPLICATE KEY UPDATE {set}")
            }
        }
    }

    /// The clause after a multi-row `INSERT INTO table (…) VALUES …` that merges each new
    /// row into the one already there register by register: each `(version, columns)` set
    /// takes the new row's values only where the new row carries a version for it (NULL
    /// means "this batch does not write the set") newer than the stored one, whatever the
    /// other sets do (see `tramline_core::readmodel`). PostgreSQL and SQLite evaluate every
    /// assignment against the row as it was; MariaDB evaluates them left to right, so there
    /// each set's version is assigned after its columns.
    pub fn register_upsert(self, table: &str, key: &str, sets: &[(&str, Vec<&str>)]) -> String {
        let mut assigns = Vec::new();
        for (version, columns) in sets {
            let (newer, new, old) = match self {
                Dialect::Sqlite | Dialect::Postgres => (
                    format!(
                        "excluded.{version} IS NOT NULL AND ({table}.{version} IS NULL \
                         OR {table}.{version} < excluded.{version})"
                    ),
                    "excluded.",
                    format!("{table}."),
                ),
                Dialect::MySql => (
                    format!(
                        "VALUES({version}) IS NOT NULL AND ({version} IS NULL \
                         OR {version} < VALUES({version}))"
                    ),
                    "",
                    String::new(),
                ),
            };
            for column in columns.iter().chain([version]) {
                let new = match self {
                    Dialect::MySql => format!("VALUES({column})"),
                    _ => format!("{new}{column}"),
                };
                assigns.push(match self {
                    Dialect::MySql => format!("{column} = IF({newer}, {new}, {column})"),
                    _ => format!("{column} = CASE WHEN {newer} THEN {new} ELSE {old}{column} END"),
                });
            }
        }
        let set = assigns.join(", ");
        match self {
            Dialect::Sqlite | Dialect::Postgres => {
                format!(" ON CONFLICT ({key}) DO UPDATE SET {set}")
            }
            Dialect::MySql => format!(" ON DUPLICATE KEY UPDATE {set}"),
        }
    }

    /// The clause after a multi-row `INSERT` that skips rows whose unique `key` exists.
    /// (MariaDB's `INSERT IGNORE` would also swallow other errors; a no-op assignment does
    /// not.)
    pub fn insert_missing(self, key: &[&str]) -> String {
        match self {
            Dialect::Sqlite | Dialect::Postgres => {
                format!(" ON CONFLICT ({}) DO NOTHING", key.join(", "))
            }
            Dialect::MySql => format!(" ON DUPLICATE KEY UPDATE {0} = {0}", key[0]),
        }
    }

    /// The locking clause ending a `SELECT` (empty on SQLite, where a write transaction holds
    /// the database's one write lock from its first statement). MariaDB spells a shared lock
    /// `LOCK IN SHARE MODE`; it has no `FOR SHARE`.
    pub fn lock(self, mode: LockMode) -> &'static str {
        match (self, mode) {
            (Dialect::Sqlite, _) => "",
            (_, LockMode::Update) => " FOR UPDATE",
            (Dialect::MySql, LockMode::Share) => " LOCK IN SHARE MODE",
            (Dialect::Postgres, LockMode::Share) => " FOR SHARE",
        }
    }
}

impl Dialect {
    /// The text around a read that folds rows with `json` (from [`Dialect::json_objects`] or
    /// [`Dialect::json_tuples`]): the caller writes `prefix`, then `table WHERE …`, then
    /// `suffix`. With a `lock`, the rows read are locked until the transaction ends, and the
    /// read sees their latest committed version even under MariaDB's REPEATABLE READ snapshot
    /// (a locking read always does). PostgreSQL refuses a locking clause beside an aggregate,
    /// so there the locked rows are read in a subquery.
    pub fn json_select(self, json: &str, lock: Option<LockMode>) -> (String, String) {
        match (self, lock) {
            (Dialect::Sqlite, _) | (_, None) => (format!("SELECT {json} FROM "), String::new()),
            (Dialect::MySql, Some(mode)) => {
                (format!("SELECT {json} FROM "), self.lock(mode).to_owned())
            }
            (Dialect::Postgres, Some(mode)) => (
                format!("SELECT {json} FROM (SELECT * FROM "),
                format!("{}) AS locked", self.lock(mode)),
            ),
        }
    }
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        let mut s = String::new();
        Dialect::Postgres.placeholder(&mut s, 3);
        Dialect::MySql.placeholder(&mut s, 3);
        assert_eq!(s, "$3?");
    }

    #[test]
    fn mariadb_guarded_upsert_assigns_the_guard_last() {
        let sql = Dialect::MySql.upsert(
            "v",
            &["id"],
            &[Assign::New("version"), Assign::New("status")],
            Some("version"),
        );
        let status = sql.find("status = IF").unwrap();
        let version = sql.find("version = IF").unwrap();
        assert!(status < version, "{sql}");
        assert!(sql.contains("IF(version IS NULL OR version < VALUES(version)"));
    }

    #[test]
    fn postgres_guarded_upsert_has_a_where() {
        let sql = Dialect::Postgres.upsert("v", &["id"], &[Assign::New("s")], Some("n"));
        assert_eq!(
            sql,
            " ON CONFLICT (id) DO UPDATE SET s = excluded.s WHERE v.n IS NULL OR v.n < excluded.n"
        );
    }

    #[test]
    fn max_assignments() {
        assert!(Dialect::Sqlite
            .upsert("t", &["k"], &[Assign::Max("o")], None)
            .contains("o = MAX(t.o, excluded.o)"));
        assert!(Dialect::MySql
            .upsert("t", &["k"], &[Assign::Max("o")], None)
            .contains("o = GREATEST(o, VALUES(o))"));
    }

    #[test]
    fn register_upserts_guard_each_set_by_its_own_version() {
        let sets = [("a_v", vec!["a"]), ("b_v", vec!["b", "c"])];
        let pg = Dialect::Postgres.register_upsert("t", "k", &sets);
        assert!(pg.starts_with(" ON CONFLICT (k) DO UPDATE SET a = CASE WHEN excluded.a_v IS NOT NULL AND (t.a_v IS NULL OR t.a_v < excluded.a_v) THEN excluded.a ELSE t.a END"), "{pg}");
        assert!(
            pg.contains("c = CASE WHEN excluded.b_v IS NOT NULL"),
            "{pg}"
        );
        let my = Dialect::MySql.register_upsert("t", "k", &sets);
        for (column, version) in [("b", "b_v"), ("c", "b_v"), ("a", "a_v")] {
            let at = my.find(&format!("{column} = IF(")).expect("assigned");
            let v = my.find(&format!("{version} = IF(")).expect("assigned");
            assert!(at < v, "{column} before {version}: {my}");
        }
    }

    #[test]
    fn mariadb_has_no_for_share() {
        assert_eq!(Dialect::MySql.lock(LockMode::Share), " LOCK IN SHARE MODE");
        assert_eq!(Dialect::Postgres.lock(LockMode::Share), " FOR SHARE");
    }
}
