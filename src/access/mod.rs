//! Who the client is and what it may do: the decisions of client access control, built from the
//! `[access]` settings over `breakwater-auth`. No HTTP here: `server::auth` turns requests into
//! these calls and their answers into challenges, tokens and refusals.

pub mod tls;

use crate::config::access::{AccessSettings, Challenge};
use crate::config::{Credentials as UpstreamCredentials, UpstreamSettings};
use breakwater_auth::{
    parse_authorization, Access, Action, Allowance, AuthMethod, Claims, Credentials, Decision,
    FailureLimiter, HtpasswdFile, IdentitySource, IssuedToken, LimiterConfig, Policy, Principal,
    RobotTokens, RuleConfig, TokenIssuer, TokenKey,
};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Robots log in at the token endpoint under this prefix of the token subject, so a robot and a
/// user of the same name never share rules (neither may contain ':').
const ROBOT_SUBJECT: &str = "robot:";
/// The token subject prefix of clients whose credentials only an upstream checks.
const UPSTREAM_SUBJECT: &str = "client:";

/// A client after authentication: its principal and, for a registry token, what it grants.
#[derive(Debug, Clone)]
pub struct Client {
    /// Who it is (anonymous included) and from where.
    pub principal: Principal,
    /// The registry token's claims, when it presented one.
    pub claims: Option<Arc<Claims>>,
    /// Credentials for `credentials = "client"` upstreams: ones this cache does not know (never
    /// a local user's password or a robot token).
    pub upstream_credentials: Option<Arc<UpstreamCredentials>>,
}

impl Client {
    /// How the client is named in logs and audit events.
    pub fn label(&self) -> String {
        match (&self.principal.name, self.principal.method) {
            (None, _) => "anonymous".into(),
            (Some(n), AuthMethod::Robot) => format!("robot:{n}"),
            (Some(n), AuthMethod::Certificate) => format!("cert:{n}"),
            (Some(n), AuthMethod::Upstream) => format!("client:{n}"),
            (Some(n), _) => format!("user:{n}"),
        }
    }

    /// The principal kind, for metric labels.
    pub fn kind(&self) -> &'static str {
        match self.principal.method {
            AuthMethod::Anonymous => "anonymous",
            AuthMethod::Basic | AuthMethod::Token => "user",
            AuthMethod::Robot => "robot",
            AuthMethod::Certificate => "certificate",
            AuthMethod::Upstream => "upstream",
        }
    }
}

/// Why authentication failed.
#[derive(Debug)]
pub enum AuthFailure {
    /// The `Authorization` header cannot be read (400-class, but answered 401 with a challenge).
    Malformed(String),
    /// Wrong credentials or an unacceptable token: 401, never downgraded to anonymous.
    Rejected(String),
    /// Too many failures from this address: 429.
    Throttled(Duration),
}

/// The access layer: credentials, tokens, rules and the failure limiter.
pub struct AccessControl {
    challenge: Challenge,
    realm: Option<String>,
    htpasswd: Option<HtpasswdFile>,
    robots: RobotTokens,
    issuer: TokenIssuer,
    policy: Policy,
    limiter: FailureLimiter,
    groups_of: HashMap<String, Vec<String>>,
    certificates: Option<Arc<tls::ClientIdentities>>,
    metrics: Arc<crate::metrics::Metrics>,
    /// Upstreams with `credentials = "client"`: the only ones an `Upstream` principal may reach.
    client_credential_upstreams: Vec<String>,
    /// Those clients' credentials by the id of the token issued to them (for the token's life).
    passthrough: moka::sync::Cache<String, Arc<UpstreamCredentials>>,
    /// Bearer tokens (registry tokens and robot tokens) already verified, so a pull's many
    /// requests each cost a lookup, not a signature check and a JSON parse.
    bearers: moka::sync::Cache<String, Arc<Verified>, foldhash::fast::RandomState>,
}

