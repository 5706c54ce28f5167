//! Repository names, tags, references, digests and `<upstream>/<name>` keys from request paths:
//! never panic; what parses satisfies the distribution grammar (checked here independently),
//! prints back as the input, and parses again to the same value; errors stay short however long
//! the input is (they end up in the client's error JSON).
#![no_main]

use breakwater_oci::referrers::referrers_tag;
use breakwater_oci::{Digest, Reference, RepoKey, RepoName, Tag};
use libfuzzer_sys::fuzz_target;

/// An error message quotes at most a few hundred characters of the input, each escaped.
const MAX_ERROR_LEN: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match RepoName::parse(s) {
        Ok(name) => {
            assert!(grammar_repo_name(s), "{s:?} accepted against the grammar");
            assert_eq!(name.as_str(), s);
            assert_eq!(RepoName::parse(&name.to_string()).as_ref(), Ok(&name));
            // The Docker Hub form must itself be a valid name: it is sent upstream as one.
            match name.clone().with_library_namespace() {
                Ok(hub) => assert_eq!(
                    RepoName::parse(hub.as_str()).as_ref(),
                    Ok(&hub),
                    "library/ form of {s:?} is not a repository name"
                ),
                Err(_) => assert!(!s.contains('/') && s.len() + "library/".len() > 255),
            }
        }
        Err(e) => {
            assert!(!grammar_repo_name(s), "{s:?} rejected but fits the grammar");
            assert!(e.to_string().len() <= MAX_ERROR_LEN);
        }
    }
    match Tag::parse(s) {
        Ok(tag) => {
            assert!(grammar_tag(s), "tag {s:?} accepted against the grammar");
            assert_eq!(tag.to_string(), s);
        }
        Err(e) => {
            assert!(!grammar_tag(s), "tag {s:?} rejected but fits the grammar");
            assert!(e.to_string().len() <= MAX_ERROR_LEN);
        }
    }
    match Digest::parse(s) {
        Ok(d) => check_digest(s, &d),
        Err(e) => assert!(e.to_string().len() <= MAX_ERROR_LEN),
    }
    match Reference::parse(s) {
        Ok(r) => {
            assert_eq!(r.to_string(), s);
            assert_eq!(Reference::parse(&r.to_string()).as_ref(), Ok(&r));
            match &r {
                Reference::Digest(_) => assert!(s.contains(':')),
                Reference::Tag(_) => assert!(grammar_tag(s)),
            }
        }
        Err(e) => assert!(e.to_string().len() <= MAX_ERROR_LEN),
    }
    match s.parse::<RepoKey>() {
        Ok(k) => {
            assert_eq!(k.to_string(), s);
            assert!(!k.upstream.is_empty() && !k.upstream.contains('/'));
            assert!(grammar_repo_name(&k.name));
            assert_eq!(k.to_string().parse::<RepoKey>().as_ref(), Ok(&k));
        }
        Err(e) => assert!(e.to_string().len() <= MAX_ERROR_LEN),
    }
});

fn check_digest(s: &str, d: &Digest) {
    assert_eq!(d.to_string(), s);
    let (algo, hex) = s.split_once(':').unwrap();
    assert_eq!(d.algorithm().as_str(), algo);
    assert_eq!(d.hex(), hex);
    let want = match algo {
        "sha256" => 64,
        "sha512" => 128,
        other => panic!("digest with algorithm {other:?} accepted"),
    };
    assert_eq!(hex.len(), want);
    assert!(hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    // The store uses the hex part as a file name; the JSON form is what the index keeps.
    let json = serde_json::to_string(d).unwrap();
    assert_eq!(serde_json::from_str::<Digest>(&json).ok().as_ref(), Some(d));
    let tag = referrers_tag(d);
    assert!(grammar_tag(tag.as_str()));
}

/// `path-component ('/' path-component)*`, at most 255 bytes, where a component is
/// `[a-z0-9]+ (separator [a-z0-9]+)*` and a separator is `.`, `_`, `__` or `-+`.
/// Written as a scan over separator runs, unlike the parser's own loop.
fn grammar_repo_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && s.split('/').all(grammar_component)
}

fn grammar_component(c: &str) -> bool {
    let alnum = |ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit();
    let mut runs = c.split(|ch: char| alnum(ch)).collect::<Vec<_>>();
    // Splitting on alphanumerics: the first and last pieces are what precedes the first and
    // follows the last alphanumeric, so both must be empty; the pieces in between are the
    // separators (empty ones are adjacent alphanumerics).
    if c.is_empty() || runs.first() != Some(&"") || runs.last() != Some(&"") {
        return false;
    }
    runs.pop();
    runs.remove(0);
    runs.iter().all(|sep| {
        sep.is_empty()
            || *sep == "."
            || *sep == "_"
            || *sep == "__"
            || sep.chars().all(|ch| ch == '-')
    })
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn grammar_tag(s: &str) -> bool {
    let word = |ch: char| ch.is_ascii_alphanumeric() || ch == '_';
    let mut chars = s.chars();
    chars.next().is_some_and(word)
        && s.len() <= 128
        && chars.all(|ch| word(ch) || ch == '.' || ch == '-')
}
