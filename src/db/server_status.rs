//! `bbb_server_status`: each server's health and load as last polled. The poller writes it so
//! that `server list`, the admin routes and other instances see the same fleet.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::upsert::excluded;

use crate::db::schema::bbb_server_status as st;
use crate::db::{DbConn, DbError};
use crate::ids::ServerId;
use crate::with_conn;

/// One server's polled status.
#[derive(Debug, Clone, PartialEq, Queryable, Insertable)]
#[diesel(table_name = st)]
pub struct ServerStatusRow {
    pub server_id: i32,
    pub online: bool,
    pub meetings: i32,
    pub participants: i32,
    pub voice: i32,
    pub videos: i32,
    pub load: f64,
    pub consecutive_failures: i32,
    /// ms since epoch of the poll that produced this row.
    pub polled_at: i64,
    /// `bbbVersion` of the server's API index, when it answered one.
    pub bbb_version: Option<String>,
    /// Why the last poll failed (BBB errors never carry the URL or the secret).
    pub last_error: Option<String>,
    pub listeners: i32,
    /// Participants of the largest meeting.
    pub largest_meeting: i32,
    /// Participants with every young meeting counted at least at its expected size (what
    /// placement compares with the server's capacity).
    pub occupancy: i32,
}

impl ServerStatusRow {
    /// The server this row is about.
    pub fn server(&self) -> ServerId {
        ServerId::new(self.server_id)
    }
}

/// Stores the result of one poll round (insert or update per server).
pub fn store(conn: &mut DbConn, rows: &[ServerStatusRow]) -> Result<(), DbError> {
    if rows.is_empty() {
        return Ok(());
    }
    with_conn!(conn, |c| c.transaction(|c| {
        for row in rows {
            diesel::insert_into(st::table)
                .values(row)
                .on_conflict(st::server_id)
                .do_update()
                .set((
                    st::online.eq(excluded(st::online)),
                    st::meetings.eq(excluded(st::meetings)),
                    st::participants.eq(excluded(st::participants)),
                    st::voice.eq(excluded(st::voice)),
                    st::videos.eq(excluded(st::videos)),
                    st::load.eq(excluded(st::load)),
                    st::consecutive_failures.eq(excluded(st::consecutive_failures)),
                    st::polled_at.eq(excluded(st::polled_at)),
                    st::bbb_version.eq(excluded(st::bbb_version)),
                    st::last_error.eq(excluded(st::last_error)),
                    st::listeners.eq(excluded(st::listeners)),
                    st::largest_meeting.eq(excluded(st::largest_meeting)),
                    st::occupancy.eq(excluded(st::occupancy)),
                ))
                .execute(c)?;
        }
        Ok::<_, DbError>(())
    }))
}

/// Every stored status, by server id.
pub fn load_all(conn: &mut DbConn) -> Result<HashMap<ServerId, ServerStatusRow>, DbError> {
    let rows: Vec<ServerStatusRow> = with_conn!(conn, |c| st::table.load(c))?;
    Ok(rows.into_iter().map(|r| (r.server(), r)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::test_support::for_each_backend;

    #[test]
    fn store_upserts_and_load_reads_back() {
        for_each_backend(|conn| {
            let mut row = ServerStatusRow {
                server_id: 7,
                online: true,
                meetings: 2,
                participants: 30,
                voice: 10,
                videos: 4,
                load: 55.5,
                consecutive_failures: 0,
                polled_at: 1,
                bbb_version: Some("2.7.0".into()),
                last_error: None,
                listeners: 3,
                largest_meeting: 20,
                occupancy: 45,
            };
            store(conn, &[row.clone()]).unwrap();
            row.online = false;
            row.consecutive_failures = 2;
            row.last_error = Some("timeout".into());
            row.occupancy = 60;
            store(conn, &[row.clone()]).unwrap();
            let all = load_all(conn).unwrap();
            assert_eq!(all.len(), 1);
            assert_eq!(all[&ServerId::new(7)], row);
        });
    }
}
