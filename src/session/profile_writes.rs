//! The `user.update` writes of one session: one database write at a time, in the order the
//! updates arrived. Each update replaces the whole profile, so while a write is under way only
//! the newest waiting profile needs writing; the updates it supersedes are answered with it.
//! However many updates a client pipelines, it has at most one write on the shared pool, and a
//! bounded number of answers waiting.

use serde_json::Value;

use crate::user::{Profile, ProfileDocument};

/// A profile to write, whose, and the request ids of every update it answers.
#[derive(Debug)]
pub struct ProfileWrite {
    /// The user the updates were sent as (a session may log in again as someone else).
    pub user_id: String,
    pub document: ProfileDocument,
    pub profile: Profile,
    pub ids: Vec<Option<Value>>,
}

/// What to do with a submitted update.
#[derive(Debug)]
pub enum Submitted {
    /// Nothing was being written: write this now.
    Start(ProfileWrite),
    /// A write is under way; this one follows it (answered when its profile is written).
    Queued,
    /// Too many updates are waiting already, or the waiting one is another user's (the
    /// session logged in again meanwhile): refuse this one.
    Refused,
}

/// The session's write queue.
#[derive(Debug)]
pub struct ProfileWrites {
    writing: bool,
    waiting: Option<ProfileWrite>,
    max_waiting: usize,
}

impl ProfileWrites {
    /// At most `max_waiting` updates wait behind the write under way.
    pub fn new(max_waiting: usize) -> Self {
        ProfileWrites {
            writing: false,
            waiting: None,
            max_waiting: max_waiting.max(1),
        }
    }

    /// An update of `user_id`'s profile to `document` with request id `id`.
    pub fn submit(
        &mut self,
        user_id: &str,
        document: ProfileDocument,
        profile: Profile,
        id: Option<Value>,
    ) -> Submitted {
        if !self.writing {
            self.writing = true;
            return Submitted::Start(ProfileWrite {
                user_id: user_id.to_owned(),
                document,
                profile,
                ids: vec![id],
            });
        }
        let mut ids = match self.waiting.take() {
            Some(w) if w.ids.len() >= self.max_waiting || w.user_id != user_id => {
                self.waiting = Some(w);
                return Submitted::Refused;
            }
            Some(w) => w.ids,
            None => Vec::new(),
        };
        ids.push(id);
        self.waiting = Some(ProfileWrite {
            user_id: user_id.to_owned(),
            document,
            profile,
            ids,
        });
        Submitted::Queued
    }

    /// The write under way finished (stored or failed); returns the next one to start.
    pub fn finished(&mut self) -> Option<ProfileWrite> {
        let next = self.waiting.take();
        self.writing = next.is_some();
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(name: &str) -> (ProfileDocument, Profile) {
        ProfileDocument::from_client(&json!({ "display_name": name })).unwrap()
    }

    fn submit(w: &mut ProfileWrites, name: &str, id: i64) -> Submitted {
        submit_as(w, "u1", name, id)
    }

    fn submit_as(w: &mut ProfileWrites, user: &str, name: &str, id: i64) -> Submitted {
        let (d, p) = doc(name);
        w.submit(user, d, p, Some(json!(id)))
    }

    #[test]
    fn one_write_at_a_time_and_only_the_newest_waiting_profile() {
        let mut w = ProfileWrites::new(3);
        let Submitted::Start(first) = submit(&mut w, "a", 1) else {
            panic!("the first update starts at once")
        };
        assert_eq!(first.ids, vec![Some(json!(1))]);
        assert!(matches!(submit(&mut w, "b", 2), Submitted::Queued));
        assert!(matches!(submit(&mut w, "c", 3), Submitted::Queued));
        assert!(matches!(submit(&mut w, "d", 4), Submitted::Queued));
        assert!(matches!(submit(&mut w, "e", 5), Submitted::Refused));
        let next = w.finished().expect("the waiting profile");
        assert_eq!(next.profile.usable_name(), Some("d"));
        assert_eq!(
            next.ids,
            vec![Some(json!(2)), Some(json!(3)), Some(json!(4))]
        );
        // While that one is written, new updates queue again.
        assert!(matches!(submit(&mut w, "f", 6), Submitted::Queued));
        let last = w.finished().expect("f");
        assert_eq!(last.ids, vec![Some(json!(6))]);
        assert!(w.finished().is_none());
        assert!(matches!(submit(&mut w, "g", 7), Submitted::Start(_)));
    }

    #[test]
    fn another_users_update_never_joins_a_waiting_one() {
        let mut w = ProfileWrites::new(8);
        assert!(matches!(
            submit_as(&mut w, "u1", "a", 1),
            Submitted::Start(_)
        ));
        // Logged in again as u2 while u1's write runs: u2's update waits on its own...
        assert!(matches!(submit_as(&mut w, "u2", "b", 2), Submitted::Queued));
        // ...and u1's late update cannot ride on it.
        assert!(matches!(
            submit_as(&mut w, "u1", "c", 3),
            Submitted::Refused
        ));
        let next = w.finished().expect("u2's");
        assert_eq!((next.user_id.as_str(), next.ids.len()), ("u2", 1));
    }
}