/// A bearer token checked once: who it names and until when (unix seconds; 0: a robot token).
struct Verified {
    /// Its `auth_results{method, "ok"}` counter, resolved once.
    ok: prometheus::IntCounter,
    principal: Principal,
    claims: Option<Arc<Claims>>,
    upstream_credentials: Option<Arc<UpstreamCredentials>>,
    expires: u64,
}

impl AccessControl {
    /// Builds the access layer; fails (naming the setting) on a bad rule, an unreadable file, or
    /// a `private` upstream that anonymous clients could read.
    pub fn new(
        s: &AccessSettings,
        root: &Path,
        upstreams: &BTreeMap<String, UpstreamSettings>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Self, String> {
        let rules: Vec<RuleConfig> = s
            .rules
            .iter()
            .map(|r| RuleConfig {
                who: r.who.clone(),
                repositories: r.repositories.clone(),
                actions: r.actions.clone(),
            })
            .collect();
        let policy = Policy::from_config(&rules).map_err(|e| format!("access.rules: {e}"))?;
        for (name, u) in upstreams {
            if u.private && policy.anonymous_may_pull(name) {
                return Err(format!(
                    "upstream {name:?} is private, but an access rule lets anonymous clients pull from it; \
                     refusing to start"
                ));
            }
        }
        let htpasswd = match &s.htpasswd {
            None => None,
            Some(p) => {
                let f = HtpasswdFile::open(p)
                    .map_err(|e| format!("access.htpasswd {}: {e}", p.display()))?;
                if f.snapshot().0.is_empty() {
                    tracing::warn!(file = %p.display(), "access.htpasswd holds no users");
                }
                Some(f)
            }
        };
        let robots = RobotTokens::new(
            s.robots
                .iter()
                .map(|r| (r.name.clone(), r.groups.clone(), r.secret.clone()))
                .collect(),
        )
        .map_err(|e| format!("access.robots: {e}"))?;
        let key_file = s
            .key_file
            .clone()
            .unwrap_or_else(|| root.join("access").join("token.key"));
        if let Some(dir) = key_file.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let key = TokenKey::load_or_create(&key_file)
            .map_err(|e| format!("token key {}: {e}", key_file.display()))?;
        let issuer = TokenIssuer::new(key, "breakwater", &s.service, s.token_ttl);
        let mut groups_of: HashMap<String, Vec<String>> = HashMap::new();
        for (group, members) in &s.groups {
            for m in members {
                groups_of.entry(m.clone()).or_default().push(group.clone());
            }
        }
        let limiter = FailureLimiter::new(LimiterConfig {
            free: s.failures.free,
            max: s.failures.max,
            window: s.failures.window,
            ..LimiterConfig::default()
        });
        let certificates = s.client_certificates.as_ref().map(|c| {
            let source = match c.identity.as_str() {
                "o" => IdentitySource::O,
                "san" => IdentitySource::San,
                _ => IdentitySource::Cn,
            };
            Arc::new(tls::ClientIdentities::new(source))
        });
        Ok(AccessControl {
            challenge: s.challenge,
            realm: s.realm.clone(),
            htpasswd,
            robots,
            issuer,
            policy,
            limiter,
            groups_of,
            certificates,
            metrics,
            client_credential_upstreams: upstreams
                .iter()
                .filter(|(_, u)| u.client_credentials)
                .map(|(n, _)| n.clone())
                .collect(),
            passthrough: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(s.token_ttl)
                .build(),
            bearers: moka::sync::Cache::builder()
                .max_capacity(50_000)
                .time_to_live(s.token_ttl.min(Duration::from_secs(600)))
                // Keys are tokens of a few hundred bytes hashed on every request; only verified
                // tokens are inserted, so a fast seeded hash is enough (no flooding by strangers).
                .build_with_hasher(foldhash::fast::RandomState::default()),
        })
    }

    /// The identities the TLS listener's certificate verifier records (when configured).
    pub fn client_identities(&self) -> Option<Arc<tls::ClientIdentities>> {
        self.certificates.clone()
    }

    /// The challenge this cache answers with.
    pub fn challenge(&self) -> Challenge {
        self.challenge
    }

    /// The token service's name (`service` in challenges, `aud` in tokens).
    pub fn service(&self) -> &str {
        &self.issuer.service
    }

    /// The configured realm, if one is set (else the server derives it from the request).
    pub fn realm(&self) -> Option<&str> {
        self.realm.as_deref()
    }

    fn principal(&self, name: &str, method: AuthMethod, addr: IpAddr) -> Principal {
        let mut p = Principal::named(name, method, addr);
        if let Some(g) = self.groups_of.get(name) {
            p.groups.extend(g.iter().cloned());
        }
        p
    }

    fn count(&self, method: &str, outcome: &str) {
        self.metrics
            .auth_results
            .with_label_values(&[method, outcome])
            .inc();
    }

    /// Authenticates a request: its `Authorization` header, client address, and the SHA-256 of
    /// its TLS client certificate (when one was verified). No header: anonymous (or the
    /// certificate's identity).
    pub async fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        addr: IpAddr,
        cert_digest: Option<&[u8]>,
    ) -> Result<Client, AuthFailure> {
        let cert_identity = match (&self.certificates, cert_digest) {
            (Some(ids), Some(d)) if !d.is_empty() => ids.identity_of(d),
            _ => None,
        };
        if let Some(c) = self.verified_bearer(authorization, addr, &cert_identity) {
            return Ok(c);
        }
        let Some(header) = authorization else {
            return Ok(match cert_identity {
                Some(id) => {
                    self.count("certificate", "ok");
                    let mut p = self.principal(&id, AuthMethod::Certificate, addr);
                    p.cert_identity = Some(id);
                    Client {
                        principal: p,
                        claims: None,
                        upstream_credentials: None,
                    }
                }
                None => {
                    self.count("anonymous", "ok");
                    Client {
                        principal: Principal::anonymous(addr),
                        claims: None,
                        upstream_credentials: None,
                    }
                }
            });
        };
        let creds = parse_authorization(header).map_err(|e| {
            self.count("header", "malformed");
            AuthFailure::Malformed(e.to_string())
        })?;
        if let Allowance::Reject { retry_after } = self.limiter.check(addr, Instant::now()) {
            self.count("any", "throttled");
            return Err(AuthFailure::Throttled(retry_after));
        }
        let result = match creds {
            Credentials::Basic { user, password } => {
                match self.check_password(&user, &password).await {
                    Some(AuthMethod::Robot) => Ok(Client {
                        principal: self
                            .robots
                            .check(&password)
                            .map(|r| r.principal(addr))
                            .unwrap_or_else(|| Principal::anonymous(addr)),
                        claims: None,
                        upstream_credentials: None,
                    }),
                    Some(_) => Ok(Client {
                        principal: self.principal(&user, AuthMethod::Basic, addr),
                        claims: None,
                        upstream_credentials: None,
                    }),
                    // Not an account here: an upstream taking clients' own credentials decides.
                    None if self.passes_through(&user) => Ok(Client {
                        principal: Principal::named(&user, AuthMethod::Upstream, addr),
                        claims: None,
                        upstream_credentials: Some(Arc::new(UpstreamCredentials::Basic {
                            username: user,
                            password,
                        })),
                    }),
                    None => Err(("basic", "wrong user name or password".to_string())),
                }
            }
            Credentials::Bearer(token) => {
                if let Some(robot) = self.robots.check(&token) {
                    Ok(Client {
                        principal: robot.principal(addr),
                        claims: None,
                        upstream_credentials: None,
                    })
                } else {
                    match self.issuer.verify(&token, unix_now()) {
                        Ok(claims) => Ok(Client {
                            principal: self.token_principal(&claims, addr),
                            upstream_credentials: self.passthrough.get(&claims.jti),
                            claims: Some(Arc::new(claims)),
                        }),
                        Err(e) => Err(("token", format!("token refused: {e}"))),
                    }
                }
            }
        };
        match result {
            Ok(mut c) => {
                if let Some(token) = bearer_token(header) {
                    let expires = c.claims.as_ref().map_or(0, |claims| claims.exp);
                    self.bearers.insert(
                        token.to_string(),
                        Arc::new(Verified {
                            ok: self
                                .metrics
                                .auth_results
                                .with_label_values(&[method_label(c.principal.method), "ok"]),
                            principal: c.principal.clone(),
                            claims: c.claims.clone(),
                            upstream_credentials: c.upstream_credentials.clone(),
                            expires,
                        }),
                    );
                }
                self.limiter.record_success(addr);
                self.count(method_label(c.principal.method), "ok");
                c.principal.cert_identity = cert_identity;
                Ok(c)
            }
            Err((method, why)) => {
                self.count(method, "rejected");
                if let Allowance::Delay(d) = self.limiter.record_failure(addr, Instant::now()) {
                    tokio::time::sleep(d).await;
                }
                Err(AuthFailure::Rejected(why))
            }
        }
    }

