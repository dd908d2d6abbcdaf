//! Persistent state through Diesel: one r2d2 pool over SQLite (embedded default) or PostgreSQL
//! (production, several instances), chosen by the URL at run time.
//!
//! Repository functions take `&mut DbConn` and use [`with_conn!`](crate::with_conn) to run the
//! same Diesel code on whichever backend is connected. Blocking Diesel work never runs on the
//! async workers: [`Db::run`] moves it to the blocking thread pool.

pub(crate) mod schema;

pub mod calls;
pub mod changes;
pub mod demo_state;
pub mod lease;
pub mod meetings;
pub mod reservations;
pub mod retention;
pub mod secrets;
pub(crate) mod server_status;
pub mod servers;
#[cfg(test)]
pub(crate) mod test_support;
#[doc(hidden)]
pub mod testing;
pub mod users;

mod pool;
pub use pool::*;

/// Milliseconds since the Unix epoch, the time unit stored in every `*_at` column.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Runs `$body` with `$c` bound to the concrete `&mut SqliteConnection` or `&mut PgConnection`
/// behind a `&mut DbConn`. The body is compiled once per backend.
#[macro_export]
macro_rules! with_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::DbConn::Sqlite(pooled) => {
                let $c: &mut ::diesel::SqliteConnection = &mut **pooled;
                $body
            }
            $crate::db::DbConn::Postgres(pooled) => {
                let $c: &mut ::diesel::PgConnection = &mut **pooled;
                $body
            }
        }
    };
}
