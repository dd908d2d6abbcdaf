use std::path::Path;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::{PgConnection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Why a database operation failed. Messages never include the database URL (it may hold a
/// password).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error("invalid database configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Invalid(String),
}

impl From<diesel::r2d2::PoolError> for DbError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        DbError::Unavailable(e.to_string())
    }
}

/// Which database engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A pooled connection of either backend; see [`with_conn!`](crate::with_conn).
pub enum DbConn {
    Sqlite(PooledConnection<ConnectionManager<SqliteConnection>>),
    Postgres(PooledConnection<ConnectionManager<PgConnection>>),
}

#[derive(Clone)]
enum DbPool {
    Sqlite(Pool<ConnectionManager<SqliteConnection>>),
    Postgres(Pool<ConnectionManager<PgConnection>>),
}

/// Cheap-to-clone handle on the connection pool.
#[derive(Clone)]
pub struct Db {
    pool: DbPool,
    /// The URL the pool was opened with, for connections that must live outside the pool
    /// (the change listener, see [`crate::db::changes`]). Never logged: it may hold a password.
    url: std::sync::Arc<str>,
    timeout: Duration,
}

/// Sets WAL mode and a busy timeout on every SQLite connection, so concurrent writers wait
/// instead of failing with `database is locked`.
#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(
            "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
             PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
        )
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Turns `sqlite://relative/path`, `sqlite:///absolute/path` or `sqlite:path` into a file path.
fn sqlite_path(url: &str) -> Option<&str> {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .filter(|p| !p.is_empty())
}

/// How long one SQL statement may run on PostgreSQL before the server cancels it.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long unacknowledged data may sit on a PostgreSQL connection before the kernel drops it
/// (a database behind a dead network path answers nothing, not even a reset).
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(20);

/// Adds the guards every PostgreSQL connection needs unless the URL sets them itself: a connect
/// timeout (libpq waits forever by default), TCP keepalives and `tcp_user_timeout` (a half-open
/// socket after a failover is noticed in seconds, not when TCP gives up hours later), and a
/// `statement_timeout`.
pub(crate) fn guarded_pg_url(url: &str, connect_timeout: Duration) -> String {
    let mut out = url.to_string();
    let mut add = |key: &str, value: String| {
        if !out.contains(&format!("{key}=")) {
            let sep = if out.contains('?') { '&' } else { '?' };
            out = format!("{out}{sep}{key}={value}");
        }
    };
    add(
        "connect_timeout",
        connect_timeout.as_secs().max(1).to_string(),
    );
    add("keepalives", "1".into());
    add("keepalives_idle", "10".into());
    add("keepalives_interval", "5".into());
    add("keepalives_count", "3".into());
    add("tcp_user_timeout", TCP_USER_TIMEOUT.as_millis().to_string());
    add(
        "options",
        format!("-c%20statement_timeout%3D{}", STATEMENT_TIMEOUT.as_millis()),
    );
    out
}

