//! Changes other gateway instances must learn within a second, carried by PostgreSQL
//! `NOTIFY` on one channel and received by a `LISTEN` connection of each instance: meetings
//! BBB ended (an end callback, or the leader's poll no longer listing one), creates another
//! instance sent (their outcome, for those waiting on it, and the confirmation it gave), and
//! placements that changed (a cue to read the changed meetings now instead of at the next
//! tick), and the leader's stored poll results (a cue to read them now).
//!
//! SQLite serves one instance, whose coordinator applies its own changes directly; there the
//! notifications are a no-op and nobody listens.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::sql_types::Text;
use diesel::{Connection, PgConnection, RunQueryDsl};

use crate::db::{Db, DbConn, DbError};
use crate::ids::{MeetingKey, ServerId};

/// The notification channel.
pub const CHANNEL: &str = "bbb_gateway_changes";
/// How often the listener looks for notifications that arrived (a non-blocking read of its
/// socket). Short, because instances placing a burst of new meetings at once see each other's
/// reservations only this late, and place blind meanwhile.
const POLL_EVERY: Duration = Duration::from_millis(25);
/// How often the listener checks that its connection still works.
const PING_EVERY: Duration = Duration::from_secs(5);

/// A change another instance made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// BBB ended `key`'s meeting instance whose end-callback token was issued at `issued_at`.
    Ended { key: MeetingKey, issued_at: i64 },
    /// The leader's poll of the meeting's server, sent at `polled_at` (ms), no longer listed it.
    Gone { key: MeetingKey, polled_at: i64 },
    /// A create sent at `sent_at` (ms) confirmed the meeting (BBB id `meeting_id`) running on
    /// `server` as the instance with `create_time`.
    Confirmed {
        key: MeetingKey,
        meeting_id: String,
        server: ServerId,
        create_time: i64,
        sent_at: i64,
    },
    /// The create another instance sent for `key` failed: whoever waited for it tries itself.
    CreateFailed { key: MeetingKey },
    /// A meeting was placed on a server and holds places there until its polls count it.
    Reserved(crate::db::reservations::SharedReservation),
    /// `key`'s meeting was deleted (retention).
    Deleted { key: MeetingKey },
    /// The leader stored the results of a poll: followers read them now instead of at their
    /// next tick (a follower that has none yet trusts no server).
    Polled,
}

impl Change {
    fn payload(&self) -> String {
        match self {
            Change::Ended { key, issued_at } => format!("ended {issued_at} {key}"),
            Change::Gone { key, polled_at } => format!("gone {polled_at} {key}"),
            Change::Confirmed {
                key,
                meeting_id,
                server,
                create_time,
                sent_at,
            } => format!("confirmed {server} {create_time} {sent_at} {meeting_id} {key}"),
            Change::CreateFailed { key } => format!("failed {key}"),
            Change::Reserved(r) => format!(
                "reserved {} {} {} {}",
                r.server, r.expected, r.placed_at, r.meeting_id
            ),
            Change::Deleted { key } => format!("deleted {key}"),
            Change::Polled => "polled".to_string(),
        }
    }

    fn parse(payload: &str) -> Option<Change> {
        if payload == "polled" {
            return Some(Change::Polled);
        }
        let (kind, rest) = payload.split_once(' ')?;
        // Keys may contain spaces (room ids): the key is always the rest of the payload.
        let fields = |n: usize| -> Option<(Vec<i64>, MeetingKey)> {
            let (numbers, rest) = fields_then(rest, n)?;
            Some((numbers, MeetingKey::parse(rest)?))
        };
        Some(match kind {
            "ended" => {
                let (n, key) = fields(1)?;
                Change::Ended {
                    key,
                    issued_at: n[0],
                }
            }
            "gone" => {
                let (n, key) = fields(1)?;
                Change::Gone {
                    key,
                    polled_at: n[0],
                }
            }
            "confirmed" => {
                // Meeting ids are tokens without spaces, followed by the key.
                let (n, rest) = fields_then(rest, 3)?;
                let (meeting_id, key) = rest.split_once(' ')?;
                Change::Confirmed {
                    key: MeetingKey::parse(key)?,
                    meeting_id: Some(meeting_id).filter(|m| !m.is_empty())?.to_string(),
                    server: ServerId::new(i32::try_from(n[0]).ok()?),
                    create_time: n[1],
                    sent_at: n[2],
                }
            }
            "failed" => Change::CreateFailed { key: fields(0)?.1 },
            "reserved" => {
                // Meeting ids are tokens without spaces: the id is the rest of the payload.
                let mut parts = rest.splitn(4, ' ');
                let server = ServerId::new(parts.next()?.parse().ok()?);
                let expected = parts.next()?.parse().ok()?;
                let placed_at = parts.next()?.parse().ok()?;
                let meeting_id = parts.next().filter(|m| !m.is_empty())?.to_string();
                Change::Reserved(crate::db::reservations::SharedReservation {
                    server,
                    meeting_id,
                    expected,
                    placed_at,
                })
            }
            "deleted" => Change::Deleted { key: fields(0)?.1 },
            _ => return None,
        })
    }
}

/// `n` numbers separated by spaces at the start of `text`, and the rest after them.
fn fields_then(text: &str, n: usize) -> Option<(Vec<i64>, &str)> {
    let mut parts = text.splitn(n + 1, ' ');
    let mut numbers = Vec::with_capacity(n);
    for _ in 0..n {
        numbers.push(parts.next()?.parse().ok()?);
    }
    Some((numbers, parts.next()?))
}

