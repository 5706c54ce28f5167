//! Readiness evaluation over hand-built index rows: what is needed, what is folded into an
//! index, and what an outage does to tags.

use super::*;
use crate::cache::readiness::PulledImage;
use crate::oci::manifest::Reference as Ref;

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const IMAGE: &str = "application/vnd.oci.image.manifest.v1+json";

fn d(c: char) -> Digest {
    Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
}

fn repo() -> RepoKey {
    RepoKey {
        upstream: "local".into(),
        name: "app".into(),
    }
}

fn r(digest: Digest, kind: RefKind, platform: Option<&str>) -> Ref {
    Ref {
        digest,
        kind,
        size: Some(100),
        platform: platform.map(str::to_string),
    }
}

fn row(digest: Digest, media_type: &str, refs: Vec<Ref>, tags: &[(&str, i64)]) -> PulledImage {
    PulledImage {
        repo: repo(),
        digest,
        media_type: media_type.into(),
        last_pulled_ms: 1_000,
        refs,
        tags: tags.iter().map(|(t, at)| (t.to_string(), *at)).collect(),
    }
}

fn rules(ttl_s: u64, max_stale_s: Option<u64>) -> TagRules {
    TagRules {
        ttl: Duration::from_secs(ttl_s),
        stale_while_revalidate: false,
        max_stale: max_stale_s.map(Duration::from_secs),
        immutable: false,
    }
}

/// An index with amd64 pulled (and arm64 not), and a single-platform image.
fn rows() -> Vec<PulledImage> {
    vec![
        row(
            d('a'),
            INDEX,
            vec![
                r(d('b'), RefKind::Manifest, Some("linux/amd64")),
                r(d('c'), RefKind::Manifest, Some("linux/arm64")),
            ],
            &[("1", 0)],
        ),
        row(
            d('b'),
            IMAGE,
            vec![
                r(d('e'), RefKind::Config, None),
                r(d('f'), RefKind::Layer, None),
            ],
            &[],
        ),
        row(
            d('9'),
            IMAGE,
            vec![
                r(d('e'), RefKind::Config, None),
                r(d('8'), RefKind::Layer, None),
            ],
            &[("solo", 0)],
        ),
    ]
}

#[test]
fn pulled_platforms_fold_into_their_index_and_unpulled_ones_are_not_needed() {
    let all = |_: &Digest| true;
    let lenient = |_: &RepoKey, _: &str| Some(rules(60, None));
    let out = evaluate(&rows(), 10_000, &all, &lenient);
    assert_eq!(out.len(), 2, "the amd64 child is reported inside its index");
    let index = &out[0];
    assert_eq!(index.digest, d('a'));
    assert_eq!(index.platforms, vec!["linux/amd64".to_string()]);
    // Index manifest, amd64 manifest, its config and layer; arm64 (never pulled) not needed.
    assert_eq!(index.blobs, 4);
    assert!(index.ready && index.missing.is_empty());
    assert_eq!(out[1].digest, d('9'));
    assert_eq!(out[1].blobs, 3);
}

#[test]
fn a_missing_layer_names_digest_kind_and_platform() {
    let lacks_f = |x: &Digest| *x != d('f');
    let lenient = |_: &RepoKey, _: &str| Some(rules(60, None));
    let out = evaluate(&rows(), 10_000, &lacks_f, &lenient);
    assert!(!out[0].ready);
    assert_eq!(
        out[0].missing,
        vec![MissingBlob {
            digest: d('f'),
            kind: "layer".into(),
            platform: Some("linux/amd64".into()),
            size: Some(100),
        }]
    );
    assert!(
        out[1].ready,
        "the other image shares only the config, which is there"
    );
}

#[test]
fn tags_past_ttl_are_stale_and_past_max_stale_are_refused() {
    assert_eq!(tag_outage(&rules(60, None), 59_000), TagOutage::Fresh);
    assert_eq!(tag_outage(&rules(60, None), 10_000_000), TagOutage::Stale);
    assert_eq!(tag_outage(&rules(60, Some(60)), 100_000), TagOutage::Stale);
    assert_eq!(
        tag_outage(&rules(60, Some(60)), 121_000),
        TagOutage::Refused
    );
    let mut immutable = rules(60, Some(1));
    immutable.immutable = true;
    assert_eq!(tag_outage(&immutable, 10_000_000), TagOutage::Fresh);

    let all = |_: &Digest| true;
    let strict = |_: &RepoKey, _: &str| Some(rules(1, Some(1)));
    let out = evaluate(&rows(), 10_000, &all, &strict);
    assert!(!out[0].ready, "its tag would be refused in an outage");
    assert_eq!(out[0].tags[0].outage, TagOutage::Refused);
    let gone = |_: &RepoKey, _: &str| None;
    let out = evaluate(&rows(), 10_000, &all, &gone);
    assert!(
        out.iter().all(|i| !i.ready),
        "an unconfigured upstream serves nothing"
    );
}

#[test]
fn an_index_without_pulled_platforms_is_checked_alone_and_noted() {
    let only_index = vec![rows().remove(0)];
    let all = |_: &Digest| true;
    let lenient = |_: &RepoKey, _: &str| Some(rules(60, None));
    let out = evaluate(&only_index, 10_000, &all, &lenient);
    assert_eq!(out[0].blobs, 1);
    assert!(out[0].platforms.is_empty());
    assert!(out[0].ready);
    assert_eq!(out[0].problems.len(), 1);
}