    /// A bearer token verified before (and not expired since), as this request's client.
    fn verified_bearer(
        &self,
        authorization: Option<&[u8]>,
        addr: IpAddr,
        cert_identity: &Option<String>,
    ) -> Option<Client> {
        let token = bearer_token(authorization?)?;
        let v = self.bearers.get(token)?;
        if v.expires != 0 && v.expires <= unix_now() {
            self.bearers.invalidate(token);
            return None;
        }
        let mut principal = v.principal.clone();
        principal.addr = addr;
        principal.cert_identity = cert_identity.clone();
        v.ok.inc();
        Some(Client {
            principal,
            claims: v.claims.clone(),
            upstream_credentials: v.upstream_credentials.clone(),
        })
    }

    /// Checks Basic credentials: an htpasswd user, or a robot presenting its token as the
    /// password (`docker login -u <robot> -p <token>`). Password hashing runs off the async
    /// threads.
    async fn check_password(&self, user: &str, password: &str) -> Option<AuthMethod> {
        if let Some(r) = self.robots.check(password) {
            return (r.name() == user).then_some(AuthMethod::Robot);
        }
        let file = self.htpasswd.as_ref()?;
        let (users, reload_error) = file.snapshot();
        if let Some(e) = reload_error {
            tracing::warn!(file = %file.path().display(), "htpasswd reload failed, keeping the last good version: {e}");
        }
        let (u, p) = (user.to_string(), password.to_string());
        tokio::task::spawn_blocking(move || users.verify(&u, &p))
            .await
            .unwrap_or(false)
            .then_some(AuthMethod::Basic)
    }

