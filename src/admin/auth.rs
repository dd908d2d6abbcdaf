//! Bearer-token check for the admin routes, in constant time so the token cannot be guessed
//! byte by byte from response times.

use actix_web::HttpRequest;
use subtle::ConstantTimeEq;

/// True when the request carries `Authorization: Bearer <one of tokens>`.
pub fn authorized(req: &HttpRequest, tokens: &[String]) -> bool {
    let Some(given) = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
    else {
        return false;
    };
    // Compare against every token (no early exit) so timing does not reveal which matched.
    let mut ok = subtle::Choice::from(0u8);
    for token in tokens {
        ok |= token_eq(given.as_bytes(), token.as_bytes());
    }
    bool::from(ok)
}

fn token_eq(given: &[u8], expected: &[u8]) -> subtle::Choice {
    if given.len() != expected.len() {
        return subtle::Choice::from(0u8);
    }
    given.ct_eq(expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn checks_bearer_tokens() {
        let tokens = vec![
            "a-very-long-admin-token".to_string(),
            "second-token-xxxxxx".to_string(),
        ];
        let ok = TestRequest::default()
            .insert_header(("Authorization", "Bearer second-token-xxxxxx"))
            .to_http_request();
        assert!(authorized(&ok, &tokens));
        for bad in [
            "Bearer nope",
            "second-token-xxxxxx",
            "Basic a-very-long-admin-token",
            "Bearer ",
        ] {
            let req = TestRequest::default()
                .insert_header(("Authorization", bad))
                .to_http_request();
            assert!(!authorized(&req, &tokens), "{bad}");
        }
        let none = TestRequest::default().to_http_request();
        assert!(!authorized(&none, &tokens));
        assert!(!authorized(&ok, &[]));
    }
}
