use super::*;

/// Written by `htpasswd -nbB alice 'correct horse'` (apache2-utils 2.4).
const APACHE_LINE: &str = "alice:$2y$05$/nNxFCCqf9GFKL1BwBfRGuFJgxnaDKpxRyOFzSPxgQzL/ptRhlrSy";

fn argon2_hash(password: &str) -> String {
    // Small parameters keep the test fast; verification reads them from the hash.
    let params = Params::new(1024, 1, 1, None).unwrap();
    let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

#[test]
fn apache_bcrypt_line_verifies() {
    let db = Htpasswd::parse(APACHE_LINE).unwrap();
    assert_eq!(db.len(), 1);
    assert!(db.verify("alice", "correct horse"));
    assert!(!db.verify("alice", "correct horse "));
    assert!(!db.verify("alice", ""));
    assert!(!db.verify("bob", "correct horse"));
}

#[test]
fn generated_bcrypt_and_argon2_with_comments_and_blank_lines() {
    let b = bcrypt::hash("pw-bob", 4).unwrap();
    let b2b = bcrypt::hash_with_result("pw-dave", 4)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoB);
    let text = format!(
        "# users\n\nbob:{b}\r\n  carol:{}\n   # indented comment\ndave:{b2b}\n",
        argon2_hash("pw-carol")
    );
    let db = Htpasswd::parse(&text).unwrap();
    assert_eq!(db.len(), 3);
    assert!(db.verify("bob", "pw-bob"));
    assert!(db.verify("carol", "pw-carol"));
    assert!(db.verify("dave", "pw-dave"));
    assert!(!db.verify("carol", "pw-bob"));
    assert!(!db.verify("bob", "pw-carol"));
    assert!(!db.verify("nobody", "pw-bob"));
}

#[test]
fn unsupported_schemes_name_line_user_and_accepted_schemes() {
    for (hash, scheme) in [
        ("$apr1$r5ZujGrX$njEwxOPIIVFbV/kJqjD8e.", "MD5"),
        ("{SHA}EfatjsUqKYSrqv18O1FlA3hcIHI=", "SHA-1"),
        ("rqXexS6ZhobKA", "crypt"),
        ("plaintext", "plain"),
        ("$6$salt$abc", "SHA-crypt"),
    ] {
        let text = format!(
            "# c\nok:{}\nmallory:{hash}\n",
            bcrypt::hash("x", 4).unwrap()
        );
        let err = Htpasswd::parse(&text).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, HtpasswdError::UnsupportedScheme { line: 3, .. }),
            "{msg}"
        );
        assert!(msg.contains("mallory") && msg.contains(scheme), "{msg}");
        assert!(msg.contains("bcrypt") && msg.contains("argon2"), "{msg}");
        assert!(!msg.contains(hash), "hash echoed: {msg}");
    }
}

