//! End-callback tokens: every `create` names a URL BBB calls when the meeting ends
//! (`meta_endCallbackUrl`). The token in that URL is the meeting id, the time the token was
//! issued and a MAC over both under a key kept in the database, so every gateway instance
//! accepts the callbacks of the others and nobody else can end a meeting in our memory.
//!
//! The issue time orders a meeting's BBB instances: BBB keeps the callback URL of the create
//! that started an instance (later `create`s of a running meeting change nothing), so a
//! callback whose token is older than the current instance's is stale.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::db::{DbConn, DbError};

/// Name of the key in `gateway_secrets`.
const KEY_NAME: &str = "end_callback_mac_key";
/// MAC bytes kept in a token (128 bits: unguessable, and short URLs).
const MAC_BYTES: usize = 16;

type HmacSha256 = Hmac<Sha256>;

/// The shared MAC key. `Debug` never prints it.
#[derive(Clone)]
pub struct EndCallbackKey([u8; 32]);

impl std::fmt::Debug for EndCallbackKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EndCallbackKey(***)")
    }
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndCallback {
    pub meeting_id: String,
    /// When the token was issued (ms since the epoch, the gateway's clock).
    pub issued_at: i64,
}

impl EndCallbackKey {
    /// The database's key, created by the first instance that asks.
    pub fn load(conn: &mut DbConn) -> Result<Self, DbError> {
        let stored = crate::db::secrets::get_or_create(conn, KEY_NAME, || {
            let mut key = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut key);
            hex::encode(key)
        })?;
        let bytes = hex::decode(stored.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| DbError::Invalid(format!("the stored {KEY_NAME} is malformed")))?;
        Ok(EndCallbackKey(bytes))
    }

    /// A key from raw bytes (tests).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        EndCallbackKey(bytes)
    }

    fn mac(&self, meeting_id: &str, issued_at: i64) -> [u8; MAC_BYTES] {
        // HMAC accepts keys of any length; a 32-byte key cannot fail.
        let mut mac = match HmacSha256::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(meeting_id.as_bytes());
        mac.update(b"\0");
        mac.update(issued_at.to_string().as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_BYTES];
        out.copy_from_slice(&full[..MAC_BYTES]);
        out
    }

    /// The token for the instance of `meeting_id` a create issued at `issued_at` may start.
    pub fn token(&self, meeting_id: &str, issued_at: i64) -> String {
        format!(
            "{meeting_id}.{issued_at}.{}",
            hex::encode(self.mac(meeting_id, issued_at))
        )
    }

    /// What `token` says, if this key made it (constant-time MAC check); `None` for anything
    /// forged, truncated or malformed.
    pub fn verify(&self, token: &str) -> Option<EndCallback> {
        let mut parts = token.rsplitn(3, '.');
        let mac_hex = parts.next()?;
        let issued_at: i64 = parts.next()?.parse().ok()?;
        let meeting_id = parts.next()?;
        if meeting_id.is_empty() || mac_hex.len() != MAC_BYTES * 2 {
            return None;
        }
        let given = hex::decode(mac_hex).ok()?;
        let expected = self.mac(meeting_id, issued_at);
        bool::from(expected.ct_eq(&given[..])).then(|| EndCallback {
            meeting_id: meeting_id.to_string(),
            issued_at,
        })
    }
}

/// `{public_url}/bbb/callback/end/{token}`: the `meta_endCallbackUrl` of a create.
pub fn callback_url(public_url: &str, token: &str) -> String {
    format!(
        "{}/bbb/callback/end/{token}",
        public_url.trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_carry_their_meeting_and_time() {
        let key = EndCallbackKey::from_bytes([7; 32]);
        let token = key.token("abcDEF123", 1_700_000_000_123);
        assert_eq!(
            key.verify(&token),
            Some(EndCallback {
                meeting_id: "abcDEF123".into(),
                issued_at: 1_700_000_000_123
            })
        );
        assert_eq!(
            callback_url("http://gw.example/", &token),
            format!("http://gw.example/bbb/callback/end/{token}")
        );
    }

    #[test]
    fn forged_or_mangled_tokens_are_refused() {
        let key = EndCallbackKey::from_bytes([7; 32]);
        let other = EndCallbackKey::from_bytes([8; 32]);
        let token = key.token("m1", 100);
        assert_eq!(other.verify(&token), None, "another key");
        let (head, mac) = token.rsplit_once('.').unwrap();
        let mut flipped = mac.to_string();
        flipped.replace_range(0..1, if mac.starts_with('0') { "1" } else { "0" });
        for bad in [
            String::new(),
            "m1".into(),
            "m1.100".into(),
            format!("{head}.{flipped}"),
            format!("{head}.{}", &mac[..10]),
            token.replace("m1.", "m2."),
            token.replace(".100.", ".101."),
            format!("{token}0"),
            format!(".100.{mac}"),
            format!("m1.x.{mac}"),
        ] {
            assert_eq!(key.verify(&bad), None, "{bad}");
        }
    }
}
