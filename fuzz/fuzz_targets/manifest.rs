//! Manifest and index bytes from upstream: `references` under every media type,
//! `sniff_media_type`, `digest_payload` (schema1's JWS payload rebuilt from header fields) and
//! the referrers index. Never panic; every reference is a valid digest in manifest order;
//! schema1 layers are unique; the digest payload and every allocation stay within what the
//! input can justify; a parsed referrers list serialises and parses back to itself.
#![no_main]

use breakwater_fuzz::{assert_alloc_within, reset_largest_alloc, PeakAlloc};
use breakwater_oci::manifest::{
    digest_payload, references, sniff_media_type, RefKind, ALL_MANIFEST_TYPES, DOCKER_V1,
    DOCKER_V1_SIGNED,
};
use breakwater_oci::referrers::Referrers;
use breakwater_oci::Digest;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

/// `"sha256:" + 64 hex` is the shortest digest text; JSON escapes only make it longer.
const MIN_DIGEST_TEXT: usize = 71;

fuzz_target!(|data: &[u8]| {
    reset_largest_alloc();
    for mt in ALL_MANIFEST_TYPES {
        let Ok(refs) = references(mt, data) else {
            continue;
        };
        assert!(refs.len() * MIN_DIGEST_TEXT <= data.len());
        for r in &refs {
            assert_eq!(Digest::parse(&r.digest.to_string()).as_ref(), Ok(&r.digest));
            if r.platform.is_some() {
                assert_eq!(
                    r.kind,
                    RefKind::Manifest,
                    "only index entries have platforms"
                );
            }
        }
        // Manifest order: index entries, then the config, then layers.
        let rank = |k: RefKind| match k {
            RefKind::Manifest => 0,
            RefKind::Config => 1,
            RefKind::Layer => 2,
        };
        assert!(refs.windows(2).all(|w| rank(w[0].kind) <= rank(w[1].kind)));
        assert!(refs.iter().filter(|r| r.kind == RefKind::Config).count() <= 1);
    }
    if let Some(mt) = sniff_media_type(data) {
        // Either the document's own mediaType or one of the known types it was recognised as.
        assert!(mt.len() <= data.len() || ALL_MANIFEST_TYPES.contains(&mt.as_str()));
    }
    for mt in [DOCKER_V1_SIGNED, DOCKER_V1] {
        let payload = digest_payload(mt, data);
        // At most a prefix of the body plus a tail decoded from inside the body.
        assert!(payload.len() <= 2 * data.len());
    }
    if let Ok(list) = Referrers::parse(data) {
        for r in &list.manifests {
            assert!(Digest::parse(&r.digest).is_ok());
        }
        let bytes = list.to_bytes();
        let again = Referrers::parse(&bytes).expect("our own referrers index parses");
        assert_eq!(again, list);
        if let Some(kind) = list.manifests.iter().find_map(|r| r.artifact_type.clone()) {
            let only = list.filtered(&kind);
            assert!(!only.manifests.is_empty());
            assert!(only
                .manifests
                .iter()
                .all(|r| r.artifact_type.as_deref() == Some(&kind)));
        }
    }
    // serde_json reserves per element and the payload copies the body: a small multiple.
    assert_alloc_within(8 * data.len() + (64 << 10), "manifest parsing");
});
