#[test]
fn rights_agree_with_allows() {
    let policy = Policy::from_config(&[
        RuleConfig {
            who: vec!["user:alice".into()],
            repositories: vec!["hub/**".into()],
            actions: vec!["pull".into()],
        },
        RuleConfig {
            who: vec!["group:devs".into(), "anonymous".into()],
            repositories: vec!["hub/library/*".into(), "corp/**".into()],
            actions: vec!["pull".into(), "fill".into()],
        },
    ])
    .unwrap();
    let addr: std::net::IpAddr = "10.0.0.1".parse().unwrap();
    let mut alice = Principal::named("alice", AuthMethod::Basic, addr);
    let anon = Principal::anonymous(addr);
    let bob = Principal::named("bob", AuthMethod::Token, addr);
    let with_group = {
        alice.groups.push("devs".into());
        alice.clone()
    };
    let plain_alice = Principal::named("alice", AuthMethod::Basic, addr);
    for p in [&plain_alice, &with_group, &anon, &bob] {
        for repo in ["hub/library/nginx", "hub/team/app", "corp/x/y", "other/z"] {
            assert_eq!(
                policy.rights(p, repo),
                (
                    policy.allows(p, repo, Action::Pull),
                    policy.allows(p, repo, Action::Fill)
                ),
                "{p:?} {repo}"
            );
        }
    }
    let empty = Policy::from_config(&[]).unwrap();
    assert_eq!(empty.rights(&bob, "a/b"), (true, true));
    assert_eq!(empty.rights(&anon, "a/b"), (false, false));
}

use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

const HOME: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

fn rule(who: &[&str], repos: &[&str], actions: &[&str]) -> RuleConfig {
    let v = |xs: &[&str]| xs.iter().map(|s| (*s).to_owned()).collect();
    RuleConfig {
        who: v(who),
        repositories: v(repos),
        actions: v(actions),
    }
}

fn policy(rules: &[RuleConfig]) -> Policy {
    Policy::from_config(rules).expect("valid rules")
}

fn user(name: &str) -> Principal {
    Principal::named(name, AuthMethod::Basic, HOME)
}

#[test]
fn no_rules_means_authenticated_only() {
    let p = Policy::default();
    assert!(p.allows(&user("alice"), "docker.io/library/redis", Action::Fill));
    assert!(!p.allows(
        &Principal::anonymous(HOME),
        "docker.io/library/redis",
        Action::Pull
    ));
    assert_eq!(
        p.decide(&Principal::anonymous(HOME), "docker.io/x", Action::Pull),
        Decision::Deny { anonymous: true }
    );
    assert!(!p.anonymous_may_pull("docker.io"));
}

#[test]
fn rules_deny_by_default() {
    let p = policy(&[rule(&["user:alice"], &["docker.io/**"], &["pull"])]);
    assert!(p.allows(&user("alice"), "docker.io/library/redis", Action::Pull));
    assert!(!p.allows(&user("alice"), "docker.io/library/redis", Action::Fill));
    assert!(!p.allows(&user("alice"), "ghcr.io/org/app", Action::Pull));
    assert!(!p.allows(&user("bob"), "docker.io/library/redis", Action::Pull));
    assert_eq!(
        p.decide(&user("bob"), "docker.io/x", Action::Pull),
        Decision::Deny { anonymous: false }
    );
}

#[test]
fn anonymous_everyone_authenticated() {
    let p = policy(&[
        rule(&["anonymous"], &["docker.io/library/*"], &["pull"]),
        rule(&["authenticated"], &["**"], &["pull", "fill"]),
        rule(&["everyone"], &["quay.io/public/**"], &["pull"]),
    ]);
    let anon = Principal::anonymous(HOME);
    assert!(p.allows(&anon, "docker.io/library/redis", Action::Pull));
    assert!(!p.allows(&anon, "docker.io/library/redis", Action::Fill));
    assert!(!p.allows(&anon, "docker.io/bitnami/redis", Action::Pull));
    assert!(p.allows(&anon, "quay.io/public/a/b", Action::Pull));
    assert!(p.allows(&user("zed"), "ghcr.io/x/y", Action::Fill));
}

