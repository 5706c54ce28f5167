//! `Policy::from_config` on rules built from arbitrary text, then decisions for principals and
//! repositories taken from the same text. Never panics, and checks invariants the app relies on:
//! - no rules: exactly the named principals are allowed;
//! - a rule naming `user:X` with a literal repository allows X (Basic and Token) there;
//! - `anonymous_may_pull(upstream)` is conservative: never false when an anonymous client may in
//!   fact pull some `<upstream>/...` repository;
//! - `grant` only narrows what was requested, and grants nothing the policy would refuse.
//!
//! Input: one rule per line, `who,who|pattern,pattern|action,action`; lines starting with `>`
//! name extra repositories to ask about.
#![no_main]

use breakwater_auth::{Access, Action, AuthMethod, Decision, Policy, Principal, RuleConfig};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const ADDRS: [IpAddr; 4] = [
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
    IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
    // 10.1.2.3 as a dual-stack socket reports it.
    IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0x0a01, 0x0203)),
];

fn list(field: Option<&str>) -> Vec<String> {
    match field {
        None | Some("") => Vec::new(),
        Some(f) => f.split(',').map(str::to_owned).collect(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut configs = Vec::new();
    let mut repos: Vec<String> = Vec::new();
    for line in text.lines().take(64) {
        if let Some(repo) = line.strip_prefix('>') {
            repos.push(repo.to_owned());
            continue;
        }
        let mut fields = line.splitn(3, '|');
        configs.push(RuleConfig {
            who: list(fields.next()),
            repositories: list(fields.next()),
            actions: list(fields.next()),
        });
    }
    let Ok(policy) = Policy::from_config(&configs) else {
        return;
    };
    assert_eq!(policy.rules().len(), configs.len());

    // Repositories: the patterns themselves and with wildcards filled in, plus the extra lines.
    for c in &configs {
        for p in &c.repositories {
            repos.push(p.clone());
            repos.push(p.replace("**", "a/b").replace('*', "x"));
            repos.push(p.replace("**", "a").replace('*', ""));
        }
    }
    repos.truncate(64);

    // Principals: anonymous from every address, and one per named `who` entry.
    let mut principals: Vec<Principal> = ADDRS.iter().map(|&a| Principal::anonymous(a)).collect();
    for c in &configs {
        for w in &c.who {
            let Some((kind, value)) = w.split_once(':') else {
                continue;
            };
            let addr = ADDRS[value.len() % ADDRS.len()];
            match kind {
                "user" => {
                    principals.push(Principal::named(value, AuthMethod::Basic, addr));
                    principals.push(Principal::named(value, AuthMethod::Token, addr));
                }
                "robot" => principals.push(Principal::named(value, AuthMethod::Robot, addr)),
                "group" => {
                    let mut p = Principal::named("member", AuthMethod::Robot, addr);
                    p.groups.push(value.to_owned());
                    principals.push(p);
                }
                "cert" => {
                    let mut p = Principal::named(value, AuthMethod::Certificate, addr);
                    p.cert_identity = Some(value.to_owned());
                    principals.push(p);
                }
                "network" => {
                    let host = value.split('/').next().unwrap_or_default();
                    if let Ok(ip) = host.parse::<IpAddr>() {
                        principals.push(Principal::anonymous(ip));
                        principals.push(Principal::named("n", AuthMethod::Upstream, ip));
                    }
                }
                _ => {}
            }
        }
    }
    principals.truncate(32);

    for p in &principals {
        for repo in &repos {
            for action in [Action::Pull, Action::Fill] {
                let allowed = policy.allows(p, repo, action);
                if configs.is_empty() {
                    assert_eq!(allowed, !p.is_anonymous());
                }
                let decision = policy.decide(p, repo, action);
                let expected = if allowed {
                    Decision::Allow
                } else {
                    Decision::Deny {
                        anonymous: p.is_anonymous(),
                    }
                };
                assert_eq!(decision, expected);
                if allowed && action == Action::Pull && p.is_anonymous() && !configs.is_empty() {
                    let upstream = repo.split('/').next().unwrap_or_default();
                    assert!(
                        policy.anonymous_may_pull(upstream),
                        "anonymous may pull {repo:?} but anonymous_may_pull({upstream:?}) is false"
                    );
                }
            }
        }
        // grant: a subset of the request, consistent with allows.
        let requested: Vec<Access> = repos
            .iter()
            .take(8)
            .map(|r| Access::repository(r, &["pull", "push", "fill"]))
            .chain(repos.first().map(|r| Access::new("registry", r, &["pull"])))
            .collect();
        for g in policy.grant(p, &requested) {
            assert_eq!(g.base_kind(), "repository");
            assert!(requested
                .iter()
                .any(|r| r.kind == g.kind && r.name == g.name));
            assert!(!g.actions.is_empty());
            for a in &g.actions {
                let action: Action = a.parse().expect("granted only pull and fill");
                assert!(policy.allows(p, &g.name, action));
                assert!(policy.allows(p, &g.name, Action::Pull));
            }
        }
    }

    // A `user:X` rule over a literal repository allows X there, by Basic and by token.
    for c in &configs {
        for w in &c.who {
            let Some(name) = w.strip_prefix("user:") else {
                continue;
            };
            for repo in c.repositories.iter().filter(|r| !r.contains('*')) {
                for a in &c.actions {
                    let action: Action = a.parse().unwrap();
                    for method in [AuthMethod::Basic, AuthMethod::Token] {
                        let p = Principal::named(name, method, ADDRS[0]);
                        assert!(
                            policy.allows(&p, repo, action),
                            "{name} {method:?} {repo} {a}"
                        );
                    }
                }
            }
        }
    }
});
