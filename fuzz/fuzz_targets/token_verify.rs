//! `TokenIssuer::verify` on arbitrary strings never panics, and whatever it accepts is a token of
//! this service and issuer, valid at the given time. Three inputs per run:
//! 1. the bytes as a token string (almost always refused: the fuzzer cannot forge HS256);
//! 2. the bytes as the claims of a token signed with the issuer's key (header fixed, or taken
//!    from the first line), which reaches claim decoding and validation behind the signature;
//! 3. issue → verify round trip with a subject and access list derived from the bytes.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use breakwater_auth::token::{KEY_LEN, LEEWAY_SECS, MAX_TOKEN_LEN};
use breakwater_auth::{Access, Claims, TokenError, TokenIssuer, TokenKey};
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::Duration;

const NOW: u64 = 1_800_000_000;
const TTL: u64 = 300;
const KEY: [u8; KEY_LEN] = [0x42; KEY_LEN];

fn issuer() -> &'static TokenIssuer {
    static ISSUER: OnceLock<TokenIssuer> = OnceLock::new();
    ISSUER.get_or_init(|| {
        TokenIssuer::new(
            TokenKey::from_bytes(KEY),
            "breakwater",
            "cache.example",
            Duration::from_secs(TTL),
        )
    })
}

/// Accepted claims must be for this service and issuer, and current at `now`.
fn check_accepted(claims: &Claims, now: u64) {
    let iss = issuer();
    assert_eq!(claims.aud, iss.service);
    assert_eq!(claims.iss, iss.issuer);
    assert!(
        now < claims.exp.saturating_add(LEEWAY_SECS),
        "expired token accepted"
    );
    assert!(
        now.saturating_add(LEEWAY_SECS) >= claims.nbf,
        "future token accepted"
    );
}

fuzz_target!(|data: &[u8]| {
    let iss = issuer();
    let text = String::from_utf8_lossy(data);

    // 1. Arbitrary token string.
    if let Ok(claims) = iss.verify(&text, NOW) {
        check_accepted(&claims, NOW);
    }

    // 2. Arbitrary claims (and maybe header) behind a valid signature.
    let (header, payload): (&[u8], &[u8]) = match data.iter().position(|&b| b == b'\n') {
        Some(at) if data.first() == Some(&b'{') => (&data[..at], &data[at + 1..]),
        _ => (br#"{"alg":"HS256","typ":"JWT"}"#, data),
    };
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(&KEY),
        Algorithm::HS256,
    )
    .expect("HMAC signing");
    let signed = format!("{message}.{signature}");
    for now in [0, NOW, u64::MAX] {
        match iss.verify(&signed, now) {
            Ok(claims) => check_accepted(&claims, now),
            Err(TokenError::BadSignature) if signed.len() <= MAX_TOKEN_LEN => {
                // Only a header naming another algorithm can make our own signature "bad".
                assert!(
                    header != br#"{"alg":"HS256","typ":"JWT"}"#,
                    "own signature refused"
                );
            }
            Err(_) => {}
        }
    }

    // 3. Round trip: what is issued verifies to the same subject and access.
    let (subject, access) = derive_grant(&text);
    let issued = iss.issue(subject.as_deref(), &access, NOW);
    let verified = iss.verify(&issued.token, NOW);
    if issued.token.len() > MAX_TOKEN_LEN {
        assert_eq!(verified, Err(TokenError::Malformed));
        return;
    }
    let claims = verified.expect("a token just issued must verify");
    check_accepted(&claims, NOW);
    assert_eq!(claims.sub, subject.clone().unwrap_or_default());
    assert_eq!(
        claims.subject(),
        subject.as_deref().filter(|s| !s.is_empty())
    );
    assert_eq!(claims.access, access);
    assert_eq!((claims.nbf, claims.iat, claims.exp), (NOW, NOW, NOW + TTL));
    for a in &access {
        for action in &a.actions {
            assert_eq!(
                claims.allows(&a.name, action),
                access.iter().any(|b| b.base_kind() == "repository"
                    && b.name == a.name
                    && b.has_action(action))
            );
        }
    }
    // The same token at the edges of its lifetime.
    assert!(iss
        .verify(&issued.token, NOW + TTL + LEEWAY_SECS - 1)
        .is_ok());
    assert_eq!(
        iss.verify(&issued.token, NOW + TTL + LEEWAY_SECS),
        Err(TokenError::Expired)
    );
    assert_eq!(
        iss.verify(&issued.token, NOW - LEEWAY_SECS - 1),
        Err(TokenError::NotYetValid)
    );
});

/// First line: the subject (`None` when the input has no newline); each further line
/// `type\tname\tactions,...` (missing fields empty) is one access entry, taken verbatim, not parsed
/// as a scope, so the strings may hold anything JSON has to escape.
fn derive_grant(text: &str) -> (Option<String>, Vec<Access>) {
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or_default();
    let subject = text.contains('\n').then(|| first.to_owned());
    let access = lines
        .map(|line| {
            let mut fields = line.splitn(3, '\t');
            let kind = fields.next().unwrap_or_default();
            let name = fields.next().unwrap_or_default();
            let actions: Vec<&str> = fields
                .next()
                .map(|a| a.split(',').collect())
                .unwrap_or_default();
            Access::new(kind, name, &actions)
        })
        .collect();
    (subject, access)
}
