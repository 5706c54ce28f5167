//! `parse_scope` / `parse_scopes` on arbitrary UTF-8: never panic, respect the documented limits,
//! and every parsed `Access` parses back to itself from its `Display` form.
#![no_main]

use breakwater_auth::scope::{MAX_SCOPES, MAX_SCOPE_LEN};
use breakwater_auth::{parse_scope, parse_scopes, Access};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(all) = parse_scope(text) {
        assert!(text.len() <= MAX_SCOPE_LEN);
        assert!(!all.is_empty() && all.len() <= MAX_SCOPES);
        all.iter().for_each(check_access);
        // The scopes joined back with spaces are the same list.
        let joined: Vec<String> = all.iter().map(ToString::to_string).collect();
        let joined = joined.join(" ");
        if joined.len() <= MAX_SCOPE_LEN {
            assert_eq!(parse_scope(&joined).as_ref(), Ok(&all), "{joined:?}");
        }
    }
    let values: Vec<&str> = text.split('\n').collect();
    if let Ok(all) = parse_scopes(values.iter().copied()) {
        assert!(all.len() <= MAX_SCOPES);
        all.iter().for_each(check_access);
        // parse_scopes is parse_scope over each value, concatenated.
        let mut expected = Vec::new();
        for v in &values {
            expected.extend(parse_scope(v).expect("parse_scopes accepted this value"));
        }
        assert_eq!(all, expected);
    }
});

fn check_access(access: &Access) {
    assert!(!access.kind.is_empty() && !access.name.is_empty() && !access.actions.is_empty());
    assert!(!access.kind.contains(':'));
    assert!(access
        .actions
        .iter()
        .all(|a| !a.is_empty() && !a.contains([',', ':'])));
    assert!(access.base_kind().len() <= access.kind.len());
    let shown = access.to_string();
    match parse_scope(&shown) {
        Ok(again) => assert_eq!(again, vec![access.clone()], "{shown:?}"),
        Err(e) => panic!("{shown:?} (Display of {access:?}) does not parse: {e}"),
    }
}
