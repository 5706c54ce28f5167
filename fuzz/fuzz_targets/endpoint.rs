//! Request paths to `parse_path`. Never panic; every named part is a piece of the path, and the
//! path is rebuilt exactly from the endpoint; a reference or digest holds no `/`; only `/v2` and
//! `/v2/` are the base; nothing outside `/v2/` names an operation.
#![no_main]

use breakwater_oci::endpoint::{parse_path, Endpoint};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let got = parse_path(path);
    let rebuilt = match &got {
        Endpoint::Base => {
            assert!(path == "/v2" || path == "/v2/", "{path:?} read as the base");
            return;
        }
        Endpoint::Catalog => "/v2/_catalog".to_string(),
        Endpoint::Manifest { name, reference } => {
            assert!(!reference.contains('/'), "{path:?}");
            format!("/v2/{name}/manifests/{reference}")
        }
        Endpoint::Blob { name, digest } => {
            assert!(!digest.contains('/'), "{path:?}");
            format!("/v2/{name}/blobs/{digest}")
        }
        Endpoint::Referrers { name, digest } => {
            assert!(!digest.contains('/'), "{path:?}");
            format!("/v2/{name}/referrers/{digest}")
        }
        Endpoint::Tags { name } => format!("/v2/{name}/tags/list"),
        Endpoint::Write => {
            assert!(path[4..].contains("/blobs/uploads"), "{path:?} read as a push");
            return;
        }
        Endpoint::Unknown => {
            return;
        }
    };
    assert_eq!(rebuilt, path, "the endpoint does not rebuild the path");
    // An upload path (`<name>/blobs/uploads…` after `/v2/`) is never served as a read, whatever
    // else it looks like; `/v2/blobs/uploads/x/…` is a repository named `blobs/uploads/x`.
    let after = path.strip_prefix("/v2/").unwrap_or_default();
    if after.contains("/blobs/uploads") && !path.ends_with("/tags/list") {
        panic!("{path:?} read as {got:?}");
    }
});
