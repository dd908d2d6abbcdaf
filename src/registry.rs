//! [`SessionRegistry`]: every open session of this process, by registration and by user, so
//! that shutdown reaches each of them at once and a change to a user (moderation, traits)
//! reaches exactly that user's sessions, without any session polling for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use actix::{Message, Recipient};

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

/// How the registry reaches a session: its actor address (a stand-in in tests).
pub trait SessionHandle: Clone {
    fn go_away(&self);
    fn user_changed(&self, state: Arc<UserState>);
}

/// A session actor as the registry reaches it: the two messages it sends, whatever the actor.
#[derive(Clone)]
pub struct SessionRecipients {
    going_away: Recipient<GoingAway>,
    user_changed: Recipient<UserChanged>,
}

impl SessionRecipients {
    pub fn new(going_away: Recipient<GoingAway>, user_changed: Recipient<UserChanged>) -> Self {
        SessionRecipients {
            going_away,
            user_changed,
        }
    }
}

impl SessionHandle for SessionRecipients {
    fn go_away(&self) {
        self.going_away.do_send(GoingAway);
    }

    fn user_changed(&self, state: Arc<UserState>) {
        self.user_changed.do_send(UserChanged(state));
    }
}

struct Inner<H> {
    next: SessionKey,
    shutting_down: bool,
    sessions: HashMap<SessionKey, Entry<H>>,
    by_user: HashMap<Arc<str>, Vec<SessionKey>>,
}

struct Entry<H> {
    handle: H,
    user: Option<Arc<str>>,
}

/// Shared by every session of the process (see the module doc).
pub struct SessionRegistry<H = SessionRecipients> {
    inner: Mutex<Inner<H>>,
    /// Woken when the last session of a shutdown is gone.
    emptied: tokio::sync::Notify,
}

impl<H> Default for SessionRegistry<H> {
    fn default() -> Self {
        SessionRegistry {
            inner: Mutex::new(Inner {
                next: 0,
                shutting_down: false,
                sessions: HashMap::new(),
                by_user: HashMap::new(),
            }),
            emptied: tokio::sync::Notify::new(),
        }
    }
}

impl<H: SessionHandle> SessionRegistry<H> {
    fn lock(&self) -> MutexGuard<'_, Inner<H>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a starting session; `None` once shutdown began (the session then closes at
    /// once, as if it had been registered just before).
    pub fn register(&self, handle: H) -> Option<SessionKey> {
        let mut inner = self.lock();
        if inner.shutting_down {
            return None;
        }
        inner.next += 1;
        let key = inner.next;
        inner.sessions.insert(key, Entry { handle, user: None });
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
        crate::in_flight::wait_for_zero(&self.emptied, || self.len(), within).await
    }

    /// Whether [`SessionRegistry::shut_down`] was called: the process is going away.
    pub fn is_shutting_down(&self) -> bool {
        self.lock().shutting_down
    }

    /// Tells every session to go away and refuses new registrations. Returns how many were
    /// told.
    pub fn shut_down(&self) -> usize {
        let handles: Vec<H> = {
            let mut inner = self.lock();
            inner.shutting_down = true;
            inner.sessions.values().map(|e| e.handle.clone()).collect()
        };
        for handle in &handles {
            handle.go_away();
        }
        handles.len()
    }

    /// Delivers each state to the sessions of its user; returns how many sessions were told.
    pub fn deliver(&self, states: &[Arc<UserState>]) -> usize {
        let targets: Vec<(H, Arc<UserState>)> = {
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
                        .map(|e| (e.handle.clone(), state.clone()))
                })
                .collect()
        };
        for (handle, state) in &targets {
            handle.user_changed(state.clone());
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

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::time::Duration;

    use super::*;

    /// Records what reached one session.
    #[derive(Clone, Default)]
    struct Fake(Rc<RefCell<Vec<String>>>);

    impl SessionHandle for Fake {
        fn go_away(&self) {
            self.0.borrow_mut().push("go away".into());
        }
        fn user_changed(&self, state: Arc<UserState>) {
            self.0
                .borrow_mut()
                .push(format!("{} v{}", state.id, state.version));
        }
    }

    fn state(id: &str, version: i64) -> Arc<UserState> {
        Arc::new(UserState {
            id: id.into(),
            traits: vec![],
            moderation: Moderation::Banned,
            version,
        })
    }

    #[test]
    fn changes_reach_exactly_the_sessions_of_their_user() {
        let r = SessionRegistry::<Fake>::default();
        let (a1, a2, b, anon) = (
            Fake::default(),
            Fake::default(),
            Fake::default(),
            Fake::default(),
        );
        let k1 = r.register(a1.clone()).unwrap();
        let k2 = r.register(a2.clone()).unwrap();
        let kb = r.register(b.clone()).unwrap();
        r.register(anon.clone()).unwrap();
        r.bind_user(k1, "a");
        r.bind_user(k2, "a");
        r.bind_user(kb, "b");
        assert_eq!((r.len(), r.users()), (4, 2));
        assert_eq!(r.deliver(&[state("a", 1), state("nobody", 1)]), 2);
        assert_eq!(*a1.0.borrow(), ["a v1"]);
        assert_eq!(*a2.0.borrow(), ["a v1"]);
        assert!(b.0.borrow().is_empty() && anon.0.borrow().is_empty());

        // Re-authenticating as another user moves the session; stopped sessions are gone,
        // and a user without sessions is forgotten.
        r.bind_user(k2, "b");
        r.unregister(k1);
        assert_eq!(r.deliver(&[state("a", 2), state("b", 2)]), 2);
        assert_eq!(*a2.0.borrow(), ["a v1", "b v2"]);
        assert_eq!(*b.0.borrow(), ["b v2"]);
        r.unregister(k2);
        r.unregister(kb);
        assert_eq!((r.len(), r.users()), (1, 0));
    }

    #[tokio::test]
    async fn shutdown_reaches_everyone_and_refuses_newcomers() {
        let r = SessionRegistry::<Fake>::default();
        let (a, b) = (Fake::default(), Fake::default());
        let ka = r.register(a.clone()).unwrap();
        let kb = r.register(b.clone()).unwrap();
        r.bind_user(kb, "b");
        assert_eq!(r.shut_down(), 2);
        assert_eq!(*a.0.borrow(), ["go away"]);
        assert_eq!(*b.0.borrow(), ["go away"]);
        assert!(r.register(Fake::default()).is_none());
        assert_eq!(r.wait_until_empty(Duration::from_millis(10)).await, 2);
        r.unregister(ka);
        r.unregister(kb);
        assert_eq!(r.wait_until_empty(Duration::from_millis(10)).await, 0);
    }
}
