//! The `[access]` section: who may pull what from this cache. Only the raw shape and the
//! secrets read at start live here; the rules are parsed and checked by `breakwater-auth` when
//! the access layer is built (`crate::access`).

use super::ConfigError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Client access control. Absent: the registry port is open to anyone who reaches it.
#[derive(Debug, Clone)]
pub struct AccessSettings {
    /// htpasswd file of users (bcrypt or argon2 hashes), reloaded when it changes.
    pub htpasswd: Option<PathBuf>,
    /// The challenge clients get: `token` (breakwater's token service) or `basic`.
    pub challenge: Challenge,
    /// Lifetime of issued tokens.
    pub token_ttl: Duration,
    /// The token service's name (the JWT audience and the challenge's `service`).
    pub service: String,
    /// The realm URL in the challenge; by default `<scheme>://<Host>/token` of the request.
    pub realm: Option<String>,
    /// The token signing key's file (created on first start); default `<root>/access/token.key`.
    pub key_file: Option<PathBuf>,
    /// Groups by name, each a list of user names (robots take theirs from their own `groups`).
    pub groups: BTreeMap<String, Vec<String>>,
    /// Static bearer tokens for robots (CI runners).
    pub robots: Vec<Robot>,
    /// Client certificates on the TLS listener.
    pub client_certificates: Option<ClientCertificates>,
    /// The rules, as written (`who`, `repositories`, `actions`).
    pub rules: Vec<RawRule>,
    /// Repeated authentication failures from one address: free tries, then back-off, then 429.
    pub failures: FailureLimits,
    /// How long an upstream's acceptance of a client's own credentials is trusted
    /// (`credentials = "client"` upstreams).
    pub client_credentials_ttl: Duration,
}

/// Which challenge the registry port answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// `Bearer realm=…/token`: anonymous clients get limited tokens; the way docker, containerd,
    /// podman and skopeo mix anonymous pulls with logins.
    Token,
    /// `Basic`: every request carries the user's password (simple setups, curl).
    Basic,
}

/// A robot: a name, its groups, and its static token (never logged).
#[derive(Clone)]
pub struct Robot {
    /// Name used in rules (`robot:<name>`) and logs.
    pub name: String,
    /// Groups the robot belongs to.
    pub groups: Vec<String>,
    /// The token the robot presents.
    pub secret: String,
}

impl std::fmt::Debug for Robot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Robot({}, groups {:?}, <hidden>)",
            self.name, self.groups
        )
    }
}

/// Client certificate checking on the TLS listener.
#[derive(Debug, Clone)]
pub struct ClientCertificates {
    /// PEM bundle of the CAs that sign client certificates.
    pub ca: PathBuf,
    /// Whether a TLS client without a certificate is refused at the handshake.
    pub required: bool,
    /// Where the identity comes from: `cn`, `o` or `san`.
    pub identity: String,
}

/// A rule as written; `breakwater-auth` parses and validates it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Principals: `anonymous`, `authenticated`, `everyone`, `user:…`, `group:…`, `robot:…`,
    /// `cert:…`, `network:CIDR`.
    pub who: Vec<String>,
    /// `<upstream>/<name>` patterns (`*`, `**`).
    pub repositories: Vec<String>,
    /// `pull` and/or `fill`.
    pub actions: Vec<String>,
}

/// Limits on repeated authentication failures from one client address.
#[derive(Debug, Clone, Copy)]
pub struct FailureLimits {
    /// Failures allowed before answers slow down.
    pub free: u32,
    /// Failures after which the address gets 429 until the window passes.
    pub max: u32,
    /// The window failures are counted in.
    pub window: Duration,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccess {
    htpasswd: Option<PathBuf>,
    challenge: Option<String>,
    #[serde(default, with = "humantime_serde")]
    token_ttl: Option<Duration>,
    service: Option<String>,
    realm: Option<String>,
    key_file: Option<PathBuf>,
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    robots: Vec<RawRobot>,
    client_certificates: Option<RawClientCertificates>,
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    failures: RawFailures,
    #[serde(default, with = "humantime_serde")]
    client_credentials_ttl: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRobot {
    name: String,
    #[serde(default)]
    groups: Vec<String>,
    token_file: Option<PathBuf>,
    token_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClientCertificates {
    ca: PathBuf,
    #[serde(default)]
    required: bool,
    identity: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFailures {
    free: Option<u32>,
    max: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    window: Option<Duration>,
}

impl RawAccess {
    /// The settings, with robot secrets read; errors name the setting.
    pub(super) fn resolve(self) -> Result<AccessSettings, ConfigError> {
        let invalid = |m: String| ConfigError::Invalid(format!("access.{m}"));
        let challenge = match self.challenge.as_deref().unwrap_or("token") {
            "token" => Challenge::Token,
            "basic" => Challenge::Basic,
            other => {
                return Err(invalid(format!(
                    "challenge = {other:?}: expected \"token\" or \"basic\""
                )))
            }
        };
        let mut robots = Vec::new();
        for (i, r) in self.robots.into_iter().enumerate() {
            let what = format!("robots[{i}] ({})", r.name);
            if r.name.is_empty() || r.name.contains(':') {
                return Err(invalid(format!(
                    "{what}: name must be non-empty, without ':'"
                )));
            }
            let secret = super::admin_token::read_secret(
                r.token_file,
                r.token_env,
                &format!("access.{what}"),
            )?
            .ok_or_else(|| invalid(format!("{what}: token_file or token_env is required")))?;
            robots.push(Robot {
                name: r.name,
                groups: r.groups,
                secret,
            });
        }
        let client_certificates = match self.client_certificates {
            None => None,
            Some(c) => {
                let identity = c.identity.unwrap_or_else(|| "cn".into());
                if !matches!(identity.as_str(), "cn" | "o" | "san") {
                    return Err(invalid(format!(
                        "client_certificates.identity = {identity:?}: expected \"cn\", \"o\" or \"san\""
                    )));
                }
                Some(ClientCertificates {
                    ca: c.ca,
                    required: c.required,
                    identity,
                })
            }
        };
        let failures = FailureLimits {
            free: self.failures.free.unwrap_or(5),
            max: self.failures.max.unwrap_or(20),
            window: self.failures.window.unwrap_or(Duration::from_secs(300)),
        };
        if failures.max <= failures.free {
            return Err(invalid(
                "failures.max must be greater than failures.free".into(),
            ));
        }
        Ok(AccessSettings {
            htpasswd: self.htpasswd,
            challenge,
            token_ttl: self.token_ttl.unwrap_or(Duration::from_secs(300)),
            service: self.service.unwrap_or_else(|| "breakwater".into()),
            realm: self.realm,
            key_file: self.key_file,
            groups: self.groups,
            robots,
            client_certificates,
            rules: self.rules,
            failures,
            client_credentials_ttl: self
                .client_credentials_ttl
                .unwrap_or(Duration::from_secs(300)),
        })
    }
}
