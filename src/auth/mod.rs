//! Authentication of WebSocket users by venueless-style JWTs signed with a world's secrets.

mod jwt;

pub use jwt::{mint_token, verify_token, AuthError, TokenClaims, MAX_TOKEN_BYTES, MAX_UID_LEN};
