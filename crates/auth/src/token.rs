//! Registry tokens (the distribution token specification): breakwater is both the issuer and
//! the verifier, so one shared HMAC key (HS256) is all it needs.

use crate::scope::Access;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Length of the signing key in bytes.
pub const KEY_LEN: usize = 32;

/// Clock skew tolerated on `exp` and `nbf`, in seconds (several replicas may share the key).
pub const LEEWAY_SECS: u64 = 30;

/// Longest token accepted for verification; real ones are well under 2 KiB.
pub const MAX_TOKEN_LEN: usize = 8192;

/// The HMAC key tokens are signed with. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenKey([u8; KEY_LEN]);

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

/// Why the key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file exists but does not hold exactly [`KEY_LEN`] bytes.
    #[error("token key file {path} holds {found} bytes; it must hold exactly {KEY_LEN} random bytes (e.g. `head -c {KEY_LEN} /dev/urandom`), or delete it to have one generated")]
    WrongLength {
        /// The key file.
        path: PathBuf,
        /// Its length.
        found: u64,
    },
    /// Reading or creating the file failed.
    #[error("token key file {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

impl TokenKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut bytes = [0u8; KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        TokenKey(bytes)
    }

    /// A key from raw bytes (for tests or keys kept elsewhere).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        TokenKey(bytes)
    }

    /// Loads the key from `path`, or creates it there (mode 0600) if missing, so tokens survive
    /// restarts and replicas sharing the file accept each other's tokens.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let io_err = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        match std::fs::read(path) {
            Ok(bytes) => return Self::from_file_bytes(path, &bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        let key = Self::generate();
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = dir.join(format!(
            ".{}.tmp{}",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("token-key"),
            std::process::id()
        ));
        let written = write_private(&tmp, &key.0);
        // A hard link only succeeds when `path` does not exist yet, so two processes creating
        // the key at once cannot replace each other's: the loser reads the winner's key.
        let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(key),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let bytes = std::fs::read(path).map_err(io_err)?;
                Self::from_file_bytes(path, &bytes)
            }
            Err(e) => Err(io_err(e)),
        }
    }

    fn from_file_bytes(path: &Path, bytes: &[u8]) -> Result<Self, KeyError> {
        let array: [u8; KEY_LEN] = bytes.try_into().map_err(|_| KeyError::WrongLength {
            path: path.to_owned(),
            found: bytes.len() as u64,
        })?;
        Ok(TokenKey(array))
    }
}

/// Writes `bytes` to a new file readable only by its owner, synced to disk.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The claims of a breakwater token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer (the `issuer` of the [`TokenIssuer`]).
    pub iss: String,
    /// Subject: the user or robot name, empty for anonymous.
    pub sub: String,
    /// Audience: the service name clients asked for.
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Not before, seconds since the epoch.
    pub nbf: u64,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Random token id.
    pub jti: String,
    /// What the token grants.
    #[serde(default)]
    pub access: Vec<Access>,
}

impl Claims {
    /// True when the token grants `action` on repository `repo` (the name as in the scope).
    pub fn allows(&self, repo: &str, action: &str) -> bool {
        self.access
            .iter()
            .any(|a| a.base_kind() == "repository" && a.name == repo && a.has_action(action))
    }

    /// The subject, `None` for an anonymous token.
    pub fn subject(&self) -> Option<&str> {
        Some(self.sub.as_str()).filter(|s| !s.is_empty())
    }
}

/// A freshly issued token with what the token endpoint returns alongside it.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The signed JWT.
    pub token: String,
    /// Lifetime in seconds (`expires_in`).
    pub expires_in: u64,
    /// Issue time, seconds since the epoch (`issued_at`, to be formatted as RFC 3339).
    pub issued_at: u64,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .field("issued_at", &self.issued_at)
            .finish()
    }
}

/// Why a presented token was refused. No message contains the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, not our claims, or longer than [`MAX_TOKEN_LEN`].
    #[error("token is malformed")]
    Malformed,
    /// Signed with another algorithm than HS256 (including `none`).
    #[error("token uses an unexpected signing algorithm")]
    WrongAlgorithm,
    /// The signature does not match our key.
    #[error("token signature is invalid")]
    BadSignature,
    /// Issued for another service.
    #[error("token was issued for another service (aud)")]
    WrongAudience,
    /// Issued by someone else.
    #[error("token was issued by another issuer (iss)")]
    WrongIssuer,
    /// Past `exp` (plus leeway).
    #[error("token has expired")]
    Expired,
    /// Before `nbf` (minus leeway).
    #[error("token is not valid yet (nbf in the future)")]
    NotYetValid,
}

