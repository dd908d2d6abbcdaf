//! Test support: a fresh, migrated database per test for each backend — a temp SQLite file
//! always, and a new PostgreSQL database on the server `DATABASE_URL_PG` names (tests may
//! `CREATE DATABASE` there). When the variable is unset, the first PostgreSQL test of the
//! process starts a throwaway server (see [`local_server`]) that all its tests share; only
//! when that is impossible too do PostgreSQL tests skip, saying so on stderr. Public (hidden
//! from docs) so the integration tests in `tests/it` can use it too; it returns errors instead
//! of panicking.

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use diesel::connection::SimpleConnection;

use crate::db::{Backend, Db, DbConn, DbError};

mod local_server;

/// The environment variable with the PostgreSQL base URL for database tests.
pub const PG_URL_VAR: &str = "DATABASE_URL_PG";

/// Where this process's PostgreSQL tests run.
enum PgServer {
    /// A server URL on which tests may create databases.
    Url(String),
    /// No server and no way to start one: the tests skip, and this says why.
    Missing(String),
    /// A server should have started and did not: the tests fail with this.
    Failed(String),
}

/// `DATABASE_URL_PG`, else a throwaway server started once per process.
fn pg_server() -> &'static PgServer {
    static SERVER: OnceLock<PgServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        if let Some(url) = std::env::var(PG_URL_VAR).ok().filter(|u| !u.is_empty()) {
            return PgServer::Url(url);
        }
        match local_server::start() {
            Ok(Some(url)) => PgServer::Url(url),
            Ok(None) => PgServer::Missing(format!(
                "{PG_URL_VAR} is unset and no initdb/pg_ctl was found on PATH or under \
                 /usr/lib/postgresql/*/bin"
            )),
            Err(e) => PgServer::Failed(format!(
                "{PG_URL_VAR} is unset and a throwaway PostgreSQL did not start: {e}"
            )),
        }
    })
}

/// Tells, past the test harness's output capture, that a test runs without PostgreSQL.
fn report_skip(why: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED the PostgreSQL part of {test}: {why}"
    );
}

enum Cleanup {
    Dir(PathBuf),
    Postgres { base: String, name: String },
}

/// A migrated throw-away database; removed (file or PostgreSQL database) on drop.
pub struct TestDb {
    pub db: Db,
    pub backend: Backend,
    /// The URL the pool was opened with (for tests that start a server on the same data).
    pub url: String,
    cleanup: Cleanup,
}

fn unique_name() -> String {
    format!("bbbgw_test_{}", uuid::Uuid::new_v4().simple())
}

impl TestDb {
    /// A migrated SQLite database in a new temp directory.
    pub fn sqlite() -> Result<TestDb, DbError> {
        let dir = std::env::temp_dir().join(unique_name());
        let url = format!("sqlite://{}/t.sqlite3", dir.display());
        let db = Db::connect(&url, 2, Duration::from_secs(5))?;
        db.migrate()?;
        Ok(TestDb {
            db,
            backend: Backend::Sqlite,
            url,
            cleanup: Cleanup::Dir(dir),
        })
    }

    /// A new migrated PostgreSQL database on the server of `DATABASE_URL_PG` or on this
    /// process's throwaway server; `None` (reported on stderr) when there is neither.
    pub fn postgres() -> Option<Result<TestDb, DbError>> {
        match pg_server() {
            PgServer::Url(base) => Some(Self::postgres_at(base)),
            PgServer::Missing(why) => {
                report_skip(why);
                None
            }
            PgServer::Failed(why) => Some(Err(DbError::Unavailable(why.clone()))),
        }
    }

    /// The URL of the PostgreSQL server this database lives on (where it may be altered or
    /// dropped from); `None` for SQLite.
    pub fn server_url(&self) -> Option<&str> {
        match &self.cleanup {
            Cleanup::Postgres { base, .. } => Some(base),
            Cleanup::Dir(_) => None,
        }
    }

    fn postgres_at(base: &str) -> Result<TestDb, DbError> {
        let name = unique_name();
        let mut url = url::Url::parse(base)
            .map_err(|e| DbError::Config(format!("{PG_URL_VAR} is not a URL: {e}")))?;
        url.set_path(&format!("/{name}"));
        let url = url.to_string();
        let admin = Db::connect(base, 1, Duration::from_secs(10))?;
        if let DbConn::Postgres(c) = &mut admin.get()? {
            c.batch_execute(&format!("CREATE DATABASE {name}"))?;
        }
        let db = Db::connect(&url, 2, Duration::from_secs(10))?;
        db.migrate()?;
        Ok(TestDb {
            db,
            backend: Backend::Postgres,
            url,
            cleanup: Cleanup::Postgres {
                base: base.to_owned(),
                name,
            },
        })
    }

    /// SQLite, plus PostgreSQL unless there is none (see [`TestDb::postgres`]).
    pub fn all() -> Result<Vec<TestDb>, DbError> {
        let mut dbs = vec![TestDb::sqlite()?];
        if let Some(pg) = TestDb::postgres() {
            dbs.push(pg?);
        }
        Ok(dbs)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Postgres { base, name } => {
                // FORCE ends this pool's connections, which are still open here.
                if let Ok(admin) = Db::connect(base, 1, Duration::from_secs(10)) {
                    if let Ok(DbConn::Postgres(mut c)) = admin.get() {
                        let _ = c
                            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
                    }
                }
            }
        }
    }
}

/// Runs `f` with a connection to a fresh database of each available backend.
pub fn for_each_backend(mut f: impl FnMut(&mut DbConn)) -> Result<(), DbError> {
    for t in TestDb::all()? {
        let mut conn = t.db.get()?;
        f(&mut conn);
    }
    Ok(())
}