#[test]
fn users_robots_certs_and_groups_are_separate() {
    let p = policy(&[
        rule(&["user:alice"], &["a/**"], &["pull"]),
        rule(&["robot:ci"], &["b/**"], &["pull"]),
        rule(&["cert:spiffe://corp/builder"], &["c/**"], &["pull"]),
        rule(&["group:devs"], &["d/**"], &["pull"]),
    ]);
    let robot_alice = Principal::named("alice", AuthMethod::Robot, HOME);
    assert!(!p.allows(&robot_alice, "a/x", Action::Pull));
    let mut ci = Principal::named("ci", AuthMethod::Robot, HOME);
    assert!(p.allows(&ci, "b/x", Action::Pull));
    assert!(!p.allows(&user("ci"), "b/x", Action::Pull));
    assert!(!p.allows(&ci, "d/x", Action::Pull));
    ci.groups.push("devs".into());
    assert!(p.allows(&ci, "d/x", Action::Pull));
    let mut cert = Principal::named("spiffe://corp/builder", AuthMethod::Certificate, HOME);
    assert!(!p.allows(&cert, "c/x", Action::Pull));
    cert.cert_identity = Some("spiffe://corp/builder".into());
    assert!(p.allows(&cert, "c/x", Action::Pull));
    let token_alice = Principal::named("alice", AuthMethod::Token, HOME);
    assert!(p.allows(&token_alice, "a/x", Action::Pull));
}

#[test]
fn networks_v4_and_v6() {
    let p = policy(&[
        rule(
            &["network:10.0.0.0/8", "network:fd00::/8"],
            &["**"],
            &["pull"],
        ),
        rule(&["network:192.0.2.9"], &["**"], &["fill"]),
    ]);
    let at = |ip: IpAddr| Principal::anonymous(ip);
    assert!(p.allows(&at("10.20.30.40".parse().unwrap()), "x/y", Action::Pull));
    assert!(!p.allows(&at("11.0.0.1".parse().unwrap()), "x/y", Action::Pull));
    assert!(p.allows(&at("fd12:3456::1".parse().unwrap()), "x/y", Action::Pull));
    assert!(!p.allows(&at("2001:db8::1".parse().unwrap()), "x/y", Action::Pull));
    // An IPv4 client on a dual-stack socket shows up IPv4-mapped.
    let mapped = IpAddr::V6(Ipv4Addr::new(10, 1, 1, 1).to_ipv6_mapped());
    assert!(p.allows(&at(mapped), "x/y", Action::Pull));
    assert!(p.allows(&at("192.0.2.9".parse().unwrap()), "x/y", Action::Fill));
    assert!(!p.allows(&at("192.0.2.8".parse().unwrap()), "x/y", Action::Fill));
    assert!(!p.allows(&at(IpAddr::V6(Ipv6Addr::LOCALHOST)), "x/y", Action::Pull));
}

#[test]
fn double_star_patterns() {
    let p = policy(&[rule(
        &["authenticated"],
        &["ghcr.io/org/**", "docker.io/library/*"],
        &["pull"],
    )]);
    let u = user("u");
    assert!(p.allows(&u, "ghcr.io/org/a/b/c", Action::Pull));
    assert!(!p.allows(&u, "ghcr.io/org", Action::Pull));
    assert!(!p.allows(&u, "ghcr.io/other/a", Action::Pull));
    assert!(p.allows(&u, "docker.io/library/redis", Action::Pull));
    assert!(!p.allows(&u, "docker.io/library/a/b", Action::Pull));
}

#[test]
fn validation_errors_name_rule_and_field() {
    let cases = [
        (rule(&[], &["**"], &["pull"]), 1, "who"),
        (rule(&["network:10.0.0.0/33"], &["**"], &["pull"]), 1, "who"),
        (rule(&["network:10.1.2.3/8"], &["**"], &["pull"]), 1, "who"),
        (rule(&["wizard:x"], &["**"], &["pull"]), 1, "who"),
        (rule(&["user:"], &["**"], &["pull"]), 1, "who"),
        (rule(&["everyone"], &["a//b"], &["pull"]), 1, "repositories"),
        (rule(&["everyone"], &[], &["pull"]), 1, "repositories"),
        (rule(&["everyone"], &["**"], &["push"]), 1, "actions"),
    ];
    for (bad, index, field) in cases {
        let ok = rule(&["everyone"], &["**"], &["pull"]);
        let err = Policy::from_config(&[ok, bad.clone()]).unwrap_err();
        assert_eq!((err.index, err.field), (index, field), "{bad:?}: {err}");
    }
    let err = Policy::from_config(&[rule(&["network:nonsense"], &["**"], &["pull"])]).unwrap_err();
    assert!(err.to_string().contains("nonsense"), "{err}");
    assert!(err.to_string().starts_with("auth rule 0: who:"), "{err}");
}

