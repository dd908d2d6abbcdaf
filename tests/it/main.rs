//! Integration tests: the real gateway on port 0, driven only through its public interface.
//! One test binary keeps linking cheap.

mod admin;
mod bad_input;
mod bbb_join;
mod bbb_sim;
mod cli;
#[cfg(feature = "demo")]
mod demo;
mod faults;
mod fleet;
mod helpers;
mod multi_instance;
mod status_page;
mod ws_protocol;
