//! Work the coordinator starts without anyone waiting for its answer (ends on servers a
//! meeting left, database writes of confirmed createTimes, version checks, status stores).
//! It is counted, so tests and shutdown can wait until it has finished ([`Settle`]) instead
//! of sleeping.

use actix::prelude::*;
use tokio::sync::oneshot;

use super::{BbbCoordinator, LocalActFut};

/// Background work in flight and who waits for it.
#[derive(Debug, Default)]
pub(super) struct Background {
    running: usize,
    waiters: Vec<oneshot::Sender<()>>,
}

/// Answers once no background work is in flight (what was started before and meanwhile).
#[derive(Debug, Clone, Copy)]
pub struct Settle;

impl Message for Settle {
    type Result = ();
}

impl BbbCoordinator {
    /// Runs `work` on the actor's context, counted as background work.
    pub(super) fn spawn_background(&mut self, ctx: &mut Context<Self>, work: LocalActFut<()>) {
        self.background.running += 1;
        ctx.spawn(work.map(|(), act, _ctx| {
            act.background.running = act.background.running.saturating_sub(1);
            if act.background.running == 0 {
                for waiter in act.background.waiters.drain(..) {
                    let _ = waiter.send(());
                }
            }
        }));
    }
}

impl Handler<Settle> for BbbCoordinator {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _msg: Settle, _ctx: &mut Self::Context) -> Self::Result {
        if self.background.running == 0 {
            return Box::pin(async {});
        }
        let (tx, rx) = oneshot::channel();
        self.background.waiters.push(tx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}
