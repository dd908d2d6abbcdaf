//! bbb-gateway: turns eventyay/venueless room and call ids into signed BigBlueButton join URLs,
//! spreading meetings over a BBB fleet by live load.

pub mod auth;
pub mod bbb;
pub mod config;
pub mod db;
pub mod metrics;
pub mod permissions;
pub mod protocol;
pub mod sim;
pub mod world;
pub mod cli;
pub mod coordinator;
pub mod demo;
pub mod http;
pub mod session;
pub mod startup;
pub mod state;
pub mod user;
