//! Access rules: who may pull (serve what is cached) and fill (cause an upstream fetch) which
//! `<upstream>/<name>` repositories. No rules: any authenticated principal may do everything and
//! anonymous nothing. Any rule at all: default deny, allowed when some rule matches.

use crate::scope::Access;
use breakwater_oci::pattern::{PatternError, RepoPattern};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// What a request wants to do to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Serve what is already cached (manifests, blobs, tags).
    Pull,
    /// Cause an upstream fetch (a cache miss, a tag revalidation that moves).
    Fill,
}

impl Action {
    /// The rule action name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Fill => "fill",
        }
    }

    /// Which cache actions a registry scope action could stand for; the granting logic decides
    /// which of them the principal actually gets. Write actions map to nothing: read-only cache.
    pub fn candidates_for_scope_action(scope_action: &str) -> &'static [Action] {
        match scope_action {
            "pull" => &[Action::Pull, Action::Fill],
            "fill" => &[Action::Fill],
            _ => &[],
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;

    /// Parses `pull` or `fill`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pull" => Ok(Action::Pull),
            "fill" => Ok(Action::Fill),
            other => Err(format!(
                "unknown action {other:?}; expected \"pull\" or \"fill\""
            )),
        }
    }
}

/// How a principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// No credentials.
    Anonymous,
    /// htpasswd user with `Basic` credentials.
    Basic,
    /// A registry token issued by this cache (the subject is a user).
    Token,
    /// A verified TLS client certificate.
    Certificate,
    /// A static robot token.
    Robot,
    /// Basic credentials this cache does not know, passed on to an upstream that takes each
    /// client's own credentials; that upstream decides. Only `authenticated`, `everyone` and
    /// `network:` rules can match it.
    Upstream,
}

/// The client a decision is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// User or robot name; `None` means anonymous.
    pub name: Option<String>,
    /// Groups (robots' configured groups; users have none unless the app adds them).
    pub groups: Vec<String>,
    /// How the principal authenticated.
    pub method: AuthMethod,
    /// Identity taken from a verified client certificate, if one was presented.
    pub cert_identity: Option<String>,
    /// Client address (after any trusted-proxy handling the app does).
    pub addr: IpAddr,
}

impl Principal {
    /// An anonymous client at `addr`.
    pub fn anonymous(addr: IpAddr) -> Self {
        Principal {
            name: None,
            groups: Vec::new(),
            method: AuthMethod::Anonymous,
            cert_identity: None,
            addr,
        }
    }

    /// A named principal authenticated by `method`.
    pub fn named(name: &str, method: AuthMethod, addr: IpAddr) -> Self {
        Principal {
            name: Some(name.to_owned()),
            groups: Vec::new(),
            method,
            cert_identity: None,
            addr,
        }
    }

    /// True when the principal has no name (no credentials were proven).
    pub fn is_anonymous(&self) -> bool {
        self.name.is_none()
    }
}

/// One entry of a rule's `who` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// `anonymous`: clients without credentials.
    Anonymous,
    /// `authenticated`: any principal with a name.
    Authenticated,
    /// `everyone`: every client.
    Everyone,
    /// `user:NAME`: an htpasswd user (Basic, or a token issued to that user).
    User(String),
    /// `group:NAME`: a principal in that group.
    Group(String),
    /// `robot:NAME`: a robot token of that name.
    Robot(String),
    /// `cert:IDENTITY`: a client certificate with that identity.
    Cert(String),
    /// `network:CIDR`: any client (anonymous or not) from that network.
    Network(IpNet),
}

impl Who {
    /// True when this entry covers `p`.
    pub fn matches(&self, p: &Principal) -> bool {
        let named = |n: &str, methods: &[AuthMethod]| {
            p.name.as_deref() == Some(n) && methods.contains(&p.method)
        };
        match self {
            Who::Anonymous => p.is_anonymous(),
            Who::Authenticated => !p.is_anonymous(),
            Who::Everyone => true,
            // Users, robots and certificates are separate namespaces: a robot named "alice" or a
            // certificate with CN "alice" is not the htpasswd user alice.
            Who::User(n) => named(n, &[AuthMethod::Basic, AuthMethod::Token]),
            Who::Robot(n) => named(n, &[AuthMethod::Robot]),
            Who::Group(g) => !p.is_anonymous() && p.groups.iter().any(|x| x == g),
            Who::Cert(id) => p.cert_identity.as_deref() == Some(id.as_str()),
            Who::Network(net) => net.contains(&canonical_ip(p.addr)),
        }
    }

    /// True for entries an unauthenticated client can satisfy.
    pub fn admits_anonymous(&self) -> bool {
        matches!(self, Who::Anonymous | Who::Everyone | Who::Network(_))
    }
}

