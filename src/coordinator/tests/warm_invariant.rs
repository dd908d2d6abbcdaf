//! The rule sessions rely on, checked over random histories run through the actor: after any
//! sequence of joins, polls, BBB ending meetings (with and without end callbacks), other
//! parties re-creating them, server faults, state changes, panics, secret rotations and time
//! passing, every entry of the published table a session could answer from is exactly what the
//! coordinator's rule answers, and no change was left unpublished. With end callbacks, every
//! join URL handed out also names a meeting that runs on that server with that createTime.

use std::time::Duration;

use proptest::prelude::*;

use super::fake::down;
use super::*;
use crate::coordinator::{EndCallback, PanicServer, ReloadServers};
use crate::db::servers::ServerState;

const SERVERS: usize = 3;
const ROOMS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Join {
        room: usize,
    },
    Poll,
    /// BBB ends the meeting and calls its end callback.
    EndWithCallback {
        room: usize,
    },
    /// BBB ends the meeting and the callback never arrives.
    EndSilently {
        room: usize,
    },
    /// Someone else re-created it on BBB (a new createTime).
    Recreate {
        room: usize,
    },
    Fault {
        server: usize,
        on: bool,
    },
    SetState {
        server: usize,
        state: u8,
    },
    Panic {
        server: usize,
    },
    RotateSecret {
        server: usize,
    },
    /// Time passes: confirmations age by this many seconds (the TTL is 600 s).
    Age {
        secs: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let room = 0..ROOMS;
    let server = 1..=SERVERS;
    prop_oneof![
        4 => room.clone().prop_map(|room| Op::Join { room }),
        2 => Just(Op::Poll),
        1 => room.clone().prop_map(|room| Op::EndWithCallback { room }),
        1 => room.clone().prop_map(|room| Op::EndSilently { room }),
        1 => room.prop_map(|room| Op::Recreate { room }),
        1 => (server.clone(), any::<bool>()).prop_map(|(server, on)| Op::Fault { server, on }),
        1 => (server.clone(), 0u8..3).prop_map(|(server, state)| Op::SetState { server, state }),
        1 => server.clone().prop_map(|server| Op::Panic { server }),
        1 => server.prop_map(|server| Op::RotateSecret { server }),
        1 => prop_oneof![Just(200u64), Just(400), Just(700)].prop_map(|secs| Op::Age { secs }),
    ]
}

fn room(n: usize) -> String {
    format!("room{n}")
}

fn state(n: u8) -> ServerState {
    match n {
        0 => ServerState::Enabled,
        1 => ServerState::Cordoned,
        _ => ServerState::Disabled,
    }
}

/// Whether a join URL names a meeting the fake runs there with that createTime.
fn followable(h: &Harness, url: &JoinUrl) -> bool {
    let (Some(mid), Some(ct)) = (url.get("meetingID"), url.get("createTime")) else {
        return false;
    };
    h.fake.with(&url.base, |s| {
        s.fault.is_none()
            && s.meetings
                .get(mid)
                .is_some_and(|m| m.create_time.to_string() == ct)
    })
}

struct Run {
    h: Harness,
    /// BBB ended meetings without a callback: URLs may point at them until the TTL.
    silent_ends: bool,
    secret_gen: u32,
}