/// Issues and verifies tokens for one service.
#[derive(Debug, Clone)]
pub struct TokenIssuer {
    /// Signing key.
    pub key: TokenKey,
    /// `iss` written into and required of tokens.
    pub issuer: String,
    /// `aud`: the `service` of the `WWW-Authenticate` challenge.
    pub service: String,
    /// Token lifetime.
    pub ttl: Duration,
}

impl TokenIssuer {
    /// An issuer from its parts.
    pub fn new(key: TokenKey, issuer: &str, service: &str, ttl: Duration) -> Self {
        TokenIssuer {
            key,
            issuer: issuer.to_owned(),
            service: service.to_owned(),
            ttl,
        }
    }

    /// Signs a token for `subject` (`None`: anonymous) granting exactly `granted`.
    pub fn issue(&self, subject: Option<&str>, granted: &[Access], now_secs: u64) -> IssuedToken {
        let ttl = self.ttl.as_secs().max(1);
        let mut jti = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut jti);
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject.unwrap_or_default().to_owned(),
            aud: self.service.clone(),
            exp: now_secs.saturating_add(ttl),
            nbf: now_secs,
            iat: now_secs,
            jti: jti.iter().map(|b| format!("{b:02x}")).collect(),
            access: granted.to_vec(),
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&self.key.0),
        )
        // Serialising plain strings and numbers and HMAC signing have no failure mode.
        .expect("HS256 signing of breakwater claims cannot fail");
        IssuedToken {
            token,
            expires_in: ttl,
            issued_at: now_secs,
        }
    }

    /// Checks signature, algorithm, issuer, audience and time, and returns the claims.
    pub fn verify(&self, token: &str, now_secs: u64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.service]);
        validation.required_spec_claims = ["exp", "nbf", "iss", "aud"]
            .into_iter()
            .map(String::from)
            .collect();
        // Time is checked below against the caller's clock, so tests and callers agree on "now".
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let data = jsonwebtoken::decode::<Claims>(
            token,
            &DecodingKey::from_secret(&self.key.0),
            &validation,
        )
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => TokenError::WrongAlgorithm,
            ErrorKind::InvalidAudience => TokenError::WrongAudience,
            ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
            _ => TokenError::Malformed,
        })?;
        let claims = data.claims;
        if now_secs >= claims.exp.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::Expired);
        }
        if now_secs.saturating_add(LEEWAY_SECS) < claims.nbf {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    const NOW: u64 = 1_800_000_000;

    fn issuer() -> TokenIssuer {
        TokenIssuer::new(
            TokenKey::from_bytes([7; KEY_LEN]),
            "breakwater",
            "cache.example",
            Duration::from_secs(300),
        )
    }

    fn grant() -> Vec<Access> {
        vec![Access::repository(
            "docker.io/library/redis",
            &["pull", "fill"],
        )]
    }

    #[test]
    fn round_trip() {
        let iss = issuer();
        let issued = iss.issue(Some("alice"), &grant(), NOW);
        assert_eq!((issued.expires_in, issued.issued_at), (300, NOW));
        let claims = iss.verify(&issued.token, NOW + 10).unwrap();
        assert_eq!(claims.subject(), Some("alice"));
        assert_eq!(
            (claims.iss.as_str(), claims.aud.as_str()),
            ("breakwater", "cache.example")
        );
        assert_eq!((claims.exp, claims.nbf, claims.iat), (NOW + 300, NOW, NOW));
        assert_eq!(claims.jti.len(), 32);
        assert!(claims.allows("docker.io/library/redis", "pull"));
        assert!(claims.allows("docker.io/library/redis", "fill"));
        assert!(!claims.allows("docker.io/library/redis", "push"));
        assert!(!claims.allows("docker.io/library/nginx", "pull"));
        let anon = iss.verify(&iss.issue(None, &[], NOW).token, NOW).unwrap();
        assert_eq!((anon.subject(), anon.sub.as_str()), (None, ""));
        assert!(anon.access.is_empty());
        // Two tokens for the same request differ (random jti).
        assert_ne!(
            iss.issue(None, &[], NOW).token,
            iss.issue(None, &[], NOW).token
        );
        assert!(!format!("{issued:?}").contains(&issued.token));
    }

    #[test]
    fn tampered_or_foreign_tokens_are_refused() {
        let iss = issuer();
        let token = iss.issue(Some("alice"), &grant(), NOW).token;
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        // Same header and signature, claims changed to grant more.
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
        claims["access"][0]["name"] = "ghcr.io/secret/app".into();
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        assert_eq!(
            iss.verify(&parts.join("."), NOW),
            Err(TokenError::BadSignature)
        );
        // Another key.
        let other = TokenIssuer {
            key: TokenKey::generate(),
            ..issuer()
        };
        assert_eq!(other.verify(&token, NOW), Err(TokenError::BadSignature));
        // alg none with the signature stripped.
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let unsigned = format!("{none_header}.{}.", token.split('.').nth(1).unwrap());
        assert!(matches!(
            iss.verify(&unsigned, NOW),
            Err(TokenError::WrongAlgorithm | TokenError::Malformed)
        ));
    }

    #[test]
    fn wrong_audience_and_issuer() {
        let token = issuer().issue(Some("alice"), &grant(), NOW).token;
        let other_service = TokenIssuer {
            service: "other.example".into(),
            ..issuer()
        };
        assert_eq!(
            other_service.verify(&token, NOW),
            Err(TokenError::WrongAudience)
        );
        let other_issuer = TokenIssuer {
            issuer: "someone-else".into(),
            ..issuer()
        };
        assert_eq!(
            other_issuer.verify(&token, NOW),
            Err(TokenError::WrongIssuer)
        );
    }

    #[test]
    fn time_bounds_with_leeway() {
        let iss = issuer();
        let token = iss.issue(Some("alice"), &grant(), NOW).token;
        assert!(iss.verify(&token, NOW + 300 + LEEWAY_SECS - 1).is_ok());
        assert_eq!(
            iss.verify(&token, NOW + 300 + LEEWAY_SECS),
            Err(TokenError::Expired)
        );
        assert!(iss.verify(&token, NOW - LEEWAY_SECS).is_ok());
        assert_eq!(
            iss.verify(&token, NOW - LEEWAY_SECS - 1),
            Err(TokenError::NotYetValid)
        );
    }

    #[test]
    fn garbage_is_malformed_and_never_echoed() {
        let iss = issuer();
        for garbage in [
            "",
            "a",
            "a.b",
            "a.b.c",
            "....",
            "eyJ.eyJ.sig",
            "not a token at all",
        ] {
            let err = iss.verify(garbage, NOW).unwrap_err();
            assert!(
                matches!(err, TokenError::Malformed | TokenError::BadSignature),
                "{garbage:?}: {err:?}"
            );
        }
        assert_eq!(
            iss.verify(&"a".repeat(MAX_TOKEN_LEN + 1), NOW),
            Err(TokenError::Malformed)
        );
        let secret_looking = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.c2ln";
        let msg = iss.verify(secret_looking, NOW).unwrap_err().to_string();
        assert!(!msg.contains(secret_looking) && !msg.contains("c2VjcmV0"));
        // A correctly signed token whose claims are not ours (no exp) is malformed.
        let foreign = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"iss": "breakwater", "aud": "cache.example", "sub": "x"}),
            &EncodingKey::from_secret(&[7; KEY_LEN]),
        )
        .unwrap();
        assert_eq!(iss.verify(&foreign, NOW), Err(TokenError::Malformed));
        // nbf as a string (type confusion) is malformed, not "no nbf".
        let stringly = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"iss": "breakwater", "aud": "cache.example", "sub": "x",
                "exp": NOW + 100, "nbf": "later", "iat": NOW, "jti": "j"}),
            &EncodingKey::from_secret(&[7; KEY_LEN]),
        )
        .unwrap();
        assert_eq!(iss.verify(&stringly, NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.key");
        let created = TokenKey::load_or_create(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap().len(), KEY_LEN);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(TokenKey::load_or_create(&path).unwrap(), created);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(!format!("{created:?}").contains('7'));
    }

    #[test]
    fn key_file_of_wrong_length_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.key");
        std::fs::write(&path, b"too short\n").unwrap();
        let err = TokenKey::load_or_create(&path).unwrap_err();
        assert!(matches!(err, KeyError::WrongLength { found: 10, .. }));
        assert!(err.to_string().contains("exactly 32"), "{err}");
        let missing_dir = dir.path().join("nope/token.key");
        assert!(matches!(
            TokenKey::load_or_create(&missing_dir),
            Err(KeyError::Io { .. })
        ));
    }
}