#[test]
fn deserialises_from_toml() {
    #[derive(Deserialize)]
    struct Config {
        rules: Policy,
    }
    let cfg: Config = toml::from_str(
        r#"
        [[rules]]
        who = ["group:ci", "network:10.0.0.0/8"]
        repositories = ["docker.io/**"]
        actions = ["pull", "fill"]
        "#,
    )
    .unwrap();
    assert_eq!(cfg.rules.rules().len(), 1);
    let bad = toml::from_str::<Config>(
        "[[rules]]\nwho = [\"everyone\"]\nrepositories = [\"**\"]\nactions = [\"push\"]\n",
    );
    let msg = bad.err().unwrap().to_string();
    assert!(msg.contains("auth rule 0: actions"), "{msg}");
    let unknown = toml::from_str::<Config>(
        "[[rules]]\nwho = [\"everyone\"]\nrepositories = [\"**\"]\nactions = [\"pull\"]\nextra = 1\n",
    );
    assert!(unknown.is_err());
}

#[test]
fn anonymous_may_pull_is_conservative() {
    let p = policy(&[
        rule(&["user:alice"], &["**"], &["pull"]),
        rule(&["anonymous"], &["docker.io/library/*"], &["pull"]),
        rule(&["network:10.0.0.0/8"], &["q*.io/**"], &["pull"]),
        rule(&["everyone"], &["ghcr.io/**"], &["fill"]),
    ]);
    assert!(p.anonymous_may_pull("docker.io"));
    assert!(p.anonymous_may_pull("quay.io"));
    assert!(!p.anonymous_may_pull("ghcr.io"));
    assert!(!p.anonymous_may_pull("internal"));
    let wide = policy(&[rule(&["everyone"], &["**/private"], &["pull"])]);
    assert!(wide.anonymous_may_pull("internal"));
    let star = policy(&[rule(&["anonymous"], &["*/x"], &["pull"])]);
    assert!(star.anonymous_may_pull("internal"));
}

#[test]
fn grant_intersects_with_policy() {
    let p = policy(&[
        rule(&["user:alice"], &["docker.io/**"], &["pull", "fill"]),
        rule(&["user:alice"], &["ghcr.io/**"], &["pull"]),
    ]);
    let requested = vec![
        Access::repository("docker.io/library/redis", &["pull", "push"]),
        Access::repository("ghcr.io/org/app", &["pull"]),
        Access::repository("quay.io/x/y", &["pull"]),
        Access::repository("docker.io/library/nginx", &["*"]),
        Access::repository("docker.io/library/nginx", &["delete"]),
        Access::new("registry", "catalog", &["*"]),
        Access::new("repository(plugin)", "docker.io/vieux/sshfs", &["pull"]),
    ];
    let granted = p.grant(&user("alice"), &requested);
    assert_eq!(
        granted,
        vec![
            Access::repository("docker.io/library/redis", &["pull", "fill"]),
            Access::repository("ghcr.io/org/app", &["pull"]),
            Access::new(
                "repository(plugin)",
                "docker.io/vieux/sshfs",
                &["pull", "fill"]
            ),
        ]
    );
    assert!(p.grant(&Principal::anonymous(HOME), &requested).is_empty());
}

#[test]
fn grant_with_resolves_names() {
    let p = policy(&[rule(&["user:alice"], &["docker.io/library/*"], &["pull"])]);
    let requested = vec![Access::repository("library/redis", &["pull"])];
    let granted = p.grant_with(&user("alice"), &requested, |n| {
        Some(format!("docker.io/{n}"))
    });
    assert_eq!(
        granted,
        vec![Access::repository("library/redis", &["pull"])]
    );
    assert!(p
        .grant_with(&user("alice"), &requested, |_| None)
        .is_empty());
}

#[test]
fn action_parsing() {
    assert_eq!("pull".parse::<Action>(), Ok(Action::Pull));
    assert_eq!("fill".parse::<Action>(), Ok(Action::Fill));
    assert!("push".parse::<Action>().is_err());
    assert_eq!(
        Action::candidates_for_scope_action("pull"),
        &[Action::Pull, Action::Fill]
    );
    assert!(Action::candidates_for_scope_action("push").is_empty());
}
