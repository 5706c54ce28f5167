//! `parse_authorization` on arbitrary header bytes: never panics; Basic credentials have a
//! non-empty user without control characters and survive re-encoding; Bearer tokens are token68.
#![no_main]

use base64::Engine;
use breakwater_auth::basic::MAX_HEADER_LEN;
use breakwater_auth::{parse_authorization, Credentials};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check(data);
    // Also as the decoded payload of a Basic header, so the fuzzer reaches the checks after
    // base64 decoding without having to find valid base64 itself.
    let encoded = base64::engine::general_purpose::STANDARD.encode(data);
    check(format!("Basic {encoded}").as_bytes());
});

fn check(value: &[u8]) {
    let Ok(creds) = parse_authorization(value) else {
        return;
    };
    assert!(value.len() <= MAX_HEADER_LEN);
    match &creds {
        Credentials::Basic { user, password } => {
            assert!(!user.is_empty(), "Basic with an empty user");
            assert!(
                !user.chars().any(char::is_control),
                "Basic user with a control character: {user:?}"
            );
            assert!(
                !user.contains(':'),
                "user name holds the separator: {user:?}"
            );
            // Re-encoding what was parsed gives the same credentials back.
            let again =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            let header = format!("Basic {again}");
            if header.len() <= MAX_HEADER_LEN {
                assert_eq!(parse_authorization(header.as_bytes()), Ok(creds.clone()));
            }
            // Debug shows the user and never the password.
            assert_eq!(
                format!("{creds:?}"),
                format!("Basic {{ user: {user:?}, password: \"<redacted>\" }}")
            );
        }
        Credentials::Bearer(token) => {
            assert!(!token.is_empty());
            assert_eq!(format!("{creds:?}"), "Bearer(\"<redacted>\")");
            assert!(token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~+/=".contains(c)));
        }
    }
}