impl Db {
    /// Opens a pool for `url` (`sqlite://…` or `postgres://…` / `postgresql://…`).
    pub fn connect(url: &str, pool_size: u32, timeout: Duration) -> Result<Db, DbError> {
        let pool_size = pool_size.max(1);
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = Pool::builder()
                .max_size(pool_size)
                .min_idle(Some(1))
                .connection_timeout(timeout)
                .build(ConnectionManager::<PgConnection>::new(guarded_pg_url(
                    url, timeout,
                )))
                .map_err(|e| DbError::Unavailable(e.to_string()))?;
            return Ok(Db {
                pool: DbPool::Postgres(pool),
                url: url.into(),
                timeout,
            });
        }
        let path = sqlite_path(url).ok_or_else(|| {
            DbError::Config("database.url must start with sqlite:// or postgres://".into())
        })?;
        if path != ":memory:" {
            if let Some(parent) = Path::new(path).parent() {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        DbError::Config(format!(
                            "cannot create the directory {} for the SQLite database: {e}",
                            parent.display()
                        ))
                    })?;
                }
            }
        }
        let pool = Pool::builder()
            .max_size(if path == ":memory:" { 1 } else { pool_size })
            .connection_timeout(timeout)
            .connection_customizer(Box::new(SqlitePragmas))
            .build(ConnectionManager::<SqliteConnection>::new(path))
            .map_err(|e| DbError::Unavailable(e.to_string()))?;
        Ok(Db {
            pool: DbPool::Sqlite(pool),
            url: url.into(),
            timeout,
        })
    }

    /// The URL and connect timeout of this database (crate-internal: the URL may hold a password).
    pub(crate) fn url_and_timeout(&self) -> (&str, Duration) {
        (&self.url, self.timeout)
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            DbPool::Sqlite(_) => Backend::Sqlite,
            DbPool::Postgres(_) => Backend::Postgres,
        }
    }

    /// A connection from the pool. Blocking: call it from [`Db::run`] or a blocking context.
    pub fn get(&self) -> Result<DbConn, DbError> {
        Ok(match &self.pool {
            DbPool::Sqlite(p) => DbConn::Sqlite(p.get()?),
            DbPool::Postgres(p) => DbConn::Postgres(p.get()?),
        })
    }

    /// Runs blocking Diesel work on the blocking thread pool, off the async workers.
    pub async fn run<F, R>(&self, f: F) -> Result<R, DbError>
    where
        F: FnOnce(&mut DbConn) -> Result<R, DbError> + Send + 'static,
        R: Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = db.get()?;
            f(&mut conn)
        })
        .await
        .map_err(|e| DbError::Unavailable(format!("database task failed: {e}")))?
    }

    /// Applies pending migrations of the connected backend; returns how many ran.
    pub fn migrate(&self) -> Result<usize, DbError> {
        let mut conn = self.get()?;
        let applied = match &mut conn {
            DbConn::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
            DbConn::Postgres(c) => {
                // Several instances may start at once: serialise their migrations. Waiting for
                // another instance's migration, and a migration of a big table, may take
                // longer than a statement may otherwise.
                c.batch_execute("SET statement_timeout = 0; SELECT pg_advisory_lock(7317001)")?;
                let r = c
                    .run_pending_migrations(POSTGRES_MIGRATIONS)
                    .map(|v| v.len());
                c.batch_execute(
                    "SELECT pg_advisory_unlock(7317001); SET statement_timeout TO DEFAULT",
                )?;
                r
            }
        };
        applied.map_err(|e| DbError::Migration(e.to_string()))
    }

    /// A trivial query, for `/healthz`.
    pub fn ping(&self) -> Result<(), DbError> {
        let mut conn = self.get()?;
        match &mut conn {
            DbConn::Sqlite(c) => c.batch_execute("SELECT 1")?,
            DbConn::Postgres(c) => c.batch_execute("SELECT 1")?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_become_paths() {
        assert_eq!(
            sqlite_path("sqlite://data/x.sqlite3"),
            Some("data/x.sqlite3")
        );
        assert_eq!(
            sqlite_path("sqlite:///tmp/x.sqlite3"),
            Some("/tmp/x.sqlite3")
        );
        assert_eq!(sqlite_path("sqlite::memory:"), Some(":memory:"));
        assert_eq!(sqlite_path("sqlite://"), None);
        assert_eq!(sqlite_path("mysql://x"), None);
    }

    #[test]
    fn postgres_urls_get_their_guards_once() {
        let t = Duration::from_secs(3);
        let url = guarded_pg_url("postgres://h/db", t);
        for part in [
            "connect_timeout=3",
            "keepalives=1",
            "tcp_user_timeout=20000",
            "statement_timeout%3D30000",
        ] {
            assert!(url.contains(part), "{url}");
        }
        assert!(url.starts_with("postgres://h/db?connect_timeout=3&"));
        let own = guarded_pg_url("postgres://h/db?sslmode=disable&connect_timeout=9", t);
        assert!(own.contains("connect_timeout=9") && !own.contains("connect_timeout=3"));
        assert!(own.contains("sslmode=disable&connect_timeout=9&keepalives=1"));
    }

    #[test]
    fn postgres_connections_carry_the_statement_timeout() {
        let Some(t) = crate::db::testing::TestDb::postgres() else {
            return;
        };
        let t = t.expect("a PostgreSQL test database");
        #[derive(diesel::QueryableByName)]
        struct Setting {
            #[diesel(sql_type = diesel::sql_types::Text)]
            statement_timeout: String,
        }
        let mut conn = t.db.get().unwrap();
        let DbConn::Postgres(c) = &mut conn else {
            panic!("a PostgreSQL connection");
        };
        use diesel::RunQueryDsl;
        let s: Setting = diesel::sql_query("SHOW statement_timeout")
            .get_result(&mut **c)
            .unwrap();
        assert_eq!(s.statement_timeout, "30s");
    }

    #[test]
    fn migrations_apply_twice_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.sqlite3", dir.path().display());
        let db = Db::connect(&url, 2, Duration::from_secs(5)).unwrap();
        assert!(db.migrate().unwrap() >= 1);
        assert_eq!(db.migrate().unwrap(), 0);
        db.ping().unwrap();
    }

    /// The bundled libpq is built with TLS, so `sslmode=require` is understood: the server
    /// either speaks TLS or is refused for not offering it. A libpq without TLS refuses the
    /// option itself ("SSL support is not compiled in").
    #[test]
    fn libpq_speaks_tls() {
        use diesel::Connection;

        let Some(t) = crate::db::testing::TestDb::postgres() else {
            return;
        };
        let t = t.expect("a PostgreSQL test database");
        let mut url = url::Url::parse(t.server_url().expect("PostgreSQL")).expect("a URL");
        url.query_pairs_mut().append_pair("sslmode", "require");
        match diesel::PgConnection::establish(url.as_str()) {
            Ok(_) => {}
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("does not support SSL"), "{msg}");
            }
        }
    }

    #[test]
    fn unknown_scheme_is_a_config_error() {
        let err = Db::connect("mysql://x", 1, Duration::from_secs(1))
            .err()
            .unwrap();
        assert!(matches!(err, DbError::Config(_)));
    }
}