#[test]
fn malformed_lines_are_refused() {
    let cases = [
        "no-colon-here",
        ":$2y$05$/nNxFCCqf9GFKL1BwBfRGuFJgxnaDKpxRyOFzSPxgQzL/ptRhlrSy",
        "u:$2y$05$tooshort",
        "u:$2y$31$/nNxFCCqf9GFKL1BwBfRGuFJgxnaDKpxRyOFzSPxgQzL/ptRhlrSy",
        "u:$argon2id$v=19$m=1024,t=1,p=1$bad!salt",
        "u:$argon2id$v=19$m=999999999,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ];
    for line in cases {
        let err = Htpasswd::parse(line).unwrap_err();
        assert!(
            matches!(err, HtpasswdError::Malformed { line: 1, .. }),
            "{line}: {err}"
        );
        let msg = err.to_string();
        assert!(
            !msg.contains("tooshort") && !msg.contains("bad!salt"),
            "{msg}"
        );
    }
    let dup = format!("{APACHE_LINE}\n{APACHE_LINE}\n");
    assert!(matches!(
        Htpasswd::parse(&dup),
        Err(HtpasswdError::DuplicateUser {
            line: 2,
            first: 1,
            ..
        })
    ));
    assert!(Htpasswd::parse("").unwrap().is_empty());
}

#[test]
fn unknown_users_take_as_long_as_known_ones() {
    let db = Htpasswd::parse(&format!("u:{}\n", bcrypt::hash("pw", 8).unwrap())).unwrap();
    db.verify("nobody", "warm-up"); // builds the dummy hash once
    let time = |user: &str| {
        let start = Instant::now();
        for _ in 0..3 {
            assert!(!db.verify(user, "wrong"));
        }
        start.elapsed()
    };
    let (known, unknown) = (time("u"), time("nobody"));
    // Without the dummy an unknown user would answer in microseconds; with it, in about
    // the time of a real check. Loose bound: only "also a full bcrypt" is asserted.
    assert!(unknown * 4 > known, "{known:?} vs {unknown:?}");
    let (scheme, dummy) = db.dummy.get().unwrap();
    assert_eq!(*scheme, Scheme::Bcrypt);
    assert!(dummy.starts_with("$2b$08$"), "{dummy}");
}

#[test]
fn argon2_files_get_an_argon2_dummy() {
    let db = Htpasswd::parse(&format!("c:{}\n", argon2_hash("x"))).unwrap();
    assert!(!db.verify("nobody", "x"));
    let (scheme, dummy) = db.dummy.get().unwrap();
    assert_eq!(*scheme, Scheme::Argon2);
    assert!(
        dummy.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"),
        "{dummy}"
    );
}

#[test]
fn successes_are_cached_failures_are_not() {
    let db = Htpasswd::parse_with_cache(
        &format!("u:{}\n", bcrypt::hash("pw", 10).unwrap()),
        CacheConfig {
            ttl: Duration::from_secs(60),
            max_entries: 2,
        },
    )
    .unwrap();
    let t0 = Instant::now();
    assert!(!db.verify_at("u", "nope", t0));
    assert_eq!(db.cache.lock().len(), 0);
    assert!(db.verify_at("u", "pw", t0));
    assert_eq!(db.cache.lock().len(), 1);
    let start = Instant::now();
    for _ in 0..100 {
        assert!(db.verify_at("u", "pw", t0 + Duration::from_secs(30)));
    }
    // A hundred bcrypt checks at cost 10 would take seconds; cache hits take microseconds.
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    // Another password for the same user is not a hit.
    assert!(!db.verify_at("u", "pw2", t0));
    // Expired entries are checked again (and re-cached).
    assert!(db.verify_at("u", "pw", t0 + Duration::from_secs(61)));
    let now = t0 + Duration::from_secs(61);
    // Bounded: two more successful keys cannot grow it past two.
    db.cache.remember(db.cache.key("x", "1"), now);
    db.cache.remember(db.cache.key("y", "2"), now);
    assert_eq!(db.cache.lock().len(), 2);
}

#[test]
fn file_reloads_on_change_and_keeps_last_good() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("htpasswd");
    std::fs::write(&path, format!("{APACHE_LINE}\n")).unwrap();
    let file = HtpasswdFile::open(&path).unwrap();
    let t0 = Instant::now();
    let (db, err) = file.snapshot_at(t0);
    assert!(err.is_none() && db.verify("alice", "correct horse"));

    // Replace atomically with a new user, as editors and config managers do.
    let tmp = dir.path().join("htpasswd.new");
    std::fs::write(&tmp, format!("bob:{}\n", bcrypt::hash("pw", 4).unwrap())).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    // Within a second of the last check the file is not looked at.
    let (db, _) = file.snapshot_at(t0 + Duration::from_millis(500));
    assert!(db.verify("alice", "correct horse"));
    let (db, err) = file.snapshot_at(t0 + Duration::from_secs(2));
    assert!(err.is_none());
    assert!(db.verify("bob", "pw") && !db.verify("alice", "correct horse"));

    // A broken version is reported once and the good one stays.
    std::fs::write(&path, "carol:$apr1$xyz$abc\n").unwrap();
    let (db, err) = file.snapshot_at(t0 + Duration::from_secs(4));
    let err = err.expect("reload error reported");
    assert!(err.to_string().contains("carol"), "{err}");
    assert!(db.verify("bob", "pw"));
    let (_, again) = file.snapshot_at(t0 + Duration::from_secs(6));
    assert!(again.is_none(), "reported twice");

    // A missing file is reported once too, and the last good version serves on.
    std::fs::remove_file(&path).unwrap();
    let (db, err) = file.snapshot_at(t0 + Duration::from_secs(8));
    assert!(matches!(err, Some(HtpasswdError::Io { .. })));
    assert!(db.verify("bob", "pw"));
    assert!(file.snapshot_at(t0 + Duration::from_secs(10)).1.is_none());

    // Fixed: picked up.
    std::fs::write(&path, format!("{APACHE_LINE}\n")).unwrap();
    let (db, err) = file.snapshot_at(t0 + Duration::from_secs(12));
    assert!(err.is_none() && db.verify("alice", "correct horse"));
    assert!(HtpasswdFile::open(dir.path().join("absent")).is_err());
}

#[test]
fn reload_drops_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("htpasswd");
    std::fs::write(&path, format!("u:{}\n", bcrypt::hash("old", 4).unwrap())).unwrap();
    let file = HtpasswdFile::open(&path).unwrap();
    let t0 = Instant::now();
    assert!(file.snapshot_at(t0).0.verify("u", "old"));
    std::fs::write(
        &path,
        format!("u:{}\n#changed\n", bcrypt::hash("new", 4).unwrap()),
    )
    .unwrap();
    let (db, _) = file.snapshot_at(t0 + Duration::from_secs(2));
    assert!(!db.verify("u", "old"));
    assert!(db.verify("u", "new"));
}

#[test]
fn real_htpasswd_tool_output_verifies() {
    let tool = Path::new("/usr/bin/htpasswd");
    if !tool.exists() {
        assert!(
            std::env::var_os("BREAKWATER_REQUIRE_TEST_TOOLS").is_none(),
            "BREAKWATER_REQUIRE_TEST_TOOLS is set but /usr/bin/htpasswd (apache2-utils) is missing"
        );
        eprintln!("skipping: /usr/bin/htpasswd not installed (apt-get install apache2-utils)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("htpasswd");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(tool)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let p = path.to_str().unwrap();
    run(&["-B", "-b", "-c", p, "ci-user", "s3cret:with colon"]);
    run(&["-B", "-C", "6", "-b", p, "second", "another"]);
    let file = HtpasswdFile::open(&path).unwrap();
    let (db, _) = file.snapshot();
    assert!(db.verify("ci-user", "s3cret:with colon"));
    assert!(db.verify("second", "another"));
    assert!(!db.verify("ci-user", "another"));
    // Its default (MD5) output is refused with a useful message.
    run(&["-m", "-b", p, "legacy", "pw"]);
    let err = HtpasswdFile::open(&path).unwrap_err().to_string();
    assert!(err.contains("legacy") && err.contains("MD5"), "{err}");
}
