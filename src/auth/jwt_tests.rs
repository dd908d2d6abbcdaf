use super::*;

fn secret(issuer: &str, audience: &str, key: &str) -> JwtSecret {
    JwtSecret {
        issuer: issuer.into(),
        audience: audience.into(),
        secret: key.into(),
    }
}

fn main_secret() -> JwtSecret {
    secret("any", "venueless", "s3cr3t-key")
}

/// Signs arbitrary claims with an arbitrary algorithm.
fn sign(alg: Algorithm, claims: &Value, key: &str) -> String {
    encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

fn claims(exp_offset: i64) -> Value {
    json!({"iss": "any", "aud": "venueless", "exp": now_secs() + exp_offset,
           "uid": "alice", "traits": ["orga", "x"]})
}

/// Base64url without padding, for hand-crafted tokens.
fn b64url(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn minted_tokens_verify_with_their_claims() {
    let s = main_secret();
    let t = mint_token(&s, "alice", &["orga".into()], Some("Alice A."), 60).unwrap();
    let c = verify_token(&t, &[s]).unwrap();
    assert_eq!(c.uid, "alice");
    assert_eq!(c.traits, vec!["orga".to_string()]);
    assert_eq!(c.profile, Some(json!({"display_name": "Alice A."})));
}

#[test]
fn valid_hand_signed_token_and_defaults() {
    let s = main_secret();
    let c = verify_token(
        &sign(Algorithm::HS256, &claims(60), &s.secret),
        std::slice::from_ref(&s),
    )
    .unwrap();
    assert_eq!(c.traits, vec!["orga".to_string(), "x".to_string()]);
    assert_eq!(c.profile, None);
    let mut no_traits = claims(60);
    no_traits.as_object_mut().unwrap().remove("traits");
    no_traits["profile"] = json!("not an object");
    let c = verify_token(&sign(Algorithm::HS256, &no_traits, &s.secret), &[s]).unwrap();
    assert!(c.traits.is_empty());
    assert_eq!(c.profile, None);
}

#[test]
fn wrong_key_issuer_or_audience_is_invalid() {
    let s = main_secret();
    let t = sign(Algorithm::HS256, &claims(60), "other-key");
    assert_eq!(
        verify_token(&t, std::slice::from_ref(&s)),
        Err(AuthError::Invalid)
    );
    let mut c = claims(60);
    c["aud"] = json!("elsewhere");
    let t = sign(Algorithm::HS256, &c, &s.secret);
    assert_eq!(
        verify_token(&t, std::slice::from_ref(&s)),
        Err(AuthError::Invalid)
    );
    let mut c = claims(60);
    c["iss"] = json!("someone");
    let t = sign(Algorithm::HS256, &c, &s.secret);
    assert_eq!(
        verify_token(&t, std::slice::from_ref(&s)),
        Err(AuthError::Invalid)
    );
    let mut c = claims(60);
    c.as_object_mut().unwrap().remove("iss");
    let t = sign(Algorithm::HS256, &c, &s.secret);
    assert_eq!(verify_token(&t, &[s]), Err(AuthError::Invalid));
}

#[test]
fn expiry_has_a_leeway_and_is_only_reported_for_our_tokens() {
    let s = main_secret();
    let t = sign(Algorithm::HS256, &claims(-10), &s.secret);
    assert!(
        verify_token(&t, std::slice::from_ref(&s)).is_ok(),
        "within 30 s leeway"
    );
    let t = sign(Algorithm::HS256, &claims(-120), &s.secret);
    assert_eq!(
        verify_token(&t, std::slice::from_ref(&s)),
        Err(AuthError::Expired)
    );
    // Expired and signed by a stranger: just invalid.
    let t = sign(Algorithm::HS256, &claims(-120), "other-key");
    assert_eq!(
        verify_token(&t, std::slice::from_ref(&s)),
        Err(AuthError::Invalid)
    );
    // Expired, right key, wrong audience: invalid.
    let mut c = claims(-120);
    c["aud"] = json!("elsewhere");
    assert_eq!(
        verify_token(
            &sign(Algorithm::HS256, &c, &s.secret),
            std::slice::from_ref(&s)
        ),
        Err(AuthError::Invalid)
    );
    // No exp at all: invalid.
    let mut c = claims(60);
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        verify_token(&sign(Algorithm::HS256, &c, &s.secret), &[s]),
        Err(AuthError::Invalid)
    );
}

#[test]
fn not_before_is_honoured_with_the_same_leeway() {
    let s = main_secret();
    let with_nbf = |nbf: Value| {
        let mut c = claims(3600);
        c["nbf"] = nbf;
        sign(Algorithm::HS256, &c, &s.secret)
    };
    let verify = |t: &str| verify_token(t, std::slice::from_ref(&s));
    assert!(
        verify(&with_nbf(json!(now_secs() - 60))).is_ok(),
        "valid since a minute"
    );
    assert!(
        verify(&with_nbf(json!(now_secs() + 10))).is_ok(),
        "within 30 s leeway"
    );
    assert!(
        verify(&with_nbf(json!((now_secs() + 10) as f64))).is_ok(),
        "a float"
    );
    assert!(verify(&with_nbf(Value::Null)).is_ok(), "null is absent");
    for bad in [
        json!(now_secs() + 120),
        json!(now_secs() + 86400),
        json!("yesterday"),
        json!(f64::MAX),
    ] {
        assert_eq!(
            verify(&with_nbf(bad.clone())),
            Err(AuthError::Invalid),
            "{bad}"
        );
    }
}

#[test]
fn alg_none_is_rejected() {
    let s = main_secret();
    let header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64url(claims(60).to_string().as_bytes());
    for t in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
    ] {
        assert_eq!(
            verify_token(&t, std::slice::from_ref(&s)),
            Err(AuthError::Invalid),
            "{t}"
        );
    }
    // Lower/upper-case variants of none.
    let header = b64url(br#"{"alg":"None","typ":"JWT"}"#);
    let t = format!("{header}.{payload}.");
    assert_eq!(verify_token(&t, &[s]), Err(AuthError::Invalid));
}

#[test]
fn other_algorithms_are_rejected() {
    let s = main_secret();
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let t = sign(alg, &claims(60), &s.secret);
        assert_eq!(
            verify_token(&t, std::slice::from_ref(&s)),
            Err(AuthError::Invalid)
        );
    }
}

