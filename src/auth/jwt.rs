//! Verifying and minting the HS256 JWTs of venueless: `uid`, `traits` and an optional
//! `profile`, signed with one of a world's `jwt_secrets` (issuer and audience must match that
//! entry). Only HS256 is accepted, so `alg: none` or algorithm confusion cannot pass.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::world::JwtSecret;

/// Longer tokens are rejected before any decoding (they would only cost CPU).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Longest accepted `uid` claim, in characters.
pub const MAX_UID_LEN: usize = 200;
/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECS: i64 = 30;

/// Why a token was not accepted. Deliberately coarse: clients learn only "invalid" or
/// "expired", never which secret or check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Not signed by any of the world's secrets (with matching issuer and audience), not
    /// HS256, malformed, missing a valid `uid` or `exp`, or not valid yet (`nbf`).
    #[error("invalid token")]
    Invalid,
    /// Signed correctly, but `exp` has passed.
    #[error("expired token")]
    Expired,
    /// A token could not be minted; the message never contains the secret.
    #[error("cannot mint a token: {0}")]
    Mint(String),
}

/// The claims the gateway uses from a verified token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenClaims {
    /// The user's id in the ticketing system; explicit grants and call members refer to it.
    pub uid: String,
    pub traits: Vec<String>,
    /// The `profile` claim when it is an object (`display_name`, `avatar.url`).
    pub profile: Option<Value>,
}

/// The raw payload, typed loosely so that bad claims are our `Invalid`, not a decode error.
#[derive(Debug, Deserialize)]
struct RawClaims {
    #[serde(default)]
    exp: Option<Value>,
    #[serde(default)]
    nbf: Option<Value>,
    #[serde(default)]
    uid: Option<Value>,
    #[serde(default)]
    traits: Option<Value>,
    #[serde(default)]
    profile: Option<Value>,
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

fn validation_for(secret: &JwtSecret) -> Validation {
    let mut v = Validation::new(Algorithm::HS256);
    v.set_issuer(&[secret.issuer.as_str()]);
    v.set_audience(&[secret.audience.as_str()]);
    v.set_required_spec_claims(&["exp", "iss", "aud"]);
    // `exp` and `nbf` are checked by hand after the signature, issuer and audience matched, so
    // that "expired" is only ever said about a token this world really issued.
    v.validate_exp = false;
    v.validate_nbf = false;
    v
}

/// A time claim (`exp`, `nbf`) as seconds; integers or floats (some issuers write floats).
fn time_secs(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
}

fn claims_from(raw: RawClaims) -> Result<TokenClaims, AuthError> {
    let uid = match raw.uid {
        Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= MAX_UID_LEN => s,
        _ => return Err(AuthError::Invalid),
    };
    let traits = match raw.traits {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|t| match t {
                Value::String(s) => Ok(s),
                _ => Err(AuthError::Invalid),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(AuthError::Invalid),
    };
    let profile = raw.profile.filter(Value::is_object);
    Ok(TokenClaims {
        uid,
        traits,
        profile,
    })
}

/// Verifies a token against each of the world's secrets in turn and returns its claims.
/// `Expired` only when some entry's signature, issuer and audience matched but `exp` (with
/// 30 s leeway) has passed; everything else is `Invalid`, including a token whose `nbf` (RFC
/// 7519 §4.1.5, with the same leeway) is still in the future.
pub fn verify_token(token: &str, secrets: &[JwtSecret]) -> Result<TokenClaims, AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Invalid);
    }
    let now = now_secs();
    let mut expired = false;
    for secret in secrets.iter().filter(|s| !s.secret.is_empty()) {
        let key = DecodingKey::from_secret(secret.secret.as_bytes());
        let Ok(data) = decode::<RawClaims>(token, &key, &validation_for(secret)) else {
            continue;
        };
        let Some(exp) = data.claims.exp.as_ref().and_then(time_secs) else {
            return Err(AuthError::Invalid);
        };
        if exp.saturating_add(LEEWAY_SECS) < now {
            expired = true;
            continue;
        }
        match data.claims.nbf.as_ref() {
            None | Some(Value::Null) => {}
            Some(nbf) => match time_secs(nbf) {
                Some(nbf) if nbf.saturating_sub(LEEWAY_SECS) <= now => {}
                _ => return Err(AuthError::Invalid),
            },
        }
        return claims_from(data.claims);
    }
    Err(if expired {
        AuthError::Expired
    } else {
        AuthError::Invalid
    })
}

/// Mints a token for `uid` signed with `secret` (HS256, with its issuer and audience), valid
/// for `ttl_secs`; for `bbb-gateway token`, the demo and tests. `display_name` becomes
/// `profile.display_name`.
pub fn mint_token(
    secret: &JwtSecret,
    uid: &str,
    traits: &[String],
    display_name: Option<&str>,
    ttl_secs: u64,
) -> Result<String, AuthError> {
    if secret.secret.is_empty() {
        return Err(AuthError::Mint("the JWT secret is empty".into()));
    }
    if uid.is_empty() || uid.chars().count() > MAX_UID_LEN {
        return Err(AuthError::Mint(format!(
            "uid must be 1 to {MAX_UID_LEN} characters"
        )));
    }
    let now = now_secs();
    let ttl = i64::try_from(ttl_secs).unwrap_or(i64::MAX);
    let mut claims = json!({
        "iss": secret.issuer,
        "aud": secret.audience,
        "iat": now,
        "exp": now.saturating_add(ttl),
        "uid": uid,
        "traits": traits,
    });
    if let Some(name) = display_name {
        claims["profile"] = json!({ "display_name": name });
    }
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.secret.as_bytes()),
    )
    .map_err(|e| AuthError::Mint(e.to_string()))
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
