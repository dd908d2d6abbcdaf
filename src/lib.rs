//! bbb-gateway: turns eventyay/venueless room and call ids into signed BigBlueButton join URLs,
//! spreading meetings over a BBB fleet by live load.

pub mod bbb;
pub mod config;
pub mod db;
pub mod sim;
