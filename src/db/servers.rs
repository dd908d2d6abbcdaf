//! The BBB server registry (`bbb_servers`): what the CLI and admin API change and what the
//! coordinator re-reads on every poll tick, so changes apply while the gateway runs.

use std::fmt;
use std::str::FromStr;

use diesel::prelude::*;

use crate::bbb::{ChecksumAlgorithm, Secret, ServerEndpoint};
use crate::db::schema::{bbb_servers, worlds};
use crate::db::{now_ms, DbConn, DbError};
use crate::ids::ServerId;
use crate::with_conn;

/// Operator-set state of a server. Cordoned keeps its running meetings but gets no new ones;
/// disabled gets nothing (its meetings move at their next join).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerState {
    Enabled,
    Cordoned,
    Disabled,
}

impl ServerState {
    /// The stored (and CLI) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Enabled => "enabled",
            ServerState::Cordoned => "cordoned",
            ServerState::Disabled => "disabled",
        }
    }
}

impl fmt::Display for ServerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ServerState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "enabled" => Ok(ServerState::Enabled),
            "cordoned" => Ok(ServerState::Cordoned),
            "disabled" => Ok(ServerState::Disabled),
            other => Err(format!(
                "unknown server state {other:?} (expected enabled, cordoned or disabled)"
            )),
        }
    }
}

/// One registered server. `Debug` never prints the secret (it is a [`Secret`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerRow {
    pub id: ServerId,
    /// Normalised base URL, e.g. `https://bbb1.example.org/bigbluebutton`.
    pub url: String,
    pub secret: Secret,
    pub checksum: ChecksumAlgorithm,
    /// Load multiplier (> 0): a server's load is multiplied by it when placing meetings, so a
    /// smaller server gets a higher weight.
    pub weight: f64,
    pub tag: Option<String>,
    /// `Some(world)`: exclusive to that world; `None`: shared by all worlds.
    pub world_id: Option<String>,
    pub state: ServerState,
    /// Participants the server can carry; `None`: unlimited. Placement keeps a server's
    /// participants, reservations included, within it while another server has room.
    pub capacity: Option<u32>,
    /// Bumped by every panic; a running coordinator that sees it change forgets the server's
    /// meetings (the CLI panics servers without talking to the gateway).
    pub panic_epoch: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ServerRow {
    /// What the BBB client needs to sign and send calls to this server.
    pub fn endpoint(&self) -> ServerEndpoint {
        ServerEndpoint {
            base_url: self.url.clone(),
            secret: self.secret.clone(),
            algorithm: self.checksum,
        }
    }
}

/// A server to register.
#[derive(Debug, Clone)]
pub struct NewServer {
    /// Any accepted form of the base URL; it is normalised before it is stored.
    pub url: String,
    pub secret: Secret,
    pub checksum: ChecksumAlgorithm,
    pub weight: f64,
    pub tag: Option<String>,
    pub world_id: Option<String>,
    /// Participants it can carry; `None`: unlimited.
    pub capacity: Option<u32>,
}

/// The largest capacity accepted: far beyond any BBB server, small enough for every column
/// type and sum.
pub const MAX_CAPACITY: u32 = 1_000_000;

#[derive(Queryable)]
struct RawServer {
    id: i32,
    url: String,
    secret: String,
    checksum: String,
    weight: f64,
    tag: Option<String>,
    world_id: Option<String>,
    state: String,
    panic_epoch: i64,
    created_at: i64,
    updated_at: i64,
    capacity: Option<i32>,
}

/// The columns of [`RawServer`], in its order.
type RawColumns = (
    bbb_servers::id,
    bbb_servers::url,
    bbb_servers::secret,
    bbb_servers::checksum,
    bbb_servers::weight,
    bbb_servers::tag,
    bbb_servers::world_id,
    bbb_servers::state,
    bbb_servers::panic_epoch,
    bbb_servers::created_at,
    bbb_servers::updated_at,
    bbb_servers::capacity,
);

