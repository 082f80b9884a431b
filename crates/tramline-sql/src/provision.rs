//! Scratch databases: a database (MariaDB), schema (PostgreSQL) or file (SQLite) created for
//! one run — a demo, a test — under a server URL, and dropped afterwards, so runs never share
//! tables and leave nothing behind.

use crate::{Db, DbOptions, Dialect, SqlError};

const STORE: &str = "provision";

/// A database created for one run. Call [`Scratch::drop`] when done.
#[derive(Debug, Clone)]
pub struct Scratch {
    server_url: String,
    name: String,
    url: String,
    dialect: Dialect,
}

fn config_error(message: String) -> SqlError {
    SqlError::new(
        STORE,
        "name scratch database",
        sqlx::Error::Configuration(message.into()),
    )
}

impl Scratch {
    /// Creates `name` (lowercase letters, digits and `_`, at most 63) under `server_url`: a
    /// database on MariaDB, a schema in the URL's database on PostgreSQL, a file in the URL's
    /// directory on SQLite (`sqlite://DIR`).
    pub async fn create(server_url: &str, name: &str) -> Result<Scratch, SqlError> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(config_error(format!(
                "scratch database name {name:?}: use 1 to 63 of a-z, 0-9 and _"
            )));
        }
        let dialect = Dialect::from_url(server_url)?;
        let url = match dialect {
            Dialect::Sqlite => {
                let dir = server_url
                    .trim_start_matches("sqlite:")
                    .trim_start_matches("//");
                std::fs::create_dir_all(dir).map_err(|e| {
                    SqlError::new(STORE, "create data directory", sqlx::Error::Io(e))
                })?;
                format!("sqlite://{dir}/{name}.db")
            }
            Dialect::MySql => {
                let sql =
                    format!("CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin");
                on_server(server_url, &sql, "create database").await?;
                with_url(server_url, |u| u.set_path(&format!("/{name}")))?
            }
            Dialect::Postgres => {
                on_server(
                    server_url,
                    &format!("CREATE SCHEMA {name}"),
                    "create schema",
                )
                .await?;
                with_url(server_url, |u| {
                    u.query_pairs_mut()
                        .append_pair("options[search_path]", name);
                })?
            }
        };
        Ok(Scratch {
            server_url: server_url.to_owned(),
            name: name.to_owned(),
            url,
            dialect,
        })
    }

    /// The URL of the created database, for [`Db::connect`].
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The scratch database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database, schema or file with everything in it.
    pub async fn drop(self) -> Result<(), SqlError> {
        match self.dialect {
            Dialect::Sqlite => {
                let path = self.url.trim_start_matches("sqlite://");
                for suffix in ["", "-wal", "-shm"] {
                    match std::fs::remove_file(format!("{path}{suffix}")) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(SqlError::new(STORE, "remove file", sqlx::Error::Io(e)))
                        }
                    }
                }
                Ok(())
            }
            Dialect::MySql => {
                let sql = format!("DROP DATABASE IF EXISTS {}", self.name);
                on_server(&self.server_url, &sql, "drop database").await
            }
            Dialect::Postgres => {
                let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
                on_server(&self.server_url, &sql, "drop schema").await
            }
        }
    }
}

/// Runs one statement (a create or a drop) on its own connection to the server.
async fn on_server(server_url: &str, sql: &str, operation: &'static str) -> Result<(), SqlError> {
    let options = DbOptions {
        max_connections: Some(1),
        ..DbOptions::default()
    };
    let admin = Db::connect(server_url, &options).await?;
    let outcome = admin.execute(&admin.stmt(sql), STORE, operation).await;
    admin.close().await;
    outcome.map(drop)
}

fn with_url(server_url: &str, change: impl FnOnce(&mut url::Url)) -> Result<String, SqlError> {
    let mut url = url::Url::parse(server_url).map_err(|e| {
        config_error(format!(
            "database URL {}: {e}",
            crate::db::redact(server_url)
        ))
    })?;
    change(&mut url);
    Ok(url.to_string())
}