/// Tells every instance about `change` (delivered when the surrounding transaction, if any,
/// commits; a no-op on SQLite).
pub fn notify(conn: &mut DbConn, change: &Change) -> Result<(), DbError> {
    if let DbConn::Postgres(c) = conn {
        diesel::sql_query("SELECT pg_notify($1, $2)")
            .bind::<Text, _>(CHANNEL)
            .bind::<Text, _>(change.payload())
            .execute(&mut **c)?;
    }
    Ok(())
}

/// A running listener; dropping it (or [`ChangeListener::stop`]) ends its thread.
pub struct ChangeListener {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ChangeListener {
    /// Stops the listener and waits for its thread (at most one poll period).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ChangeListener {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Listens for other instances' changes on a connection of its own (PostgreSQL only; `None`
/// for SQLite) and hands each to `on_change`, from the listener's thread. `on_resync` is
/// called after every (re)connection: notifications sent while disconnected are lost, so the
/// caller re-reads what they would have said.
pub fn listen(
    db: &Db,
    on_change: impl Fn(Change) + Send + 'static,
    on_resync: impl Fn() + Send + 'static,
) -> Option<ChangeListener> {
    if db.backend() != crate::db::Backend::Postgres {
        return None;
    }
    let (url, timeout) = db.url_and_timeout();
    let url = crate::db::guarded_pg_url(url, timeout);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("bbb-gateway-listen".into())
        .spawn(move || run(&url, &flag, &on_change, &on_resync))
        .ok()?;
    Some(ChangeListener {
        stop,
        thread: Some(thread),
    })
}

fn sleep_unless_stopped(stop: &AtomicBool, d: Duration) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        std::thread::sleep(POLL_EVERY.min(until.saturating_duration_since(Instant::now())));
    }
}

fn run(url: &str, stop: &AtomicBool, on_change: &dyn Fn(Change), on_resync: &dyn Fn()) {
    let mut backoff = Duration::from_millis(200);
    while !stop.load(Ordering::Relaxed) {
        match listen_once(url, stop, on_change, on_resync) {
            Ok(()) => return,
            Err(e) => {
                log::warn!("change notifications interrupted (reconnecting): {e}");
                sleep_unless_stopped(stop, backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// One connection's life: `Ok` when asked to stop, `Err` when the connection failed.
fn listen_once(
    url: &str,
    stop: &AtomicBool,
    on_change: &dyn Fn(Change),
    on_resync: &dyn Fn(),
) -> Result<(), DbError> {
    let mut conn = PgConnection::establish(url).map_err(|e| DbError::Unavailable(e.to_string()))?;
    conn.batch_execute(&format!("LISTEN {CHANNEL}"))?;
    on_resync();
    let mut last_ping = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        for notification in conn.notifications_iter() {
            let n = notification?;
            match Change::parse(&n.payload) {
                Some(change) => on_change(change),
                None => log::warn!("ignoring a malformed change notification"),
            }
        }
        if last_ping.elapsed() >= PING_EVERY {
            conn.batch_execute("SELECT 1")?;
            last_ping = Instant::now();
        }
        std::thread::sleep(POLL_EVERY);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        let key = MeetingKey::room("w", "a room: with spaces");
        for change in [
            Change::Ended {
                key: key.clone(),
                issued_at: 1_700_000_000_000,
            },
            Change::Gone {
                key: key.clone(),
                polled_at: 5,
            },
            Change::Confirmed {
                key: key.clone(),
                meeting_id: "m1".into(),
                server: ServerId::new(3),
                create_time: 7,
                sent_at: 8,
            },
            Change::CreateFailed { key: key.clone() },
            Change::Reserved(crate::db::reservations::SharedReservation {
                server: ServerId::new(4),
                meeting_id: "abc123".into(),
                expected: 800,
                placed_at: 9,
            }),
            Change::Deleted { key: key.clone() },
            Change::Polled,
        ] {
            assert_eq!(Change::parse(&change.payload()), Some(change));
        }
        for bad in [
            "",
            "ended",
            "ended x room:w:r",
            "ended 1 nokey",
            "other 1 room:w:r",
            "confirmed 1 2 room:w:r",
            "confirmed 1 2 3 room:w:r",
            "failed",
            "reserved 1 800 9",
            "reserved x 800 9 m",
            "reserved 1 -5 9 m",
            "polled 1",
        ] {
            assert_eq!(Change::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn notifications_reach_every_listener() {
        // `None` only where PostgreSQL is not installed (reported as skipped).
        let Some(t) = crate::db::testing::TestDb::postgres() else {
            return;
        };
        let t = t.expect("a PostgreSQL test database");
        let (tx, rx) = std::sync::mpsc::channel();
        let resynced = Arc::new(AtomicBool::new(false));
        let r = resynced.clone();
        let listener = listen(
            &t.db,
            move |c| {
                let _ = tx.send(c);
            },
            move || r.store(true, Ordering::Relaxed),
        )
        .expect("a listener on PostgreSQL");
        // The LISTEN must be in place before the notification is sent.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !resynced.load(Ordering::Relaxed) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let change = Change::Ended {
            key: MeetingKey::room("w", "r"),
            issued_at: 42,
        };
        let mut conn = t.db.get().expect("conn");
        notify(&mut conn, &change).expect("notify");
        let got = rx.recv_timeout(Duration::from_secs(5)).expect("a change");
        assert_eq!(got, change);
        listener.stop();
    }
}