/// IPv4-mapped IPv6 (`::ffff:10.0.0.1`, how dual-stack sockets report IPv4 peers) as IPv4,
/// so `network:10.0.0.0/8` matches it.
pub fn canonical_ip(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

impl FromStr for Who {
    type Err = String;

    /// Parses `anonymous`, `authenticated`, `everyone`, or `user:`/`group:`/`robot:`/`cert:`/`network:`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "anonymous" => return Ok(Who::Anonymous),
            "authenticated" => return Ok(Who::Authenticated),
            "everyone" => return Ok(Who::Everyone),
            _ => {}
        }
        let (kind, value) = s.split_once(':').ok_or_else(|| {
            format!("{s:?} is not anonymous, authenticated, everyone or kind:value")
        })?;
        if value.is_empty() {
            return Err(format!("{s:?} has an empty {kind} name"));
        }
        let value_owned = value.to_owned();
        match kind {
            "user" => Ok(Who::User(value_owned)),
            "group" => Ok(Who::Group(value_owned)),
            "robot" => Ok(Who::Robot(value_owned)),
            "cert" => Ok(Who::Cert(value_owned)),
            "network" => parse_network(value).map(Who::Network),
            other => Err(format!(
                "unknown kind {other:?} in {s:?}; expected user, group, robot, cert or network"
            )),
        }
    }
}

/// A CIDR, or a bare address meaning just that host.
fn parse_network(value: &str) -> Result<IpNet, String> {
    if let Ok(net) = value.parse::<IpNet>() {
        // `10.1.2.3/8` is almost certainly a typo for `10.0.0.0/8`; refuse rather than guess.
        if net.trunc() != net {
            return Err(format!(
                "network {value:?} has host bits set; did you mean {}?",
                net.trunc()
            ));
        }
        return Ok(net);
    }
    value
        .parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("network {value:?} is not a valid CIDR (e.g. 10.0.0.0/8, fd00::/8)"))
}

/// A rule as written in configuration: all strings, validated by [`Rule::from_config`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Who the rule is for (any entry may match).
    pub who: Vec<String>,
    /// `<upstream>/<name>` patterns with `*` and `**` (any may match).
    pub repositories: Vec<String>,
    /// `pull` and/or `fill`.
    pub actions: Vec<String>,
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Who the rule is for.
    pub who: Vec<Who>,
    /// Repositories it covers.
    pub repositories: Vec<RepoPattern>,
    /// What it allows.
    pub actions: Vec<Action>,
}

/// A rule that failed validation: which rule (0-based, as in the config list) and which field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("auth rule {index}: {field}: {message}")]
pub struct RuleError {
    /// Position of the rule in the list, from 0.
    pub index: usize,
    /// `who`, `repositories` or `actions`.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl Rule {
    /// Validates the `index`-th configured rule.
    pub fn from_config(index: usize, config: &RuleConfig) -> Result<Rule, RuleError> {
        let err = |field, message: String| RuleError {
            index,
            field,
            message,
        };
        for (field, list) in [
            ("who", &config.who),
            ("repositories", &config.repositories),
            ("actions", &config.actions),
        ] {
            if list.is_empty() {
                return Err(err(field, "must not be empty".into()));
            }
        }
        let who = config
            .who
            .iter()
            .map(|w| w.parse::<Who>().map_err(|m| err("who", m)))
            .collect::<Result<_, _>>()?;
        let repositories = config
            .repositories
            .iter()
            .map(|p| {
                RepoPattern::new(p)
                    .map_err(|e: PatternError| err("repositories", format!("pattern {p:?} {e}")))
            })
            .collect::<Result<_, _>>()?;
        let actions = config
            .actions
            .iter()
            .map(|a| a.parse::<Action>().map_err(|m| err("actions", m)))
            .collect::<Result<_, _>>()?;
        Ok(Rule {
            who,
            repositories,
            actions,
        })
    }

    /// True when the rule covers this principal, repository and action.
    pub fn matches(&self, p: &Principal, repo: &str, action: Action) -> bool {
        self.actions.contains(&action)
            && self.who.iter().any(|w| w.matches(p))
            && self.repositories.iter().any(|r| r.matches(repo))
    }
}

/// The outcome of a policy decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Refused; `anonymous` tells the app to challenge for credentials (401) rather than 403.
    Deny {
        /// The principal was anonymous.
        anonymous: bool,
    },
}

/// The configured rules.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(try_from = "Vec<RuleConfig>")]
pub struct Policy {
    rules: Vec<Rule>,
}

impl TryFrom<Vec<RuleConfig>> for Policy {
    type Error = RuleError;

    fn try_from(rules: Vec<RuleConfig>) -> Result<Self, Self::Error> {
        Policy::from_config(&rules)
    }
}

