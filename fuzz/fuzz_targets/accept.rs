//! `Accept` header values from clients (one value per line of the input): never panic; an empty
//! header, `*/*` or `application/*` allows every manifest type; matching ignores case; adding
//! values never takes a type away; the header the cache itself sends allows every type.
#![no_main]

use breakwater_oci::manifest::{upstream_accept, Accept, ALL_MANIFEST_TYPES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let values: Vec<&str> = text.split('\n').collect();
    let accept = Accept::parse(values.iter().copied());
    // What a client listed, as the grammar reads it: media ranges before any parameters.
    let listed: Vec<String> = values
        .iter()
        .flat_map(|v| v.split(','))
        .map(|part| {
            part.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|t| !t.is_empty())
        .collect();
    let wildcard = listed.iter().any(|t| t == "*/*" || t == "application/*");
    for mt in ALL_MANIFEST_TYPES {
        let allowed = accept.allows(mt);
        if listed.is_empty() || wildcard || listed.iter().any(|t| t == mt) {
            assert!(allowed, "{mt} refused for {values:?}");
        }
        assert_eq!(accept.allows(&mt.to_ascii_uppercase()), allowed);
        // A further value can only widen what is allowed (once something is listed: no header
        // at all allows everything).
        let mut more = values.clone();
        more.push("application/vnd.example+json");
        if allowed && !listed.is_empty() {
            assert!(Accept::parse(more.iter().copied()).allows(mt));
        }
        let mut all = values.clone();
        all.push("*/*");
        assert!(Accept::parse(all.iter().copied()).allows(mt));
    }
    // Arbitrary media types: allowed only when listed, a wildcard, or the schema1 family.
    let probe = text.lines().next().unwrap_or("").trim();
    if !probe.is_empty() && accept.allows(probe) && !listed.is_empty() && !wildcard {
        let p = probe.to_ascii_lowercase();
        assert!(
            listed.contains(&p) || p.contains("distribution.manifest.v1+"),
            "{probe:?} allowed by {values:?}"
        );
    }
    assert!(ALL_MANIFEST_TYPES
        .iter()
        .all(|mt| Accept::parse([upstream_accept().as_str()]).allows(mt)));
});
