//! A set of scratch databases for one test on one backend.

use std::sync::Mutex;
use tramline_sql::provision::Scratch;

/// Where a test's databases live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite files in a temporary directory.
    Sqlite,
    /// Databases on the MariaDB server of `TRAMLINE_TEST_MARIADB_URL`.
    MariaDb,
    /// Schemas in the PostgreSQL database of `TRAMLINE_TEST_POSTGRES_URL`.
    Postgres,
}

impl Backend {
    /// The environment variable naming the server, and its loopback default.
    fn server(self) -> Option<(&'static str, &'static str)> {
        match self {
            Backend::Sqlite => None,
            Backend::MariaDb => Some((
                "TRAMLINE_TEST_MARIADB_URL",
                "mysql://root@127.0.0.1:3306/test",
            )),
            Backend::Postgres => Some((
                "TRAMLINE_TEST_POSTGRES_URL",
                "postgres://postgres@127.0.0.1:5432/test",
            )),
        }
    }

    /// A short name for scratch database names and messages.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::MariaDb => "mariadb",
            Backend::Postgres => "postgres",
        }
    }
}

/// One test's databases on one backend, created on demand by store name and dropped with it.
#[derive(Debug)]
pub struct TestDbs {
    backend: Backend,
    prefix: String,
    server_url: String,
    dir: Option<tempfile::TempDir>,
    created: Mutex<Vec<Scratch>>,
}

impl TestDbs {
    /// Databases for test `test` on `backend`.
    pub fn new(backend: Backend, test: &str) -> Self {
        let clean: String = test
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(30)
            .collect();
        let prefix = format!("t_{clean}_{:08x}", rand::random::<u32>());
        let (server_url, dir) = match backend.server() {
            None => {
                let dir = tempfile::Builder::new()
                    .prefix(&format!("tramline-{clean}-"))
                    .tempdir()
                    .expect("the system temporary directory is writable");
                (format!("sqlite://{}", dir.path().display()), Some(dir))
            }
            Some((var, default)) => (std::env::var(var).unwrap_or_else(|_| default.into()), None),
        };
        TestDbs {
            backend,
            prefix,
            server_url,
            dir,
            created: Mutex::new(Vec::new()),
        }
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL of this test's database `store`, created empty on first use.
    pub async fn url(&self, store: &str) -> String {
        let name = format!("{}_{store}", self.prefix);
        if let Some(s) = self.lock().iter().find(|s| s.name() == name) {
            return s.url().to_owned();
        }
        let scratch = Scratch::create(&self.server_url, &name)
            .await
            .unwrap_or_else(|e| panic!("{}", self.unreachable(&e)));
        let url = scratch.url().to_owned();
        self.lock().push(scratch);
        url
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Scratch>> {
        self.created.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn unreachable(&self, e: &dyn std::fmt::Display) -> String {
        match self.backend.server() {
            Some((var, default)) => format!(
                "cannot create a test database on {} ({e}). Is the server running? \
                 scripts/test starts it; or point {var} at one (default {default}).",
                self.backend.name()
            ),
            None => format!("cannot create a SQLite test database: {e}"),
        }
    }
}

impl Drop for TestDbs {
    fn drop(&mut self) {
        let created = std::mem::take(&mut *self.lock());
        if created.is_empty() || self.dir.is_some() {
            return; // SQLite files go with the temporary directory.
        }
        // Drop is not async: clean up on a thread of its own with its own runtime.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for clean-up");
            rt.block_on(async {
                for scratch in created {
                    let name = scratch.name().to_owned();
                    if let Err(e) = scratch.drop().await {
                        eprintln!("could not drop test database {name}: {e}");
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// Runs async test functions `fn name(backend: Backend)` on SQLite, MariaDB and
/// PostgreSQL: for each it adds a module of the same name with one `#[tokio::test]` per
/// backend (`name::sqlite`, `name::mariadb`, `name::postgres`).
#[macro_export]
macro_rules! on_every_database {
    ($($test:ident),+ $(,)?) => {
        $(
            mod $test {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    super::$test($crate::Backend::Sqlite).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn mariadb() {
                    super::$test($crate::Backend::MariaDb).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    super::$test($crate::Backend::Postgres).await
                }
            }
        )+
    };
}
