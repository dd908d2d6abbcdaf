//! Integration tests: the real gateway on port 0, driven only through its public interface.
//! One test binary keeps linking cheap.

mod abuse;
mod admin;
mod bad_input;
mod bbb_join;
mod bbb_sim;
mod browser;
mod capacity;
mod cdp;
mod cli;
mod dashboard;
#[cfg(feature = "demo")]
mod demo;
mod faults;
mod fleet;
mod frontend_contract;
mod helpers;
mod layering;
mod liveness;
mod moderation;
mod multi_instance;
mod process;
mod raw_ws;
mod room_move;
mod scale_out;
mod secrets;
mod signals;
mod ws_protocol;
