//! bbb-gateway: turns eventyay/venueless room and call ids into signed BigBlueButton join URLs,
//! spreading meetings over a BBB fleet by live load.

pub(crate) mod admin;
pub mod auth;
pub mod bbb;
pub mod cli;
pub mod client;
pub mod config;
pub mod coordinator;
pub mod db;
#[cfg(feature = "demo")]
pub(crate) mod demo;
pub mod end_callback;
pub(crate) mod http;
pub mod ids;
pub mod in_flight;
pub mod join;
pub mod limits;
pub(crate) mod metrics;
pub mod moderation;
pub mod permissions;
pub mod profile;
pub mod protocol;
pub mod registry;
pub(crate) mod session;
pub mod startup;
pub mod state;
pub mod user;
pub mod user_refresh;
pub mod world;
