//! The gateway's BBB vocabulary, re-exported from the bbb-api crate (checksums, typed replies,
//! XML, join URLs, the awc client and the [`BbbApi`] trait), so gateway code says
//! `crate::bbb::X` whichever crate the item lives in.

pub use bbb_api::*;
