//! BigBlueButton API client: checksums, typed replies, and the [`BbbApi`] trait the coordinator
//! talks to, so actor tests can script BBB's answers without a network.

mod types;
pub use types::*;
