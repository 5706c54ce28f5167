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

mod lifecycle_sections {
    use crate::config::Settings;
    use std::time::Duration;

    #[test]
    fn lifecycle_sections_parse_json_strings_and_tables() {
        let s = Settings::parse(
            r#"
            [storage]
            max_bytes = "2GiB"
            max_blob_bytes = "1GiB"
            high_water = 95
            low_water = 70
            [lifecycle]
            apply_interval = "0s"
            default_policy = '{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":7},"action":{"type":"expire"}}]}'
            [[lifecycle.policies]]
            repositories = "docker.io/library/*"
            [lifecycle.policies.policy]
            rules = [{ rulePriority = 1, selection = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = 10 }, action = { type = "expire" } }]
            [gc]
            interval = "5m"
            grace = "30s"
            "#,
        )
        .unwrap();
        let l = &s.lifecycle;
        assert_eq!(l.apply_interval, Duration::ZERO);
        assert_eq!(
            (l.gc_interval, l.gc_grace),
            (Duration::from_secs(300), Duration::from_secs(30))
        );
        assert_eq!(l.default_policy.as_ref().unwrap().rules.len(), 1);
        assert_eq!(l.policies[0].repositories.as_str(), "docker.io/library/*");
        assert_eq!(l.policies[0].policy.rules[0].selection.count_number, 10);
        assert_eq!(s.storage.max_blob_bytes, Some(1 << 30));
        let q = s.storage.quota.as_ref().unwrap();
        assert_eq!(q.max_bytes, 2 * 1024 * 1024 * 1024);
        assert_eq!(q.high_water_bytes(), (q.max_bytes as f64 * 0.95) as u64);
    }

    #[test]
    fn lifecycle_config_errors_name_the_setting() {
        let err = |text: &str| Settings::parse(text).unwrap_err().to_string();
        let e = err("[[lifecycle.policies]]\nrepositories = \"a/*\"\npolicy = '{\"rules\":[{\"rulePriority\":1,\"selection\":{\"tagStatus\":\"tagged\",\"countType\":\"imageCountMoreThan\",\"countNumber\":1},\"action\":{\"type\":\"expire\"}}]}'");
        assert!(
            e.contains("lifecycle.policies[0].policy") && e.contains("rule 1"),
            "{e}"
        );
        assert!(
            e.contains("tagPrefixList") || e.contains("tagPatternList"),
            "{e}"
        );
        let e = err("[[lifecycle.policies]]\nrepositories = \"a//b\"\npolicy = '{}'");
        assert!(e.contains("lifecycle.policies[0].repositories"), "{e}");
        let e = err("[lifecycle]\ndefault_policy = 'not json'");
        assert!(
            e.contains("lifecycle.default_policy") && e.contains("not valid JSON"),
            "{e}"
        );
        let e = err("[gc]\ngrace = \"10m\"\nspeed = 3");
        assert!(e.contains("speed"), "{e}");
        let e = err("[storage]\nmax_bytes = \"lots\"");
        assert!(e.contains("not a size"), "{e}");
        let e = err("[storage]\nhigh_water = 50\nlow_water = 60");
        assert!(e.contains("low_water"), "{e}");
        let e = err("[server]\nlisten = \"127.0.0.1:7000\"\nadmin_listen = \"127.0.0.1:7000\"");
        assert!(e.contains("same address"), "{e}");
        let e = err("[log]\nformat = \"xml\"");
        assert!(e.contains("log.format"), "{e}");
        let e = err("[log]\nmax_bytes = \"1MiB\"");
        assert!(e.contains("log.max_bytes") && e.contains("path"), "{e}");
        let e = err("[log]\nlevel = \"=\"");
        assert!(e.contains("log.level"), "{e}");
        let e = err("[upstreams.x]\nurl = \"http://127.0.0.1:1\"\ncredentials = \"client\"");
        assert!(e.contains("needs an [access] section"), "{e}");
    }
}

#[test]
fn an_upstream_that_is_another_breakwater_names_its_registry_with_ns() {
    let s = Settings::parse(
        "[upstreams.\"docker.io\"]\nurl = \"http://office.example:5000\"\nns = \"docker.io\"\n",
    )
    .unwrap();
    let hub = &s.upstreams["docker.io"];
    assert_eq!(hub.ns.as_deref(), Some("docker.io"));
    assert_eq!(hub.url, "http://office.example:5000");
    assert!(
        hub.hosts.iter().any(|h| h == "docker.io"),
        "preset hosts kept"
    );
    assert!(s.upstreams["quay.io"].ns.is_none());
    for bad in ["", "docker.io/library", "a b", "x?y=1"] {
        let e = Settings::parse(&format!(
            "[upstreams.x]\nurl = \"http://o:5000\"\nns = \"{bad}\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("ns") && e.contains("registry host name"),
            "{bad:?}: {e}"
        );
    }
}

#[test]
fn the_index_backend_and_its_postgres_settings() {
    let s = Settings::parse("").unwrap();
    assert!(matches!(s.storage.index, IndexBackend::Sqlite));
    let s = Settings::parse(
        "[storage]\nindex = \"postgres\"\n[storage.postgres]\nurl = \"postgres://bw:hunter2@db/bw\"\npool_size = 3\nacquire_timeout = \"2s\"\n",
    )
    .unwrap();
    let IndexBackend::Postgres(pg) = &s.storage.index else {
        panic!("postgres expected: {:?}", s.storage.index);
    };
    assert_eq!(pg.url, "postgres://bw:hunter2@db/bw");
    assert_eq!(
        (pg.pool_size, pg.acquire_timeout),
        (3, Duration::from_secs(2))
    );
    assert!(!format!("{:?}", s.storage).contains("hunter2"));
    let err = |text: &str| Settings::parse(text).unwrap_err().to_string();
    assert!(err("[storage]\nindex = \"mysql\"\n").contains("\"sqlite\" or \"postgres\""));
    assert!(err("[storage]\nindex = \"postgres\"\n").contains("storage.postgres.url"));
    assert!(err(
        "[storage]\nindex = \"postgres\"\n[storage.postgres]\nurl = \"x\"\nurl_env = \"PATH\"\n"
    )
    .contains("set one of"));
    assert!(err(
        "[storage]\nindex = \"postgres\"\n[storage.postgres]\nurl = \"x\"\npool_size = 0\n"
    )
    .contains("pool_size"));
    assert!(err("[storage.postgres]\nurll = \"x\"\n").contains("urll"));
}
