//! bbb-gateway: turns eventyay/venueless room and call ids into signed BigBlueButton join URLs,
//! spreading meetings over a BBB fleet by live load.

pub mod admin;
pub mod auth;
pub mod bbb;
pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod coordinator;
pub mod db;
pub mod demo;
pub mod end_callback;
pub mod http;
pub mod ids;
pub mod join;
pub mod metrics;
pub mod permissions;
pub mod protocol;
pub mod session;
pub mod sim;
pub mod startup;
pub mod state;
pub mod user;
pub mod user_refresh;
pub mod world;