#[test]
fn every_secret_entry_is_tried() {
    let first = secret("a", "venueless", "first");
    let second = secret("any", "venueless", "second");
    let t = sign(Algorithm::HS256, &claims(60), "second");
    let c = verify_token(&t, &[first.clone(), second.clone()]).unwrap();
    assert_eq!(c.uid, "alice");
    // Same key on two entries, the first with another audience.
    let a = secret("any", "other", "second");
    assert!(verify_token(&t, &[a, second]).is_ok());
    // Empty secrets never verify anything.
    let empty = secret("any", "venueless", "");
    let t = sign(Algorithm::HS256, &claims(60), "");
    assert_eq!(verify_token(&t, &[empty]), Err(AuthError::Invalid));
    assert_eq!(verify_token(&t, &[]), Err(AuthError::Invalid));
}

#[test]
fn huge_and_garbage_tokens_are_invalid() {
    let s = main_secret();
    let mut c = claims(60);
    c["pad"] = json!("x".repeat(MAX_TOKEN_BYTES));
    let t = sign(Algorithm::HS256, &c, &s.secret);
    assert!(t.len() > MAX_TOKEN_BYTES);
    assert_eq!(
        verify_token(&t, std::slice::from_ref(&s)),
        Err(AuthError::Invalid)
    );
    for junk in ["", "a.b.c", "not a token", "...."] {
        assert_eq!(
            verify_token(junk, std::slice::from_ref(&s)),
            Err(AuthError::Invalid)
        );
    }
}

#[test]
fn uid_and_traits_are_checked() {
    let s = main_secret();
    let mut bad = Vec::new();
    let mut c = claims(60);
    c.as_object_mut().unwrap().remove("uid");
    bad.push(c);
    for uid in [
        json!(""),
        json!(42),
        json!("u".repeat(MAX_UID_LEN + 1)),
        json!(null),
    ] {
        let mut c = claims(60);
        c["uid"] = uid;
        bad.push(c);
    }
    for traits in [json!("orga"), json!([1, 2]), json!({"a": 1})] {
        let mut c = claims(60);
        c["traits"] = traits;
        bad.push(c);
    }
    for c in bad {
        let t = sign(Algorithm::HS256, &c, &s.secret);
        assert_eq!(
            verify_token(&t, std::slice::from_ref(&s)),
            Err(AuthError::Invalid),
            "{c}"
        );
    }
    let mut c = claims(60);
    c["uid"] = json!("u".repeat(MAX_UID_LEN));
    assert!(verify_token(&sign(Algorithm::HS256, &c, &s.secret), &[s]).is_ok());
}

#[test]
fn minting_rejects_bad_input_without_leaking_the_secret() {
    assert!(matches!(
        mint_token(&secret("i", "a", ""), "u", &[], None, 60),
        Err(AuthError::Mint(_))
    ));
    let e = mint_token(&main_secret(), "", &[], None, 60).unwrap_err();
    assert!(!e.to_string().contains("s3cr3t"));
    assert!(!format!("{:?}", main_secret()).contains("s3cr3t"));
    // A huge ttl saturates instead of overflowing.
    let t = mint_token(&main_secret(), "u", &[], None, u64::MAX).unwrap();
    assert!(verify_token(&t, &[main_secret()]).is_ok());
}
