//! bbb-api: the BigBlueButton API as a client sees it. Checksums, typed replies, XML parsing,
//! signed join URLs, an awc-based client, and the [`BbbApi`] trait that lets callers script
//! BBB's answers without a network. Nothing here knows about the gateway.

pub mod checksum;
mod client;
pub mod join;
mod types;
pub mod xml;

pub use checksum::{build_query, checksum, normalize_base_url, signed_query, verify};
pub use client::{create_params, presentation_body, AwcBbbClient, BbbClientConfig};
pub use join::{join_url, JoinPrefix};
pub use types::*;