impl Policy {
    /// Validates configured rules in order; the first bad one is reported.
    pub fn from_config(rules: &[RuleConfig]) -> Result<Policy, RuleError> {
        let rules = rules
            .iter()
            .enumerate()
            .map(|(i, r)| Rule::from_config(i, r))
            .collect::<Result<_, _>>()?;
        Ok(Policy { rules })
    }

    /// A policy from already validated rules.
    pub fn new(rules: Vec<Rule>) -> Policy {
        Policy { rules }
    }

    /// The rules, in configured order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// True when `p` may do `action` on `repo` (`<upstream>/<name>`).
    pub fn allows(&self, p: &Principal, repo: &str, action: Action) -> bool {
        if self.rules.is_empty() {
            // Without rules, authentication is the whole policy.
            return !p.is_anonymous();
        }
        self.rules.iter().any(|r| r.matches(p, repo, action))
    }

    /// Whether `p` may pull and whether it may fill `repo`, in one pass over the rules (the
    /// request path needs both; each rule's principal and pattern are matched once).
    pub fn rights(&self, p: &Principal, repo: &str) -> (bool, bool) {
        if self.rules.is_empty() {
            let ok = !p.is_anonymous();
            return (ok, ok);
        }
        let (mut pull, mut fill) = (false, false);
        for r in &self.rules {
            let wanted_pull = !pull && r.actions.contains(&Action::Pull);
            let wanted_fill = !fill && r.actions.contains(&Action::Fill);
            if (wanted_pull || wanted_fill)
                && r.who.iter().any(|w| w.matches(p))
                && r.repositories.iter().any(|pat| pat.matches(repo))
            {
                pull |= wanted_pull;
                fill |= wanted_fill;
                if pull && fill {
                    break;
                }
            }
        }
        (pull, fill)
    }

    /// [`Policy::allows`] as a decision that says whether to challenge or forbid.
    pub fn decide(&self, p: &Principal, repo: &str, action: Action) -> Decision {
        if self.allows(p, repo, action) {
            Decision::Allow
        } else {
            Decision::Deny {
                anonymous: p.is_anonymous(),
            }
        }
    }

    /// Could any rule let an unauthenticated client (anonymous, everyone or a network) pull
    /// something under `upstream`? Conservative: a pattern counts when its first segment matches
    /// the upstream name or is a wildcard, whatever the rest of it says.
    pub fn anonymous_may_pull(&self, upstream: &str) -> bool {
        self.rules.iter().any(|rule| {
            rule.actions.contains(&Action::Pull)
                && rule.who.iter().any(Who::admits_anonymous)
                && rule
                    .repositories
                    .iter()
                    .any(|p| first_segment_may_match(p, upstream))
        })
    }

    /// The requested scopes cut down to what `p` may do, with names used as `<upstream>/<name>`.
    pub fn grant(&self, p: &Principal, requested: &[Access]) -> Vec<Access> {
        self.grant_with(p, requested, |name| Some(name.to_owned()))
    }

    /// Like [`Policy::grant`], but `resolve` maps each scope name to the `<upstream>/<name>` the
    /// rules are written against (e.g. adding the default upstream); `None` grants nothing.
    /// Granted entries keep the name the client asked for, since the client compares it.
    ///
    /// `pull` is granted when the principal may Pull; `fill` is added (also for a plain `pull`
    /// request) when it may Pull and Fill, so a token carries the fill decision to the request
    /// path. Every other action (push, delete, `*`) and every non-repository type is dropped.
    pub fn grant_with(
        &self,
        p: &Principal,
        requested: &[Access],
        resolve: impl Fn(&str) -> Option<String>,
    ) -> Vec<Access> {
        let mut granted = Vec::new();
        for access in requested {
            if access.base_kind() != "repository" {
                continue;
            }
            let Some(repo) = resolve(&access.name) else {
                continue;
            };
            let wants_pull = access.has_action("pull");
            let wants_fill = wants_pull || access.has_action("fill");
            let may_pull = (wants_pull || wants_fill) && self.allows(p, &repo, Action::Pull);
            let mut actions = Vec::new();
            if wants_pull && may_pull {
                actions.push("pull".to_owned());
            }
            if wants_fill && may_pull && self.allows(p, &repo, Action::Fill) {
                actions.push("fill".to_owned());
            }
            if !actions.is_empty() {
                granted.push(Access {
                    kind: access.kind.clone(),
                    name: access.name.clone(),
                    actions,
                });
            }
        }
        granted
    }
}

/// True when `pattern` might match some repository under `upstream` (upstream names have no `/`).
fn first_segment_may_match(pattern: &RepoPattern, upstream: &str) -> bool {
    let first = pattern.as_str().split('/').next().unwrap_or_default();
    // A one-segment pattern built from the first segment reuses the oci glob rules; `**` there
    // matches any single segment too.
    RepoPattern::new(first).is_ok_and(|p| p.matches(upstream))
}

#[cfg(test)]
mod tests;
