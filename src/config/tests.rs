//! Config parsing: the shipped file, defaults, errors.

use super::*;

#[test]
fn admin_token_from_a_file_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("token");
    std::fs::write(&f, "abc123\n").unwrap();
    let s = Settings::parse(&format!(
        "[server]\nadmin_token_file = \"{}\"\n",
        f.display()
    ))
    .unwrap();
    let t = s.server.admin_token.clone().expect("token");
    assert!(t.matches("abc123") && !t.matches("abc124") && !t.matches("abc12"));
    assert!(!format!("{:?}", s.server).contains("abc123"));
    std::fs::write(&f, " \n").unwrap();
    let e = Settings::parse(&format!(
        "[server]\nadmin_token_file = \"{}\"\n",
        f.display()
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("empty token"), "{e}");
    let e = Settings::parse("[server]\nadmin_token_env = \"BREAKWATER_TEST_UNSET_VAR\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("BREAKWATER_TEST_UNSET_VAR is not set"), "{e}");
    assert!(Settings::embedded_default().server.admin_token.is_none());
}

#[test]
fn embedded_default_has_presets() {
    let s = Settings::embedded_default();
    assert_eq!(s.default_upstream, "docker.io");
    assert_eq!(s.upstreams.len(), 4);
    assert!(s.upstreams["docker.io"].library_namespace);
    assert_eq!(s.storage.root, PathBuf::from("./data"));
}

#[test]
fn shipped_default_config_equals_the_embedded_default() {
    let text = include_str!("../../config/breakwater.toml");
    let file = Settings::parse(text).expect("config/breakwater.toml parses");
    let embedded = Settings::embedded_default();
    assert_eq!(format!("{file:?}"), format!("{embedded:?}"));
}

#[test]
fn tag_policies_first_match_wins() {
    let s = Settings::parse(
        r#"
        [upstreams.local]
        url = "http://127.0.0.1:5555"
        tag_ttl = "1m"
        [[upstreams.local.tag_policies]]
        repositories = "library/*"
        tags = ["v*.*.*"]
        immutable = true
        [[upstreams.local.tag_policies]]
        tags = ["latest"]
        ttl = "10s"
        stale_while_revalidate = true
        max_stale = "1h"
        "#,
    )
    .unwrap();
    let u = &s.upstreams["local"];
    let r = u.tag_rules("library/nginx", "v1.2.3");
    assert!(r.immutable && r.ttl == Duration::from_secs(60));
    assert!(
        !u.tag_rules("team/app", "v1.2.3").immutable,
        "repository pattern applies"
    );
    let r = u.tag_rules("team/app", "latest");
    assert_eq!(r.ttl, Duration::from_secs(10));
    assert!(r.stale_while_revalidate);
    assert_eq!(r.max_stale, Some(Duration::from_secs(3600)));
    assert_eq!(u.tag_rules("team/app", "dev").ttl, Duration::from_secs(60));
    let e = Settings::parse(
        "[upstreams.x]\nurl=\"http://h\"\n[[upstreams.x.tag_policies]]\ntags=[\"a b\"]",
    )
    .unwrap_err();
    assert!(e.to_string().contains("tag_policies[0]: tags"), "{e}");
}

#[test]
fn credentials_from_a_file_or_environment_are_hidden_in_debug_output() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "file-secret\n").unwrap();
    let s = Settings::parse(&format!(
        "[upstreams.x]\nurl = \"http://h\"\nusername = \"u\"\npassword_file = \"{}\"\n",
        file.display()
    ))
    .unwrap();
    match &s.upstreams["x"].credentials {
        Some(Credentials::Basic { username, password }) => {
            assert_eq!((username.as_str(), password.as_str()), ("u", "file-secret"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{:?}", s.upstreams["x"]).contains("file-secret"));
    let e =
        Settings::parse("[upstreams.x]\nurl = \"http://h\"\ntoken_env = \"BW_SURELY_UNSET_VAR\"\n")
            .unwrap_err();
    assert!(e.to_string().contains("BW_SURELY_UNSET_VAR"), "{e}");
}

#[test]
fn custom_upstream_and_errors() {
    let s = Settings::parse(
        r#"
        [routing]
        default_upstream = "local"
        presets = false
        [upstreams.local]
        url = "http://127.0.0.1:5555/"
        tag_ttl = "2s"
        username = "u"
        password = "p"
        "#,
    )
    .unwrap();
    let u = &s.upstreams["local"];
    assert_eq!(u.url, "http://127.0.0.1:5555");
    assert_eq!(u.hosts, vec!["127.0.0.1:5555".to_string()]);
    assert_eq!(u.aliases, vec!["local".to_string()]);
    assert_eq!(u.tag_ttl, Duration::from_secs(2));
    assert!(!format!("{:?}", u.credentials).contains("\"p\""));

    let e = Settings::parse("[routing]\ndefault_upstream = \"nope\"").unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    let e = Settings::parse("[upstreams.x]\naliases=[\"x\"]").unwrap_err();
    assert!(e.to_string().contains("url is required"), "{e}");
    let e = Settings::parse("[server]\nbogus = 1").unwrap_err();
    assert!(e.to_string().contains("bogus"), "{e}");
    let e = Settings::parse("[upstreams.x]\nurl=\"ftp://h\"").unwrap_err();
    assert!(e.to_string().contains("http(s)"), "{e}");
}
