//! The `Authorization` request header: `Basic` and `Bearer` credentials, parsed without ever
//! panicking and without ever putting the secret into an error or a `Debug` string.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};
use std::fmt;

/// Longest header value accepted; longer ones are refused before decoding.
pub const MAX_HEADER_LEN: usize = 8192;

/// Standard alphabet; padding optional because some clients strip it.
const BASIC_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Credentials taken from an `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `Basic base64(user:password)`.
    Basic {
        /// User name (never empty, no control characters).
        user: String,
        /// Password (may be empty, may contain `:`).
        password: String,
    },
    /// `Bearer <token>`: a registry token or a robot's static token.
    Bearer(String),
}

impl fmt::Debug for Credentials {
    /// Shows the user name only; passwords and tokens are redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::Bearer(_) => f.debug_tuple("Bearer").field(&"<redacted>").finish(),
        }
    }
}

/// Why an `Authorization` header was refused; no variant carries any part of the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The header is empty or only whitespace.
    #[error("Authorization header is empty")]
    Empty,
    /// Longer than [`MAX_HEADER_LEN`].
    #[error("Authorization header is longer than {MAX_HEADER_LEN} bytes")]
    TooLong,
    /// A scheme other than Basic or Bearer (the scheme is not quoted: it may be a bare secret).
    #[error("unsupported Authorization scheme; expected Basic or Bearer")]
    UnknownScheme,
    /// A scheme with nothing after it.
    #[error("Authorization header has a scheme but no credentials")]
    MissingCredentials,
    /// `Basic` with a value that is not base64.
    #[error("Basic credentials are not valid base64")]
    BadBase64,
    /// `Basic` whose decoded value has no `:` between user and password.
    #[error("Basic credentials have no ':' between user and password")]
    NoColon,
    /// Decoded `Basic` credentials, or a token, that are not UTF-8.
    #[error("credentials are not valid UTF-8")]
    NotUtf8,
    /// `Basic` credentials with an empty user name.
    #[error("Basic credentials have an empty user name")]
    EmptyUser,
    /// Control characters in the user name, or a token with characters outside token68.
    #[error("credentials contain characters that are not allowed")]
    BadCharacters,
}

/// Parses an `Authorization` header value (raw bytes: header values need not be UTF-8).
pub fn parse_authorization(value: &[u8]) -> Result<Credentials, HeaderError> {
    if value.len() > MAX_HEADER_LEN {
        return Err(HeaderError::TooLong);
    }
    let value = std::str::from_utf8(value).map_err(|_| HeaderError::NotUtf8)?;
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    if value.is_empty() {
        return Err(HeaderError::Empty);
    }
    let (scheme, rest) = value
        .split_once([' ', '\t'])
        .map_or((value, ""), |(s, r)| (s, r.trim_start_matches([' ', '\t'])));
    // Scheme names are case-insensitive (RFC 9110 §11.1).
    if scheme.eq_ignore_ascii_case("basic") {
        parse_basic(rest)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        parse_bearer(rest)
    } else {
        Err(HeaderError::UnknownScheme)
    }
}

fn parse_basic(encoded: &str) -> Result<Credentials, HeaderError> {
    if encoded.is_empty() {
        return Err(HeaderError::MissingCredentials);
    }
    let decoded = BASIC_B64
        .decode(encoded)
        .map_err(|_| HeaderError::BadBase64)?;
    let text = String::from_utf8(decoded).map_err(|_| HeaderError::NotUtf8)?;
    let (user, password) = text.split_once(':').ok_or(HeaderError::NoColon)?;
    if user.is_empty() {
        return Err(HeaderError::EmptyUser);
    }
    // User names end up in logs and policy decisions; control characters would forge log lines.
    if user.chars().any(char::is_control) {
        return Err(HeaderError::BadCharacters);
    }
    Ok(Credentials::Basic {
        user: user.to_owned(),
        password: password.to_owned(),
    })
}

fn parse_bearer(token: &str) -> Result<Credentials, HeaderError> {
    if token.is_empty() {
        return Err(HeaderError::MissingCredentials);
    }
    // token68 (RFC 9110 §11.2): JWTs and robot tokens both fit; anything else is not a token.
    let token68 = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    if !token.chars().all(token68) {
        return Err(HeaderError::BadCharacters);
    }
    Ok(Credentials::Bearer(token.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn basic(user_pass: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
        .into_bytes()
    }

    #[test]
    fn basic_credentials() {
        assert_eq!(
            parse_authorization(&basic("alice:s3cret:with:colons")).unwrap(),
            Credentials::Basic {
                user: "alice".into(),
                password: "s3cret:with:colons".into()
            }
        );
        assert_eq!(
            parse_authorization(&basic("bob:")).unwrap(),
            Credentials::Basic {
                user: "bob".into(),
                password: String::new()
            }
        );
        // Case-insensitive scheme, extra whitespace, missing padding.
        assert!(parse_authorization(b"bAsIc   YWxpY2U6cHc").is_ok());
    }

    #[test]
    fn bearer_token() {
        assert_eq!(
            parse_authorization(b"Bearer abc.def-ghi_jkl").unwrap(),
            Credentials::Bearer("abc.def-ghi_jkl".into())
        );
        assert_eq!(
            parse_authorization(b"Bearer a b"),
            Err(HeaderError::BadCharacters)
        );
    }

    #[test]
    fn malformed_values_have_clear_errors() {
        assert_eq!(parse_authorization(b""), Err(HeaderError::Empty));
        assert_eq!(parse_authorization(b"   "), Err(HeaderError::Empty));
        assert_eq!(
            parse_authorization(b"Basic"),
            Err(HeaderError::MissingCredentials)
        );
        assert_eq!(
            parse_authorization(b"Bearer "),
            Err(HeaderError::MissingCredentials)
        );
        assert_eq!(
            parse_authorization(b"Basic !!!"),
            Err(HeaderError::BadBase64)
        );
        assert_eq!(
            parse_authorization(&basic("nocolon")),
            Err(HeaderError::NoColon)
        );
        assert_eq!(
            parse_authorization(&basic(":pw")),
            Err(HeaderError::EmptyUser)
        );
        assert_eq!(
            parse_authorization(&basic("a\nb:pw")),
            Err(HeaderError::BadCharacters)
        );
        assert_eq!(
            parse_authorization(b"Digest x=y"),
            Err(HeaderError::UnknownScheme)
        );
        assert_eq!(parse_authorization(b"\xff\xfe"), Err(HeaderError::NotUtf8));
        let latin1 = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(b"u:\xe9")
        );
        assert_eq!(
            parse_authorization(latin1.as_bytes()),
            Err(HeaderError::NotUtf8)
        );
        let long = vec![b'a'; MAX_HEADER_LEN + 1];
        assert_eq!(parse_authorization(&long), Err(HeaderError::TooLong));
    }

    #[test]
    fn errors_and_debug_never_show_secrets() {
        // A bare secret without a scheme must not be echoed back as "the scheme".
        let err = parse_authorization(b"hunter2hunter2").unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
        let creds = parse_authorization(&basic("alice:hunter2")).unwrap();
        let shown = format!("{creds:?}");
        assert!(
            shown.contains("alice") && !shown.contains("hunter2"),
            "{shown}"
        );
        let bearer = parse_authorization(b"Bearer hunter2").unwrap();
        assert!(!format!("{bearer:?}").contains("hunter2"));
    }

    #[test]
    fn random_input_never_panics() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let prefixes: [&[u8]; 5] = [b"", b"Basic ", b"Bearer ", b"basic\t", b"Basic YWxpY2U6"];
        for i in 0..5000 {
            let len = rng.gen_range(0..64);
            let mut value = prefixes[i % prefixes.len()].to_vec();
            value.extend((0..len).map(|_| rng.gen::<u8>()));
            let _ = parse_authorization(&value);
            // Also valid base64 of random bytes, to reach the post-decoding checks.
            let random: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let _ = parse_authorization(&basic_bytes(&random));
        }
    }

    fn basic_bytes(raw: &[u8]) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
        .into_bytes()
    }
}