    /// Whether Basic credentials that are not a local account go to a client-credentials
    /// upstream instead of being refused: only when such an upstream exists, and never for a
    /// local user's name (a wrong local password is refused, not passed on).
    fn passes_through(&self, user: &str) -> bool {
        !self.client_credential_upstreams.is_empty()
            && !self
                .htpasswd
                .as_ref()
                .is_some_and(|f| f.snapshot().0.has_user(user))
            && self.robots.groups_of(user).is_none()
    }

    fn token_principal(&self, claims: &Claims, addr: IpAddr) -> Principal {
        if claims.sub.is_empty() {
            return Principal::anonymous(addr);
        }
        if let Some(user) = claims.sub.strip_prefix(UPSTREAM_SUBJECT) {
            return Principal::named(user, AuthMethod::Upstream, addr);
        }
        match claims.sub.strip_prefix(ROBOT_SUBJECT) {
            Some(robot) => {
                let mut p = Principal::named(robot, AuthMethod::Robot, addr);
                p.groups = self
                    .robots
                    .groups_of(robot)
                    .map(<[String]>::to_vec)
                    .unwrap_or_default();
                p
            }
            None => self.principal(&claims.sub, AuthMethod::Token, addr),
        }
    }

    /// Whether the client may do `action` on `repo` (`<upstream>/<name>`), requested under the
    /// name `client_name`: the rules decide, and a registry token must grant it as well.
    pub fn decide(&self, c: &Client, client_name: &str, repo: &str, action: Action) -> Decision {
        if !self.reaches(&c.principal, repo) {
            return Decision::Deny { anonymous: false };
        }
        let granted = match &c.claims {
            Some(claims) => claims.allows(client_name, action.as_str()),
            None => true,
        };
        if granted {
            self.policy.decide(&c.principal, repo, action)
        } else {
            Decision::Deny {
                anonymous: c.principal.is_anonymous(),
            }
        }
    }

