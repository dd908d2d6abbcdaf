//! Abuse controls shared by every connection: token buckets, the client address a limit is
//! keyed by (behind trusted reverse proxies too), and the per-address connection and
//! `authenticate` limits. Per-session limits live in [`crate::session::limits`].

pub mod client_ip;
pub mod per_ip;
pub mod token_bucket;

pub use client_ip::{client_ip, IpKey, IpNet};
pub use per_ip::{ConnectionSlot, IpLimits};
pub use token_bucket::TokenBucket;
