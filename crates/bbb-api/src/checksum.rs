//! BBB checksums and query strings. The query is built once, hashed and sent byte for byte,
//! because BBB hashes the exact query string it receives: any re-encoding breaks the checksum.

use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};
use subtle::ConstantTimeEq;

use super::types::{ChecksumAlgorithm, Secret, ServerEndpoint};

/// `lowercase_hex(HASH(call_name + query + secret))`, as BBB computes it.
pub fn checksum(algo: ChecksumAlgorithm, call_name: &str, query: &str, secret: &Secret) -> String {
    let mut h = HashState::start(algo, call_name);
    h.update(query.as_bytes());
    let mut out = String::with_capacity(128);
    h.finish_into(secret, &mut out);
    out
}

/// A checksum being computed, resumable: a join URL's meeting half is hashed once, and each
/// join only adds its user half and the secret to a copy of that state.
#[derive(Clone)]
pub enum HashState {
    Sha1(Sha1),
    Sha256(Sha256),
    Sha384(Sha384),
    Sha512(Sha512),
}

impl HashState {
    /// A checksum of `call_name` followed by what is added later.
    pub fn start(algo: ChecksumAlgorithm, call_name: &str) -> Self {
        let mut h = match algo {
            ChecksumAlgorithm::Sha1 => HashState::Sha1(Sha1::new()),
            ChecksumAlgorithm::Sha256 => HashState::Sha256(Sha256::new()),
            ChecksumAlgorithm::Sha384 => HashState::Sha384(Sha384::new()),
            ChecksumAlgorithm::Sha512 => HashState::Sha512(Sha512::new()),
        };
        h.update(call_name.as_bytes());
        h
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            HashState::Sha1(d) => d.update(bytes),
            HashState::Sha256(d) => d.update(bytes),
            HashState::Sha384(d) => d.update(bytes),
            HashState::Sha512(d) => d.update(bytes),
        }
    }

    /// Adds the secret and appends the lowercase hex digest to `out`.
    pub fn finish_into(mut self, secret: &Secret, out: &mut String) {
        self.update(secret.expose().as_bytes());
        match self {
            HashState::Sha1(d) => push_hex(out, &d.finalize()),
            HashState::Sha256(d) => push_hex(out, &d.finalize()),
            HashState::Sha384(d) => push_hex(out, &d.finalize()),
            HashState::Sha512(d) => push_hex(out, &d.finalize()),
        }
    }
}

/// Lowercase hex, as BBB compares it.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

/// Bytes `application/x-www-form-urlencoded` keeps as they are.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_')
}

/// Appends `s` form-urlencoded: alphanumerics and `*-._` kept, space as `+`, every other byte
/// of its UTF-8 as uppercase `%XX`. The same bytes as the `form_urlencoded` crate (a property
/// test checks it), copying runs of plain characters at once.
pub fn push_form_encoded(out: &mut String, s: &str) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = s.as_bytes();
    let mut plain_from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if is_unreserved(b) {
            continue;
        }
        // `plain_from..i` holds only ASCII, so both ends are character boundaries.
        if let Some(run) = s.get(plain_from..i) {
            out.push_str(run);
        }
        if b == b' ' {
            out.push('+');
        } else {
            out.push('%');
            out.push(char::from(DIGITS[usize::from(b >> 4)]));
            out.push(char::from(DIGITS[usize::from(b & 0xf)]));
        }
        plain_from = i + 1;
    }
    if let Some(run) = s.get(plain_from..) {
        out.push_str(run);
    }
}

/// Appends `key=value` (encoded), preceded by `&` unless `out` ends with the query's start.
pub fn push_pair(out: &mut String, query_start: usize, key: &str, value: &str) {
    if out.len() > query_start {
        out.push('&');
    }
    push_form_encoded(out, key);
    out.push('=');
    push_form_encoded(out, value);
}

/// `application/x-www-form-urlencoded` query (space as `+`), the encoding BBB's docs use.
pub fn build_query(params: &[(impl AsRef<str>, impl AsRef<str>)]) -> String {
    let mut query = String::new();
    for (k, v) in params {
        push_pair(&mut query, 0, k.as_ref(), v.as_ref());
    }
    query
}

/// The query string to send: the encoded parameters plus `checksum=` computed over exactly them.
pub fn signed_query(
    endpoint: &ServerEndpoint,
    call: &str,
    params: &[(impl AsRef<str>, impl AsRef<str>)],
) -> String {
    let query = build_query(params);
    let sum = checksum(endpoint.algorithm, call, &query, &endpoint.secret);
    if query.is_empty() {
        format!("checksum={sum}")
    } else {
        format!("{query}&checksum={sum}")
    }
}