const RAW_COLUMNS: RawColumns = (
    bbb_servers::id,
    bbb_servers::url,
    bbb_servers::secret,
    bbb_servers::checksum,
    bbb_servers::weight,
    bbb_servers::tag,
    bbb_servers::world_id,
    bbb_servers::state,
    bbb_servers::panic_epoch,
    bbb_servers::created_at,
    bbb_servers::updated_at,
    bbb_servers::capacity,
);

impl TryFrom<RawServer> for ServerRow {
    type Error = DbError;
    fn try_from(r: RawServer) -> Result<Self, DbError> {
        let checksum = r
            .checksum
            .parse()
            .map_err(|e| DbError::Invalid(format!("server {}: {e}", r.id)))?;
        let state = r
            .state
            .parse()
            .map_err(|e| DbError::Invalid(format!("server {}: {e}", r.id)))?;
        Ok(ServerRow {
            id: ServerId::new(r.id),
            url: r.url,
            secret: Secret::new(r.secret),
            checksum,
            weight: r.weight,
            tag: r.tag,
            world_id: r.world_id,
            state,
            // A negative stored value cannot come from this code; treat it as unlimited.
            capacity: r.capacity.and_then(|c| u32::try_from(c).ok()),
            panic_epoch: r.panic_epoch,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

fn check_weight(weight: f64) -> Result<(), DbError> {
    if weight.is_finite() && weight > 0.0 {
        Ok(())
    } else {
        Err(DbError::Invalid(format!(
            "weight must be a number greater than 0, got {weight}"
        )))
    }
}

/// A capacity is 1 to [`MAX_CAPACITY`] participants (`None`: unlimited).
pub fn check_capacity(capacity: Option<u32>) -> Result<(), DbError> {
    match capacity {
        Some(c) if c == 0 || c > MAX_CAPACITY => Err(DbError::Invalid(format!(
            "capacity must be a whole number of participants from 1 to {MAX_CAPACITY} \
             (or none for unlimited), got {c}"
        ))),
        _ => Ok(()),
    }
}

fn capacity_column(capacity: Option<u32>) -> Option<i32> {
    capacity.and_then(|c| i32::try_from(c).ok())
}

/// Registers a server; the URL is normalised and must not be registered already.
pub fn add(conn: &mut DbConn, new: &NewServer) -> Result<ServerRow, DbError> {
    let url = crate::bbb::normalize_base_url(&new.url).map_err(DbError::Invalid)?;
    check_weight(new.weight)?;
    check_capacity(new.capacity)?;
    if new.secret.expose().trim().is_empty() {
        return Err(DbError::Invalid("the secret must not be empty".into()));
    }
    let tag = new.tag.as_deref().map(str::trim).filter(|t| !t.is_empty());
    let world = new
        .world_id
        .as_deref()
        .map(str::trim)
        .filter(|w| !w.is_empty());
    let now = now_ms();
    // Checks first, then one INSERT on its own: a read-then-write transaction could fail with
    // SQLITE_BUSY when the running gateway writes at the same time. The UNIQUE index on `url`
    // catches a concurrent registration of the same URL.
    let taken = format!("a server with the URL {url} is already registered");
    let id: i32 = with_conn!(conn, |c| {
        if let Some(world) = world {
            let known: i64 = worlds::table
                .filter(worlds::id.eq(world))
                .count()
                .get_result(c)?;
            if known == 0 {
                return Err(DbError::Invalid(format!("unknown world {world:?}")));
            }
        }
        let existing: i64 = bbb_servers::table
            .filter(bbb_servers::url.eq(&url))
            .count()
            .get_result(c)?;
        if existing > 0 {
            return Err(DbError::Invalid(taken));
        }
        diesel::insert_into(bbb_servers::table)
            .values((
                bbb_servers::url.eq(&url),
                bbb_servers::secret.eq(new.secret.expose()),
                bbb_servers::checksum.eq(new.checksum.as_str()),
                bbb_servers::weight.eq(new.weight),
                bbb_servers::tag.eq(tag),
                bbb_servers::world_id.eq(world),
                bbb_servers::state.eq(ServerState::Enabled.as_str()),
                bbb_servers::capacity.eq(capacity_column(new.capacity)),
                bbb_servers::created_at.eq(now),
                bbb_servers::updated_at.eq(now),
            ))
            .returning(bbb_servers::id)
            .get_result(c)
            .map_err(|e| match e {
                diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UniqueViolation,
                    _,
                ) => DbError::Invalid(taken),
                other => DbError::from(other),
            })
    })?;
    get(conn, ServerId::new(id))?
        .ok_or_else(|| DbError::Invalid("the new server disappeared".into()))
}

/// Every registered server, by id.
pub fn list(conn: &mut DbConn) -> Result<Vec<ServerRow>, DbError> {
    let raw: Vec<RawServer> = with_conn!(conn, |c| bbb_servers::table
        .order(bbb_servers::id)
        .select(RAW_COLUMNS)
        .load(c))?;
    raw.into_iter().map(ServerRow::try_from).collect()
}

/// One server, or `None` for an unknown id.
pub fn get(conn: &mut DbConn, id: ServerId) -> Result<Option<ServerRow>, DbError> {
    let raw: Option<RawServer> = with_conn!(conn, |c| bbb_servers::table
        .find(id.get())
        .select(RAW_COLUMNS)
        .first(c)
        .optional())?;
    raw.map(ServerRow::try_from).transpose()
}

/// Sets the state; `false` for an unknown id.
pub fn set_state(conn: &mut DbConn, id: ServerId, state: ServerState) -> Result<bool, DbError> {
    let now = now_ms();
    let n = with_conn!(conn, |c| diesel::update(bbb_servers::table.find(id.get()))
        .set((
            bbb_servers::state.eq(state.as_str()),
            bbb_servers::updated_at.eq(now),
        ))
        .execute(c))?;
    Ok(n > 0)
}

/// Sets the load multiplier (> 0); `false` for an unknown id.
pub fn set_weight(conn: &mut DbConn, id: ServerId, weight: f64) -> Result<bool, DbError> {
    check_weight(weight)?;
    let now = now_ms();
    let n = with_conn!(conn, |c| diesel::update(bbb_servers::table.find(id.get()))
        .set((
            bbb_servers::weight.eq(weight),
            bbb_servers::updated_at.eq(now),
        ))
        .execute(c))?;
    Ok(n > 0)
}

/// Sets the participants a server can carry (`None`: unlimited); `false` for an unknown id.
pub fn set_capacity(
    conn: &mut DbConn,
    id: ServerId,
    capacity: Option<u32>,
) -> Result<bool, DbError> {
    check_capacity(capacity)?;
    let now = now_ms();
    let n = with_conn!(conn, |c| diesel::update(bbb_servers::table.find(id.get()))
        .set((
            bbb_servers::capacity.eq(capacity_column(capacity)),
            bbb_servers::updated_at.eq(now),
        ))
        .execute(c))?;
    Ok(n > 0)
}

/// Unregisters a server; `false` for an unknown id. Its meetings move at their next join.
pub fn remove(conn: &mut DbConn, id: ServerId) -> Result<bool, DbError> {
    let n = with_conn!(conn, |c| diesel::delete(bbb_servers::table.find(id.get()))
        .execute(c))?;
    Ok(n > 0)
}

/// Unregisters every server with this tag (the demo's own simulator); returns how many.
pub fn remove_by_tag(conn: &mut DbConn, tag: &str) -> Result<usize, DbError> {
    Ok(with_conn!(conn, |c| diesel::delete(
        bbb_servers::table.filter(bbb_servers::tag.eq(tag))
    )
    .execute(c))?)
}

/// Panics a server: bumps its `panic_epoch` (so running coordinators forget its meetings) and
/// unplaces its stored meetings so the next join re-creates them elsewhere. `None` for an
/// unknown id, else how many stored meetings were forgotten.
pub fn panic(conn: &mut DbConn, id: ServerId) -> Result<Option<usize>, DbError> {
    let now = now_ms();
    with_conn!(conn, |c| c.transaction(|c| {
        let n = diesel::update(bbb_servers::table.find(id.get()))
            .set((
                bbb_servers::panic_epoch.eq(bbb_servers::panic_epoch + 1),
                bbb_servers::updated_at.eq(now),
            ))
            .execute(c)?;
        if n == 0 {
            return Ok(None);
        }
        let forgotten = diesel::update(
            crate::db::schema::meetings::table
                .filter(crate::db::schema::meetings::server_id.eq(id.get())),
        )
        .set((
            crate::db::schema::meetings::server_id.eq(None::<i32>),
            crate::db::schema::meetings::confirmed_at.eq(None::<i64>),
            crate::db::schema::meetings::updated_at.eq(now),
        ))
        .execute(c)?;
        Ok::<_, DbError>(Some(forgotten))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::test_support::{for_each_backend, insert_world};

    fn server(url: &str) -> NewServer {
        NewServer {
            url: url.into(),
            secret: Secret::new("s3cr3t-value"),
            checksum: ChecksumAlgorithm::Sha1,
            weight: 1.0,
            tag: Some("eu".into()),
            world_id: None,
            capacity: None,
        }
    }

    #[test]
    fn add_list_get_and_change() {
        for_each_backend(|conn| {
            let a = add(conn, &server("https://bbb1.example.org/bigbluebutton/")).unwrap();
            assert_eq!(a.url, "https://bbb1.example.org/bigbluebutton");
            assert_eq!(a.state, ServerState::Enabled);
            assert_eq!(a.checksum, ChecksumAlgorithm::Sha1);
            assert_eq!(a.secret.expose(), "s3cr3t-value");
            let b = add(conn, &server("https://bbb2.example.org/bigbluebutton")).unwrap();
            assert_eq!(
                list(conn).unwrap().iter().map(|s| s.id).collect::<Vec<_>>(),
                vec![a.id, b.id]
            );
            assert!(set_state(conn, a.id, ServerState::Cordoned).unwrap());
            assert!(set_weight(conn, a.id, 2.5).unwrap());
            let a2 = get(conn, a.id).unwrap().unwrap();
            assert_eq!(a2.state, ServerState::Cordoned);
            assert_eq!(a2.weight, 2.5);
            assert!(!set_state(conn, ServerId::new(9999), ServerState::Disabled).unwrap());
            assert!(!set_weight(conn, ServerId::new(9999), 1.0).unwrap());
            assert!(remove(conn, a.id).unwrap());
            assert!(!remove(conn, a.id).unwrap());
            assert!(get(conn, a.id).unwrap().is_none());
        });
    }

    #[test]
    fn duplicate_url_bad_weight_and_unknown_world_are_refused() {
        for_each_backend(|conn| {
            add(conn, &server("https://bbb1.example.org/bigbluebutton")).unwrap();
            let dup = add(conn, &server("https://bbb1.example.org/bigbluebutton/"));
            assert!(matches!(dup, Err(DbError::Invalid(m)) if m.contains("already registered")));
            let mut s = server("https://bbb3.example.org/bigbluebutton");
            s.weight = 0.0;
            assert!(matches!(add(conn, &s), Err(DbError::Invalid(_))));
            s.weight = 1.0;
            s.world_id = Some("nope".into());
            assert!(
                matches!(add(conn, &s), Err(DbError::Invalid(m)) if m.contains("unknown world"))
            );
            insert_world(conn, "w1");
            s.world_id = Some("w1".into());
            assert_eq!(add(conn, &s).unwrap().world_id.as_deref(), Some("w1"));
            assert!(set_weight(conn, ServerId::new(1), -1.0).is_err());
        });
    }

    #[test]
    fn capacity_is_stored_changed_and_checked() {
        for_each_backend(|conn| {
            let a = add(conn, &server("https://bbb1.example.org/bigbluebutton")).unwrap();
            assert_eq!(a.capacity, None);
            let mut big = server("https://bbb2.example.org/bigbluebutton");
            big.capacity = Some(500);
            let b = add(conn, &big).unwrap();
            assert_eq!(b.capacity, Some(500));
            assert!(set_capacity(conn, a.id, Some(250)).unwrap());
            assert_eq!(get(conn, a.id).unwrap().unwrap().capacity, Some(250));
            assert!(set_capacity(conn, b.id, None).unwrap());
            assert_eq!(get(conn, b.id).unwrap().unwrap().capacity, None);
            assert!(!set_capacity(conn, ServerId::new(9999), Some(1)).unwrap());
            for bad in [0, MAX_CAPACITY + 1] {
                let e = set_capacity(conn, a.id, Some(bad)).unwrap_err();
                assert!(
                    matches!(&e, DbError::Invalid(m) if m.contains("capacity")),
                    "{e:?}"
                );
                let mut s = server("https://bbb3.example.org/bigbluebutton");
                s.capacity = Some(bad);
                assert!(matches!(add(conn, &s), Err(DbError::Invalid(_))));
            }
            assert_eq!(get(conn, a.id).unwrap().unwrap().capacity, Some(250));
        });
    }

    #[test]
    fn debug_never_prints_the_secret() {
        for_each_backend(|conn| {
            let a = add(conn, &server("https://bbb1.example.org/bigbluebutton")).unwrap();
            let dbg = format!("{a:?}");
            assert!(!dbg.contains("s3cr3t-value"), "{dbg}");
        });
    }

    #[test]
    fn panic_bumps_the_epoch_and_unplaces_meetings() {
        use crate::db::meetings::{self, MeetingRow};
        for_each_backend(|conn| {
            let a = add(conn, &server("https://bbb1.example.org/bigbluebutton")).unwrap();
            assert_eq!(a.panic_epoch, 0);
            let key = crate::ids::MeetingKey::room("w", "r");
            let row = MeetingRow {
                meeting_key: key.clone(),
                world_id: "w".into(),
                room_id: Some("r".into()),
                call_id: None,
                server: Some(a.id),
                meeting_id: "m1".into(),
                attendee_pw: "ap".into(),
                moderator_pw: "mp".into(),
                create_time: None,
                created_at: 0,
                updated_at: 0,
                callback_issued_at: None,
                ended_at: None,
                creating_by: None,
                creating_until: None,
                confirmed_at: None,
            };
            meetings::insert_or_get(conn, &row).unwrap();
            assert_eq!(panic(conn, a.id).unwrap(), Some(1));
            assert_eq!(get(conn, a.id).unwrap().unwrap().panic_epoch, 1);
            assert_eq!(meetings::get(conn, &key).unwrap().unwrap().server, None);
            assert_eq!(panic(conn, a.id).unwrap(), Some(0));
            assert_eq!(panic(conn, ServerId::new(9999)).unwrap(), None);
        });
    }

    #[test]
    fn remove_by_tag_removes_only_that_tag() {
        for_each_backend(|conn| {
            add(conn, &server("https://bbb1.example.org/bigbluebutton")).unwrap();
            let mut other = server("https://bbb2.example.org/bigbluebutton");
            other.tag = Some("demo".into());
            add(conn, &other).unwrap();
            assert_eq!(remove_by_tag(conn, "demo").unwrap(), 1);
            assert_eq!(list(conn).unwrap().len(), 1);
        });
    }

    #[test]
    fn state_parses() {
        assert_eq!("Cordoned".parse::<ServerState>(), Ok(ServerState::Cordoned));
        assert!("paused".parse::<ServerState>().is_err());
    }
}
