//! Test helpers for the repositories of the coordinator (servers, meetings, calls): a migrated
//! temp SQLite database, plus an isolated PostgreSQL schema when `DATABASE_URL_PG` is set.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;

use crate::db::schema::worlds;
use crate::db::{Db, DbConn};
use crate::with_conn;

/// A migrated SQLite database in a temp dir (kept alive by the returned guard).
pub fn temp_sqlite() -> (Db, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/test.sqlite3", dir.path().display());
    let db = Db::connect(&url, 4, Duration::from_secs(10)).expect("sqlite");
    db.migrate().expect("migrate");
    (db, dir)
}

/// Runs `f` against a fresh SQLite database, and against a fresh PostgreSQL schema when
/// `DATABASE_URL_PG` is set.
pub fn for_each_backend(f: impl Fn(&mut DbConn)) {
    let (db, _dir) = temp_sqlite();
    f(&mut db.get().expect("conn"));
    if let Ok(base) = std::env::var("DATABASE_URL_PG") {
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let admin = Db::connect(&base, 1, Duration::from_secs(10)).expect("pg");
        admin
            .get()
            .and_then(|mut c| {
                with_conn!(&mut c, |c| c
                    .batch_execute(&format!("CREATE SCHEMA {schema}"))
                    .map_err(crate::db::DbError::from))
            })
            .expect("create schema");
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
        let db = Db::connect(&url, 2, Duration::from_secs(10)).expect("pg schema");
        db.migrate().expect("pg migrate");
        f(&mut db.get().expect("conn"));
        drop(db);
        let _ = admin.get().and_then(|mut c| {
            with_conn!(&mut c, |c| c
                .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
                .map_err(crate::db::DbError::from))
        });
    }
}

/// Inserts a minimal world row (foreign key target of calls).
pub fn insert_world(conn: &mut DbConn, id: &str) {
    with_conn!(conn, |c| diesel::insert_into(worlds::table)
        .values((worlds::id.eq(id), worlds::title.eq(id)))
        .execute(c))
    .expect("insert world");
}