/// Which algorithm a checksum of this many hex digits was made with (how BBB detects it).
pub fn algorithm_for_len(len: usize) -> Option<ChecksumAlgorithm> {
    match len {
        40 => Some(ChecksumAlgorithm::Sha1),
        64 => Some(ChecksumAlgorithm::Sha256),
        96 => Some(ChecksumAlgorithm::Sha384),
        128 => Some(ChecksumAlgorithm::Sha512),
        _ => None,
    }
}

/// Checks a received checksum like BBB does: algorithm by digest length, which must be one of
/// `allowed`; exact (case-sensitive) comparison in constant time so timing leaks nothing.
pub fn verify(
    call: &str,
    query_without_checksum: &str,
    checksum_hex: &str,
    secret: &Secret,
    allowed: &[ChecksumAlgorithm],
) -> bool {
    let Some(algo) = algorithm_for_len(checksum_hex.len()) else {
        return false;
    };
    if !allowed.contains(&algo) {
        return false;
    }
    let expected = checksum(algo, call, query_without_checksum, secret);
    expected.as_bytes().ct_eq(checksum_hex.as_bytes()).into()
}

/// Splits a raw query string into (query without the `checksum` parameter, checksum value),
/// the way BBB strips it before hashing. `None` when no checksum was sent.
pub fn split_checksum(raw_query: &str) -> (String, Option<String>) {
    let mut rest = Vec::new();
    let mut sum = None;
    for part in raw_query.split('&') {
        match part.strip_prefix("checksum=") {
            Some(v) if sum.is_none() => sum = Some(v.to_string()),
            _ => rest.push(part),
        }
    }
    (rest.join("&"), sum)
}

