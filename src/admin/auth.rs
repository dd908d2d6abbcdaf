//! Bearer-token check for the admin routes. Tokens are compared as SHA-256 digests in constant
//! time: response times reveal neither how much of a guess matched nor how long the token is.

use actix_web::HttpRequest;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The token of an `Authorization: Bearer <token>` header; the scheme is matched
/// case-insensitively (RFC 7235 §2.1).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim_start().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(token.trim()).filter(|t| !t.is_empty())
}

/// True when the request carries `Authorization: Bearer <one of tokens>`.
pub fn authorized(req: &HttpRequest, tokens: &[String]) -> bool {
    let Some(given) = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(bearer_token)
    else {
        return false;
    };
    let given = Sha256::digest(given.as_bytes());
    // Compare against every token (no early exit) so timing does not reveal which matched.
    let mut ok = subtle::Choice::from(0u8);
    for token in tokens {
        ok |= given.ct_eq(&Sha256::digest(token.as_bytes()));
    }
    bool::from(ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn with_header(value: &str) -> HttpRequest {
        TestRequest::default()
            .insert_header(("Authorization", value))
            .to_http_request()
    }

    #[test]
    fn checks_bearer_tokens() {
        let tokens = vec![
            "a-very-long-admin-token".to_string(),
            "second-token-xxxxxx".to_string(),
        ];
        for good in [
            "Bearer second-token-xxxxxx",
            "bearer second-token-xxxxxx",
            "BEARER a-very-long-admin-token",
            "bEaReR  a-very-long-admin-token ",
        ] {
            assert!(authorized(&with_header(good), &tokens), "{good}");
        }
        for bad in [
            "Bearer nope",
            "second-token-xxxxxx",
            "Basic a-very-long-admin-token",
            "Bearer ",
            "Bearer",
            "Bearersecond-token-xxxxxx",
            "Bearer second-token-xxxxx",
            "Bearer second-token-xxxxxxx",
        ] {
            assert!(!authorized(&with_header(bad), &tokens), "{bad}");
        }
        let none = TestRequest::default().to_http_request();
        assert!(!authorized(&none, &tokens));
        assert!(!authorized(&with_header("Bearer second-token-xxxxxx"), &[]));
    }
}