    /// Whether the client may pull and whether it may fill `repo` (requested as `client_name`):
    /// the rules decide, and a registry token must grant each as well.
    pub fn rights(&self, c: &Client, client_name: &str, repo: &str) -> (bool, bool) {
        if !self.reaches(&c.principal, repo) {
            return (false, false);
        }
        let (pull, fill) = self.policy.rights(&c.principal, repo);
        match &c.claims {
            Some(claims) => (
                pull && claims.allows(client_name, "pull"),
                fill && claims.allows(client_name, "fill"),
            ),
            None => (pull, fill),
        }
    }

    /// Whether the client may see `repo` at all (catalog listing).
    pub fn may_pull(&self, c: &Client, repo: &str) -> bool {
        self.reaches(&c.principal, repo) && self.policy.allows(&c.principal, repo, Action::Pull)
    }

    /// A principal whose credentials only an upstream checked reaches only those upstreams.
    fn reaches(&self, p: &Principal, repo: &str) -> bool {
        if p.method != AuthMethod::Upstream {
            return true;
        }
        let upstream = repo.split_once('/').map_or(repo, |(u, _)| u);
        self.client_credential_upstreams
            .iter()
            .any(|u| u == upstream)
    }

    /// Issues a token for the requested scopes, granting what the rules allow under any of the
    /// names' resolutions (`resolutions` maps a client name to the `<upstream>/<name>` keys it
    /// may route to; the request path re-checks the exact one).
    pub fn issue(
        &self,
        c: &Client,
        requested: &[Access],
        resolutions: impl Fn(&str) -> Vec<String>,
    ) -> IssuedToken {
        let mut granted: Vec<Access> = Vec::new();
        for req in requested {
            let mut actions: Vec<String> = Vec::new();
            for key in resolutions(&req.name) {
                if !self.reaches(&c.principal, &key) {
                    continue;
                }
                for a in self
                    .policy
                    .grant_with(&c.principal, std::slice::from_ref(req), |_| {
                        Some(key.clone())
                    })
                {
                    for act in a.actions {
                        if !actions.contains(&act) {
                            actions.push(act);
                        }
                    }
                }
            }
            if !actions.is_empty() {
                granted.push(Access {
                    kind: req.kind.clone(),
                    name: req.name.clone(),
                    actions,
                });
            }
        }
        let subject = match (&c.principal.name, c.principal.method) {
            (None, _) => None,
            (Some(n), AuthMethod::Robot) => Some(format!("{ROBOT_SUBJECT}{n}")),
            (Some(n), AuthMethod::Upstream) => Some(format!("{UPSTREAM_SUBJECT}{n}")),
            (Some(n), _) => Some(n.clone()),
        };
        let issued = self.issuer.issue(subject.as_deref(), &granted, unix_now());
        // The upstream needs the client's credentials for as long as the token lives.
        if let Some(creds) = &c.upstream_credentials {
            if let Ok(claims) = self.issuer.verify(&issued.token, unix_now()) {
                self.passthrough.insert(claims.jti, creds.clone());
            }
        }
        issued
    }
}

/// The token of a well-formed `Bearer` header, without parsing anything else.
fn bearer_token(header: &[u8]) -> Option<&str> {
    let rest = header.strip_prefix(b"Bearer ")?;
    let token = std::str::from_utf8(rest).ok()?.trim();
    (!token.is_empty()).then_some(token)
}

fn method_label(m: AuthMethod) -> &'static str {
    match m {
        AuthMethod::Anonymous => "anonymous",
        AuthMethod::Basic => "basic",
        AuthMethod::Token => "token",
        AuthMethod::Certificate => "certificate",
        AuthMethod::Robot => "robot",
        AuthMethod::Upstream => "upstream",
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
