//! BigBlueButton API client: checksums, typed replies, and the [`BbbApi`] trait the coordinator
//! talks to, so actor tests can script BBB's answers without a network.

pub mod checksum;
mod client;
pub mod join;
mod types;
pub mod xml;

pub use checksum::{build_query, checksum, normalize_base_url, signed_query, verify};
pub use client::{create_params, presentation_body, AwcBbbClient, BbbClientConfig};
pub use join::{join_url, JoinPrefix};
pub use types::*;