/// Normalises a configured server URL to `scheme://host[:port]/path` without a trailing slash or
/// `/api`, so admins may paste any of the usual forms and we still build `{base}/api/{call}`.
pub fn normalize_base_url(url: &str) -> Result<String, String> {
    let trimmed = url.trim();
    let parsed = url::Url::parse(trimmed).map_err(|e| format!("invalid URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "the URL must start with http:// or https://, not {}://",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("the URL must not contain credentials".into());
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err("the URL must not contain a query or fragment".into());
    }
    let mut s = parsed.as_str().trim_end_matches('/').to_string();
    if let Some(stripped) = s.strip_suffix("/api") {
        s = stripped.trim_end_matches('/').to_string();
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: &str = "name=Test+Meeting&meetingID=abc123&attendeePW=111222&moderatorPW=333444";
    const S: &str = "639259d4-9dd8-4b25-bf01-95f9567eaf4b";

    fn secret() -> Secret {
        Secret::new(S)
    }

    #[test]
    fn official_sha1_vector() {
        assert_eq!(
            checksum(ChecksumAlgorithm::Sha1, "create", Q, &secret()),
            "1fcbb0c4fc1f039f73aa6d697d2db9ba7f803f17"
        );
    }

    #[test]
    fn sha2_vectors() {
        // Computed independently with `printf '%s' "create${Q}${S}" | shaNNNsum`.
        let cases = [
            (
                ChecksumAlgorithm::Sha256,
                "da9185f7f333cfdfcd6eeac32dca3777510c4c436020d8b887ba5515bd1d189e",
            ),
            (
                ChecksumAlgorithm::Sha384,
                "891ac633df39d0a1b4f8d597f3e190833216c4b29c4fb51ea3ca72757eeb958d6e7b49a845cf29f5c6019c7d29d029d1",
            ),
            (
                ChecksumAlgorithm::Sha512,
                "de73ad61d11a5c801b68d4bd6ec5248546085cefb0b25c85f3c46249ea93a3a4b120f92c0a8a58d7512cb77821884951a3b01245f3435dbbef49fff3cc3988b4",
            ),
        ];
        for (algo, want) in cases {
            assert_eq!(checksum(algo, "create", Q, &secret()), want, "{algo}");
        }
    }

    #[test]
    fn build_query_matches_official_encoding() {
        let q = build_query(&[
            ("name", "Test Meeting"),
            ("meetingID", "abc123"),
            ("attendeePW", "111222"),
            ("moderatorPW", "333444"),
        ]);
        assert_eq!(q, Q);
        assert_eq!(
            build_query(&[("a", "x&y=z/ä,b")]),
            "a=x%26y%3Dz%2F%C3%A4%2Cb"
        );
    }

    #[test]
    fn signed_query_and_verify_round_trip() {
        for algo in ChecksumAlgorithm::ALL {
            let ep = ServerEndpoint {
                base_url: "http://x/bigbluebutton".into(),
                secret: secret(),
                algorithm: algo,
            };
            let sq = signed_query(&ep, "create", &[("meetingID", "m 1")]);
            let (q, sum) = split_checksum(&sq);
            let sum = sum.unwrap();
            assert_eq!(q, "meetingID=m+1");
            assert!(verify(
                "create",
                &q,
                &sum,
                &secret(),
                &ChecksumAlgorithm::ALL
            ));
            assert!(!verify(
                "create",
                &q,
                &sum,
                &Secret::new("other"),
                &ChecksumAlgorithm::ALL
            ));
            assert!(!verify(
                "join",
                &q,
                &sum,
                &secret(),
                &ChecksumAlgorithm::ALL
            ));
            assert!(!verify(
                "create",
                &q,
                &sum.to_uppercase(),
                &secret(),
                &ChecksumAlgorithm::ALL
            ));
            let others: Vec<_> = ChecksumAlgorithm::ALL
                .into_iter()
                .filter(|a| *a != algo)
                .collect();
            assert!(!verify("create", &q, &sum, &secret(), &others));
        }
    }

    #[test]
    fn empty_query_is_signed_without_leading_ampersand() {
        let ep = ServerEndpoint {
            base_url: "http://x".into(),
            secret: Secret::new("S3cr3t"),
            algorithm: ChecksumAlgorithm::Sha256,
        };
        let empty: [(&str, &str); 0] = [];
        assert_eq!(
            signed_query(&ep, "getMeetings", &empty),
            "checksum=857d07d8df7dd92801c48cf645fa44b1057aa6ee6b42731317ea6297bcd23a11"
        );
        assert_eq!(
            split_checksum("checksum=ab"),
            (String::new(), Some("ab".into()))
        );
        assert_eq!(split_checksum("a=1"), ("a=1".into(), None));
    }

    #[test]
    fn verify_rejects_bad_lengths() {
        assert!(!verify("create", Q, "", &secret(), &ChecksumAlgorithm::ALL));
        assert!(!verify(
            "create",
            Q,
            "abc",
            &secret(),
            &ChecksumAlgorithm::ALL
        ));
        assert!(!verify(
            "create",
            Q,
            &"ä".repeat(20),
            &secret(),
            &ChecksumAlgorithm::ALL
        ));
    }

    #[test]
    fn base_url_forms() {
        for u in [
            "https://bbb1.example.org/bigbluebutton",
            "https://bbb1.example.org/bigbluebutton/",
            "https://bbb1.example.org/bigbluebutton/api",
            "https://bbb1.example.org/bigbluebutton/api/",
            " https://BBB1.example.org/bigbluebutton/api// ",
        ] {
            assert_eq!(
                normalize_base_url(u).unwrap(),
                "https://bbb1.example.org/bigbluebutton",
                "{u}"
            );
        }
        assert_eq!(
            normalize_base_url("http://h:8090/").unwrap(),
            "http://h:8090"
        );
        assert_eq!(normalize_base_url("http://h/api").unwrap(), "http://h");
        for bad in [
            "",
            "bbb.example.org",
            "ftp://h/x",
            "https://u:p@h/x",
            "https://h/x?y=1",
        ] {
            assert!(normalize_base_url(bad).is_err(), "{bad}");
        }
    }

    /// The `form_urlencoded` crate's encoding, the reference for ours.
    fn reference_query(params: &[(String, String)]) -> String {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in params {
            ser.append_pair(k, v);
        }
        ser.finish()
    }

    #[test]
    fn form_encoding_matches_the_reference_on_tricky_input() {
        for s in [
            "",
            " ",
            "a b+c&d=e",
            "ü€😀",
            "%41",
            "*-._~!'()",
            "\u{0}\u{7f}\u{80}",
            "Ada: \"q\"",
        ] {
            let mut ours = String::new();
            push_form_encoded(&mut ours, s);
            assert_eq!(
                ours,
                form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>(),
                "{s:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn form_encoding_matches_the_reference(params in proptest::collection::vec((".*", ".*"), 0..5)) {
            proptest::prop_assert_eq!(build_query(&params), reference_query(&params));
        }

        #[test]
        fn hex_checksums_match_the_reference(q in ".*", s in ".+") {
            let secret = Secret::new(s.clone());
            for algo in ChecksumAlgorithm::ALL {
                let expected = match algo {
                    ChecksumAlgorithm::Sha1 => hex::encode(Sha1::digest(format!("join{q}{s}"))),
                    ChecksumAlgorithm::Sha256 => hex::encode(Sha256::digest(format!("join{q}{s}"))),
                    ChecksumAlgorithm::Sha384 => hex::encode(Sha384::digest(format!("join{q}{s}"))),
                    ChecksumAlgorithm::Sha512 => hex::encode(Sha512::digest(format!("join{q}{s}"))),
                };
                proptest::prop_assert_eq!(checksum(algo, "join", &q, &secret), expected);
            }
        }

        #[test]
        fn verify_never_panics(call in ".*", q in ".*", sum in ".*", s in ".*") {
            let _ = verify(&call, &q, &sum, &Secret::new(s), &ChecksumAlgorithm::ALL);
            let _ = split_checksum(&q);
            let _ = normalize_base_url(&q);
        }
    }
}
