//! [`SessionRegistry`]: every open session of this process, by registration and by user, so
//! that shutdown reaches each of them at once and a change to a user (moderation, traits)
//! reaches exactly that user's sessions, without any session polling for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use actix::{Addr, Message};

use super::WsSession;
use crate::permissions::Moderation;

/// The process is shutting down: the session answers what is in flight, then closes with
/// 1001 ("going away") so the client reconnects to another instance at once.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct GoingAway;

/// A user's moderation state or traits as stored now; sessions of that user apply it when it
/// is newer than what they hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserState {
    pub id: String,
    pub traits: Vec<String>,
    pub moderation: Moderation,
    /// Bumped by every change to traits or moderation.
    pub version: i64,
}

/// Delivers a [`UserState`] to a session.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct UserChanged(pub Arc<UserState>);

/// The key of one registered session.
pub type SessionKey = u64;

#[derive(Default)]
struct Inner {
    next: SessionKey,
    shutting_down: bool,
    sessions: HashMap<SessionKey, Entry>,
    by_user: HashMap<Arc<str>, Vec<SessionKey>>,
}

struct Entry {
    addr: Addr<WsSession>,
    user: Option<Arc<str>>,
}

/// Shared by every session of the process (see the module doc).
#[derive(Default)]
pub struct SessionRegistry {
    inner: Mutex<Inner>,
    /// Woken when the last session of a shutdown is gone.
    emptied: tokio::sync::Notify,
}

impl SessionRegistry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a starting session; `None` once shutdown began (the session then closes at
    /// once, as if it had been registered just before).
    pub fn register(&self, addr: Addr<WsSession>) -> Option<SessionKey> {
        let mut inner = self.lock();
        if inner.shutting_down {
            return None;
        }
        inner.next += 1;
        let key = inner.next;
        inner.sessions.insert(key, Entry { addr, user: None });
        Some(key)
    }

    /// Records which user a session authenticated as (again after a re-authentication).
    pub fn bind_user(&self, key: SessionKey, user_id: &str) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(entry) = inner.sessions.get_mut(&key) else {
            return;
        };
        if entry.user.as_deref() == Some(user_id) {
            return;
        }
        if let Some(old) = entry.user.take() {
            remove_from_user(&mut inner.by_user, &old, key);
        }
        let user: Arc<str> = match inner.by_user.get_key_value(user_id) {
            Some((k, _)) => k.clone(),
            None => Arc::from(user_id),
        };
        inner.by_user.entry(user.clone()).or_default().push(key);
        entry.user = Some(user);
    }

    /// Forgets a stopped session.
    pub fn unregister(&self, key: SessionKey) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        if let Some(Entry {
            user: Some(user), ..
        }) = inner.sessions.remove(&key)
        {
            remove_from_user(&mut inner.by_user, &user, key);
        }
        if inner.shutting_down && inner.sessions.is_empty() {
            self.emptied.notify_waiters();
        }
    }

    /// After [`SessionRegistry::shut_down`]: waits until every session is gone or `within`
    /// passed; returns how many are left.
    pub async fn wait_until_empty(&self, within: std::time::Duration) -> usize {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let emptied = self.emptied.notified();
            let left = self.len();
            if left == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, emptied).await.is_err() {
                return self.len();
            }
        }
    }

    /// Tells every session to go away and refuses new registrations. Returns how many were
    /// told.
    pub fn shut_down(&self) -> usize {
        let addrs: Vec<Addr<WsSession>> = {
            let mut inner = self.lock();
            inner.shutting_down = true;
            inner.sessions.values().map(|e| e.addr.clone()).collect()
        };
        for addr in &addrs {
            addr.do_send(GoingAway);
        }
        addrs.len()
    }

    /// Delivers each state to the sessions of its user; returns how many sessions were told.
    pub fn deliver(&self, states: &[Arc<UserState>]) -> usize {
        let targets: Vec<(Addr<WsSession>, Arc<UserState>)> = {
            let inner = self.lock();
            states
                .iter()
                .flat_map(|state| {
                    inner
                        .by_user
                        .get(state.id.as_str())
                        .into_iter()
                        .flatten()
                        .filter_map(|key| inner.sessions.get(key))
                        .map(|e| (e.addr.clone(), state.clone()))
                })
                .collect()
        };
        for (addr, state) in &targets {
            addr.do_send(UserChanged(state.clone()));
        }
        targets.len()
    }

    /// Open sessions.
    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Distinct users with an authenticated session.
    pub fn users(&self) -> usize {
        self.lock().by_user.len()
    }
}

fn remove_from_user(by_user: &mut HashMap<Arc<str>, Vec<SessionKey>>, user: &str, key: SessionKey) {
    if let Some(keys) = by_user.get_mut(user) {
        keys.retain(|k| *k != key);
        if keys.is_empty() {
            by_user.remove(user);
        }
    }
}
