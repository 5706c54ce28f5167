//! `WWW-Authenticate` values from upstream registries: never panic, never loop; schemes and
//! parameter names are lowercase tokens; and the challenges written back out in the canonical
//! form (`scheme name="value", ...`, quotes and backslashes escaped) parse to the same list.
#![no_main]

use breakwater_oci::challenge::{parse, Challenge};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let challenges = parse(value);
    for c in &challenges {
        check_token(&c.scheme);
        for (name, v) in &c.params {
            check_token(name);
            assert_eq!(c.param(name), Some(v.as_str()));
        }
    }
    // Every challenge starts at a bare token, so there are no more than tokens in the input.
    assert!(challenges.len() <= value.len());
    let written = write(&challenges);
    assert_eq!(parse(&written), challenges, "{written:?}");
});

fn check_token(t: &str) {
    assert!(!t.is_empty());
    assert!(!t.contains([' ', '\t', ',', '=', '"']), "{t:?}");
    assert_eq!(t, t.to_ascii_lowercase());
}

fn write(challenges: &[Challenge]) -> String {
    let mut out = Vec::new();
    for c in challenges {
        let params: Vec<String> = c
            .params
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        out.push(format!("{} {}", c.scheme, params.join(", ")));
    }
    out.join(", ")
}
