//! BBB says a meeting ended: its end callback reached this instance ([`EndCallback`], from the
//! HTTP route), or another instance's did (a change notification, see [`super::remote`]). The meeting is then no longer answered from memory; the next join creates
//! it again. A callback about an older instance of the meeting than the one known changes
//! nothing.

use actix::prelude::*;

use crate::db::DbError;
use crate::ids::MeetingKey;

use super::BbbCoordinator;

/// A verified end-callback token arrived: the instance of `meeting_id` started by the create
/// whose token was issued at `issued_at` ended. Answers whether it ended a known meeting
/// (otherwise the route answers 404).
#[derive(Debug, Clone)]
pub struct EndCallback {
    pub meeting_id: String,
    pub issued_at: i64,
}

impl Message for EndCallback {
    type Result = bool;
}

impl BbbCoordinator {
    /// Ends `key`'s meeting in memory unless memory knows a newer instance. Returns whether it
    /// was ended (or already was).
    pub(super) fn apply_end(&mut self, key: &MeetingKey, issued_at: i64) -> bool {
        let ended = self
            .meetings
            .update(key, |e| {
                if e.callback_is_stale(issued_at) {
                    return false;
                }
                e.ended(Some(issued_at));
                true
            })
            .unwrap_or(false);
        self.publish();
        ended
    }
}

impl Handler<EndCallback> for BbbCoordinator {
    type Result = ResponseActFuture<Self, bool>;

    /// Memory ends the meeting at once when it knows it (joins arriving while the database is
    /// written must not get its URL), unless memory knows a newer instance. The database then
    /// records it for every instance (a newer instance stored there wins) and tells the others;
    /// it also decides for meetings memory does not know. When the database is unreachable,
    /// memory's decision stands.
    fn handle(&mut self, msg: EndCallback, _ctx: &mut Self::Context) -> Self::Result {
        let EndCallback {
            meeting_id,
            issued_at,
        } = msg;
        let known = self
            .meetings
            .by_meeting_id(&meeting_id)
            .map(|e| e.key.clone());
        let ended_here = known.as_ref().map(|key| self.apply_end(key, issued_at));
        let db = self.db.clone();
        let id = meeting_id;
        let stored = async move {
            db.run(move |c| -> Result<Option<MeetingKey>, DbError> {
                let key = crate::db::meetings::mark_ended(c, &id, issued_at)?;
                if let Some(key) = &key {
                    let change = crate::db::changes::Change::Ended {
                        key: key.clone(),
                        issued_at,
                    };
                    crate::db::changes::notify(c, &change)?;
                }
                Ok(key)
            })
            .await
        };
        Box::pin(stored.into_actor(self).map(move |res, act, _ctx| {
            let ended = match (res, ended_here) {
                (_, Some(ended)) => ended,
                (Ok(Some(key)), None) => act.apply_end(&key, issued_at),
                (Ok(None), None) => false,
                (Err(e), None) => {
                    log::warn!("cannot store an end callback of an unknown meeting: {e}");
                    false
                }
            };
            if ended {
                act.stats.end_callbacks += 1;
                log::info!("BBB ended a meeting (end callback); the next join creates it again");
            } else {
                act.stats.end_callbacks_refused += 1;
            }
            ended
        }))
    }
}
