//! The rule sessions rely on, checked over random histories: after any sequence of changes to
//! the meeting table and the fleet, every published join target is exactly what the
//! coordinator's own fast path would answer for that meeting. Nothing stale is ever published.

use std::sync::Arc;
use std::time::Instant;

use proptest::prelude::*;

use crate::bbb::{MeetingInfo, Secret};
use crate::coordinator::fleet::{Fleet, PollLoad};
use crate::coordinator::meetings::{MeetingEntry, MeetingTable};
use crate::coordinator::WarmJoins;
use crate::db::servers::{ServerRow, ServerState};

const SERVERS: i32 = 3;
const KEYS: usize = 4;

#[derive(Debug, Clone)]
enum Op {
    /// A fresh entry for key `k` (new ids), placed on `server` or unplaced.
    Insert {
        k: usize,
        server: Option<i32>,
    },
    /// A change to one field through `get_mut`.
    Move {
        k: usize,
        server: Option<i32>,
    },
    SetLive {
        k: usize,
        live: bool,
    },
    SetCreateTime {
        k: usize,
        t: i64,
    },
    /// A touch through `get_mut` that changes nothing a URL depends on.
    Touch {
        k: usize,
    },
    /// A poll of `server` listing the meetings of the keys in `mask`, with a createTime bump.
    Poll {
        server: i32,
        mask: u8,
        bump: bool,
    },
    Detach {
        server: i32,
    },
    PollFailed {
        server: i32,
    },
    PollOk {
        server: i32,
    },
    SetState {
        server: i32,
        state: u8,
    },
    /// The registry as read from the database: `secret_gen` rotates secrets, `drop_server`
    /// leaves one out.
    Rows {
        secret_gen: u8,
        drop_server: Option<i32>,
    },
    /// A join asks the fast path (and so publishes).
    Join {
        k: usize,
    },
}

fn server() -> impl Strategy<Value = i32> {
    1..=SERVERS
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0..KEYS;
    prop_oneof![
        (k.clone(), proptest::option::of(server()))
            .prop_map(|(k, server)| Op::Insert { k, server }),
        (k.clone(), proptest::option::of(server())).prop_map(|(k, server)| Op::Move { k, server }),
        (k.clone(), any::<bool>()).prop_map(|(k, live)| Op::SetLive { k, live }),
        (k.clone(), 1i64..4).prop_map(|(k, t)| Op::SetCreateTime { k, t }),
        k.clone().prop_map(|k| Op::Touch { k }),
        (server(), any::<u8>(), any::<bool>()).prop_map(|(server, mask, bump)| Op::Poll {
            server,
            mask,
            bump
        }),
        server().prop_map(|server| Op::Detach { server }),
        server().prop_map(|server| Op::PollFailed { server }),
        server().prop_map(|server| Op::PollOk { server }),
        (server(), 0u8..3).prop_map(|(server, state)| Op::SetState { server, state }),
        (0u8..3, proptest::option::of(server())).prop_map(|(secret_gen, drop_server)| Op::Rows {
            secret_gen,
            drop_server
        }),
        k.clone().prop_map(|k| Op::Join { k }),
        k.prop_map(|k| Op::Join { k }),
    ]
}

fn key(k: usize) -> String {
    format!("room:w:r{k}")
}

fn row(id: i32, secret_gen: u8) -> ServerRow {
    ServerRow {
        secret: Secret::new(format!("secret-{id}-{secret_gen}")),
        ..crate::db::test_support::server_row(id)
    }
}

fn state(n: u8) -> ServerState {
    match n {
        0 => ServerState::Enabled,
        1 => ServerState::Cordoned,
        _ => ServerState::Disabled,
    }
}

struct World {
    warm: Arc<WarmJoins>,
    fleet: Fleet,
    table: MeetingTable,
}

impl World {
    fn new() -> World {
        let warm = Arc::new(WarmJoins::default());
        let mut fleet = Fleet::publishing_to(warm.clone());
        fleet.apply_rows((1..=SERVERS).map(|id| row(id, 0)).collect());
        World {
            table: MeetingTable::publishing_to(warm.clone()),
            warm,
            fleet,
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Insert { k, server } => {
                let mut e = MeetingEntry::new(&key(k), "w", Some("r"), None);
                e.server = server;
                e.live = server.is_some();
                e.create_time = Some(1);
                self.table.insert(e);
            }
            Op::Move { k, server } => {
                if let Some(mut e) = self.table.get_mut(&key(k)) {
                    e.server = server;
                }
            }
            Op::SetLive { k, live } => {
                if let Some(mut e) = self.table.get_mut(&key(k)) {
                    e.live = live;
                }
            }
            Op::SetCreateTime { k, t } => {
                if let Some(mut e) = self.table.get_mut(&key(k)) {
                    e.create_time = Some(t);
                }
            }
            Op::Touch { k } => {
                if let Some(mut e) = self.table.get_mut(&key(k)) {
                    e.confirmed_at = Some(Instant::now());
                }
            }
            Op::Poll { server, mask, bump } => {
                let listed: Vec<MeetingInfo> = (0..KEYS)
                    .filter(|k| mask & (1 << k) != 0)
                    .filter_map(|k| self.table.get(&key(k)))
                    .map(|e| MeetingInfo {
                        meeting_id: e.meeting_id.clone(),
                        create_time: e.create_time.unwrap_or(1) + i64::from(bump),
                        ..Default::default()
                    })
                    .collect();
                self.table.apply_poll(server, Instant::now(), &listed);
                self.fleet
                    .poll_succeeded(server, Instant::now(), PollLoad::default(), 0, 1);
            }
            Op::Detach { server } => {
                self.table.detach_server(server);
            }
            Op::PollFailed { server } => {
                self.fleet.poll_failed(server, "down".into(), 0, 1);
            }
            Op::PollOk { server } => {
                self.fleet
                    .poll_succeeded(server, Instant::now(), PollLoad::default(), 0, 1);
            }
            Op::SetState { server, state: s } => {
                if let Some(mut live) = self.fleet.get_mut(server) {
                    live.row.state = state(s);
                }
            }
            Op::Rows {
                secret_gen,
                drop_server,
            } => {
                let rows = (1..=SERVERS)
                    .filter(|id| Some(*id) != drop_server)
                    .map(|id| {
                        let mut r = row(id, secret_gen);
                        r.state = self
                            .fleet
                            .get(id)
                            .map_or(ServerState::Enabled, |s| s.state());
                        r
                    })
                    .collect();
                self.fleet.apply_rows(rows);
            }
            Op::Join { k } => {
                self.table.known_running(&key(k), &self.fleet);
            }
        }
    }

    /// Every published target is what the rule answers now.
    fn check(&self) -> Result<(), TestCaseError> {
        for k in 0..KEYS {
            let Some(published) = self.warm.get(&key(k)) else {
                continue;
            };
            let rule = self.table.running_target(&key(k), &self.fleet);
            prop_assert_eq!(
                Some(&published.target),
                rule.as_ref(),
                "stale publication of {}",
                key(k)
            );
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn nothing_stale_is_ever_published(ops in proptest::collection::vec(op(), 1..60)) {
        let mut w = World::new();
        for op in &ops {
            w.apply(op);
            w.check()?;
        }
    }
}

#[test]
fn the_histories_do_publish() {
    // Guards the property above against passing vacuously.
    let mut w = World::new();
    w.apply(&Op::Insert {
        k: 0,
        server: Some(1),
    });
    w.apply(&Op::Join { k: 0 });
    assert!(w.warm.get(&key(0)).is_some());
}