impl Run {
    async fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let h = &self.h;
        match *op {
            Op::Join { room: r } => {
                let answer = h
                    .room_url(&user("alice", &["p"], Some("Alice")), &room(r))
                    .await;
                if let Ok(v) = answer {
                    let url = JoinUrl::parse(&v);
                    if !self.silent_ends {
                        prop_assert!(
                            followable(h, &url),
                            "a URL for a meeting that does not run: {url:?}"
                        );
                    }
                }
            }
            Op::Poll => h.poll().await,
            Op::EndWithCallback { room: r } => {
                let Some(mid) = self.meeting_id(r) else {
                    return Ok(());
                };
                for n in 1..=SERVERS {
                    if let Some(token) = h.fake.end_with_callback(&url_of(n), &mid) {
                        let cb = callback_key().verify(&token).expect("our token");
                        h.addr
                            .send(EndCallback {
                                meeting_id: cb.meeting_id,
                                issued_at: cb.issued_at,
                            })
                            .await
                            .expect("coordinator");
                    }
                }
            }
            Op::EndSilently { room: r } => {
                let Some(mid) = self.meeting_id(r) else {
                    return Ok(());
                };
                for n in 1..=SERVERS {
                    h.fake.with(&url_of(n), |s| s.meetings.remove(&mid));
                }
                self.silent_ends = true;
            }
            Op::Recreate { room: r } => {
                let Some(mid) = self.meeting_id(r) else {
                    return Ok(());
                };
                for n in 1..=SERVERS {
                    h.fake.with(&url_of(n), |s| {
                        if let Some(m) = s.meetings.get_mut(&mid) {
                            m.create_time += 1000;
                        }
                    });
                }
                // Without a callback for the old instance: like a silent end.
                self.silent_ends = true;
            }
            Op::Fault { server, on } => {
                h.fake.set_fault(&url_of(server), on.then(down));
                // A server that died says nothing: URLs may point at it until a contact fails
                // there or the TTL passes.
                self.silent_ends |= on;
            }
            Op::SetState { server, state: s } => h.set_state(h.ids[server - 1], state(s)).await,
            Op::Panic { server } => {
                h.addr
                    .send(PanicServer {
                        id: h.ids[server - 1],
                    })
                    .await
                    .expect("coordinator")
                    .expect("known server");
            }
            Op::RotateSecret { server } => {
                self.secret_gen += 1;
                let id = h.ids[server - 1].get();
                let sql = format!(
                    "UPDATE bbb_servers SET secret = 'rotated-{}' WHERE id = {id}",
                    self.secret_gen
                );
                let mut conn = h.db.get().expect("conn");
                crate::with_conn!(&mut conn, |c| {
                    diesel::connection::SimpleConnection::batch_execute(c, &sql)
                })
                .expect("rotate");
                drop(conn);
                h.addr
                    .send(ReloadServers)
                    .await
                    .expect("coordinator")
                    .expect("reload");
            }
            Op::Age { secs } => {
                h.age(Duration::from_secs(secs)).await;
                if secs >= 600 {
                    // Past the TTL nothing old is trusted any more.
                    self.silent_ends = false;
                }
            }
        }
        h.settle().await;
        let violations = h.published_violations().await;
        prop_assert!(violations.is_empty(), "after {op:?}: {violations:?}");
        Ok(())
    }

    fn meeting_id(&self, r: usize) -> Option<String> {
        let mut conn = self.h.db.get().ok()?;
        crate::db::meetings::get(&mut conn, &MeetingKey::room("w", &room(r)))
            .ok()?
            .map(|row| row.meeting_id)
    }
}

fn run_history(ops: &[Op]) -> Result<(), TestCaseError> {
    actix::System::new().block_on(async {
        let mut run = Run {
            h: Harness::with(SERVERS, settings(), ROOMS).await,
            silent_ends: false,
            secret_gen: 0,
        };
        for op in ops {
            run.apply(op).await?;
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn nothing_stale_is_ever_published(ops in proptest::collection::vec(op(), 1..40)) {
        run_history(&ops)?;
    }
}

#[test]
fn the_histories_do_publish_and_check() {
    // Guards the property above against passing vacuously: a join publishes, and a URL for a
    // meeting BBB ended silently is caught by the followable check.
    actix::System::new().block_on(async {
        let h = Harness::with(SERVERS, settings(), ROOMS).await;
        let url = h.join(&room(0)).await;
        assert!(h
            .joins
            .get(MeetingKey::room("w", &room(0)).as_str())
            .is_some());
        assert!(followable(&h, &url));
        let mid = url.get("meetingID").unwrap().to_string();
        h.fake.with(&url.base, |s| s.meetings.remove(&mid));
        let stale = h.join(&room(0)).await;
        assert!(
            !followable(&h, &stale),
            "within the TTL, a silent end is not seen"
        );
    });
}
