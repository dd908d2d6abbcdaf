//! Test helpers for the coordinator's repositories (servers, meetings, calls) and its actor
//! tests. Repository tests run on every backend through the shared [`crate::db::testing`].

use std::time::Duration;

use diesel::prelude::*;

use crate::bbb::{ChecksumAlgorithm, Secret};
use crate::db::schema::worlds;
use crate::db::servers::{ServerRow, ServerState};
use crate::db::{Db, DbConn};
use crate::with_conn;

/// A migrated SQLite database in a temp dir (kept alive by the returned guard), with a pool
/// big enough for an actor under test and the test itself.
pub fn temp_sqlite() -> (Db, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/test.sqlite3", dir.path().display());
    let db = Db::connect(&url, 4, Duration::from_secs(10)).expect("sqlite");
    db.migrate().expect("migrate");
    (db, dir)
}

/// Runs `f` against a fresh SQLite database and a fresh PostgreSQL database (see
/// [`crate::db::testing`]).
pub fn for_each_backend(f: impl FnMut(&mut DbConn)) {
    crate::db::testing::for_each_backend(f).expect("test database");
}

/// Inserts a minimal world row (foreign key target of calls and exclusive servers).
pub fn insert_world(conn: &mut DbConn, id: &str) {
    with_conn!(conn, |c| diesel::insert_into(worlds::table)
        .values((worlds::id.eq(id), worlds::title.eq(id)))
        .execute(c))
    .expect("insert world");
}

/// A registry row of an enabled, shared server `id` at `https://bbb{id}.example.org/…`, as
/// the database would return it; tests change fields with struct update syntax.
pub fn server_row(id: i32) -> ServerRow {
    ServerRow {
        id: crate::ids::ServerId::new(id),
        url: format!("https://bbb{id}.example.org/bigbluebutton"),
        secret: Secret::new("s"),
        checksum: ChecksumAlgorithm::Sha256,
        weight: 1.0,
        tag: None,
        world_id: None,
        state: ServerState::Enabled,
        capacity: None,
        panic_epoch: 0,
        created_at: 0,
        updated_at: 0,
    }
}
