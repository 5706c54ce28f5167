use super::*;
use crate::oci::manifest::RefKind;

#[test]
fn links_follow_images_and_indexes_but_not_other_repositories() {
    crate::test_backends::each_backend(links_follow_images_and_indexes);
}

fn links_follow_images_and_indexes(backend: &str, ix: &dyn Index) {
    eprintln!("backend: {backend}");
    let key = |u: &str, n: &str| RepoKey {
        upstream: u.into(),
        name: n.into(),
    };
    let (private, other, foreign) = (
        key("corp", "team/app"),
        key("corp", "team/other"),
        key("docker.io", "library/app"),
    );
    let (index, image, layer, loose) = (
        Digest::sha256_of(b"index"),
        Digest::sha256_of(b"image"),
        Digest::sha256_of(b"layer"),
        Digest::sha256_of(b"loose"),
    );
    let rec = |d: &Digest| ManifestRecord {
        digest: d.clone(),
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        size: 1,
    };
    let r = |d: &Digest, kind| ManifestRef {
        digest: d.clone(),
        kind,
        size: Some(1),
        platform: None,
    };
    // The child image manifest is known (cached for another repository), the index is cached
    // for the private one: index -> image -> layer reaches the layer at depth two.
    ix.record_manifest(&other, &rec(&image), &[r(&layer, RefKind::Layer)], None, 1)
        .unwrap();
    ix.record_manifest(
        &private,
        &rec(&index),
        &[r(&image, RefKind::Manifest)],
        Some("v1"),
        1,
    )
    .unwrap();
    for d in [&index, &image, &layer] {
        assert!(
            ix.linked(&private, d).unwrap(),
            "{d} under the private repository"
        );
        assert!(
            !ix.linked(&foreign, d).unwrap(),
            "{d} under another upstream"
        );
    }
    assert!(!ix.linked(&other, &index).unwrap());
    assert!(ix.linked(&other, &layer).unwrap());
    assert!(!ix.linked(&private, &loose).unwrap());
    ix.link(&foreign, &loose, 2).unwrap();
    ix.link(&foreign, &loose, 3).unwrap();
    assert!(ix.linked(&foreign, &loose).unwrap());
    assert!(!ix.linked(&private, &loose).unwrap());
    assert!(!ix.linked(&key("nowhere", "x"), &loose).unwrap());
}

#[test]
fn manifest_tag_and_pull_round_trip() {
    crate::test_backends::each_backend(round_trip);
}

fn round_trip(backend: &str, ix: &dyn Index) {
    eprintln!("backend: {backend}");
    let repo = RepoKey {
        upstream: "docker.io".into(),
        name: "library/nginx".into(),
    };
    let d = Digest::sha256_of(b"m");
    let layer = Digest::sha256_of(b"l");
    let m = ManifestRecord {
        digest: d.clone(),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        size: 1,
    };
    let refs = [ManifestRef {
        digest: layer,
        kind: RefKind::Layer,
        size: Some(3),
        platform: None,
    }];
    ix.record_manifest(&repo, &m, &refs, Some("latest"), 1000)
        .unwrap();
    assert_eq!(ix.manifest(&d).unwrap(), Some(m.clone()));
    assert_eq!(ix.declared_size(&refs[0].digest).unwrap(), Some(3));
    assert_eq!(
        ix.declared_size(&d).unwrap(),
        None,
        "no manifest declares it"
    );
    assert_eq!(
        ix.tag(&repo, "latest").unwrap(),
        Some(TagRecord {
            digest: d.clone(),
            confirmed_at_ms: 1000
        })
    );
    ix.confirm_tag(&repo, "latest", 2000).unwrap();
    assert_eq!(
        ix.tag(&repo, "latest").unwrap().unwrap().confirmed_at_ms,
        2000
    );
    ix.record_pulls(&[Pull {
        repo: repo.clone(),
        digest: d.clone(),
        count: 3,
        at_ms: 5000,
    }])
    .unwrap();
    // An older batch adds to the count but does not move the last pull back.
    ix.record_pulls(&[Pull {
        repo: repo.clone(),
        digest: d.clone(),
        count: 2,
        at_ms: 4000,
    }])
    .unwrap();
    let rows = crate::test_backends::image_rows(ix);
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(
        (r.digest.as_str(), r.pull_count, r.last_pulled_ms),
        (d.to_string().as_str(), 5, Some(5000))
    );
    assert_eq!(
        (r.storage_class.as_str(), r.transitioned_at_ms),
        ("standard", None)
    );
    ix.record_blob(&d, 1, 1000).unwrap();
    ix.record_blob(&d, 1, 2000).unwrap();
    assert_eq!(ix.blob_records().unwrap(), vec![(d.clone(), 1)]);
    assert_eq!(ix.tags(&repo).unwrap(), vec!["latest".to_string()]);
    assert_eq!(ix.repositories().unwrap(), vec![repo.clone()]);
    ix.remove_tag(&repo, "latest").unwrap();
    assert_eq!(ix.tag(&repo, "latest").unwrap(), None);
    ix.forget_blobs(std::slice::from_ref(&d)).unwrap();
    assert_eq!(ix.manifest(&d).unwrap(), None);
    assert!(ix.repositories().unwrap().is_empty());
}
