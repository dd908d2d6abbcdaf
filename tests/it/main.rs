//! Integration tests: the real gateway on port 0, driven only through its public interface.
//! One test binary keeps linking cheap.

mod admin;
mod bbb_join;
mod bbb_sim;
mod fleet;
mod helpers;
mod ws_protocol;
