//! The lifecycle operations of the index (GC re-check, removal, archiving, pins, policies),
//! checked on every backend.

use crate::images::{Claim, ClaimLimits, ImageKey, PinRow};
use crate::index::{Index, ManifestRecord, RepoKey};
use crate::oci::manifest::{RefKind, Reference};
use crate::oci::Digest;
use crate::test_backends::{each_backend, image_rows};

fn rec(d: &Digest) -> ManifestRecord {
    ManifestRecord {
        digest: d.clone(),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        size: 1,
    }
}

fn r(d: &Digest, kind: RefKind) -> Reference {
    Reference {
        digest: d.clone(),
        kind,
        size: Some(1),
        platform: None,
    }
}

fn key(ix: &dyn Index, d: &Digest) -> ImageKey {
    let row = image_rows(ix)
        .into_iter()
        .find(|r| r.digest == d.to_string())
        .expect("image row");
    ImageKey {
        repo_id: row.repo_id,
        digest: d.clone(),
    }
}

#[test]
fn gc_recheck_removal_archive_pins_and_policies() {
    each_backend(|backend, ix| {
        eprintln!("backend: {backend}");
        let lc = ix.lifecycle();
        let repo = RepoKey::new("up", "team/app");
        let (index, image, layer, loose) = (
            Digest::sha256_of(b"index"),
            Digest::sha256_of(b"image"),
            Digest::sha256_of(b"layer"),
            Digest::sha256_of(b"loose"),
        );
        ix.record_manifest(&repo, &rec(&image), &[r(&layer, RefKind::Layer)], None, 100)
            .unwrap();
        ix.record_manifest(
            &repo,
            &rec(&index),
            &[r(&image, RefKind::Manifest)],
            Some("1"),
            100,
        )
        .unwrap();
        for d in [&index, &image, &layer] {
            ix.record_blob(d, 1, 100).unwrap();
        }
        let limits = ClaimLimits {
            now_ms: 1000,
            committed_after_ms: 500,
            recorded_since_ms: 900,
        };
        // A stored blob the index did not know: adopted, then young.
        assert_eq!(
            lc.claim_for_deletion(&loose.to_string(), 7, &limits)
                .unwrap(),
            Claim::Adopted
        );
        assert!(ix.blob_records().unwrap().contains(&(loose.clone(), 7)));
        assert_eq!(
            lc.claim_for_deletion(&loose.to_string(), 7, &limits)
                .unwrap(),
            Claim::Recent
        );
        // An image's own manifest stays.
        assert_eq!(
            lc.claim_for_deletion(&image.to_string(), 1, &limits)
                .unwrap(),
            Claim::Referenced
        );
        // A layer referenced by a manifest recorded after the mark stays; the records survive.
        let late = RepoKey::new("up", "team/late");
        let late_m = Digest::sha256_of(b"late");
        ix.record_manifest(
            &late,
            &rec(&late_m),
            &[r(&layer, RefKind::Layer)],
            None,
            950,
        )
        .unwrap();
        assert_eq!(
            lc.claim_for_deletion(&layer.to_string(), 1, &limits)
                .unwrap(),
            Claim::Referenced
        );
        assert!(ix.blob_records().unwrap().contains(&(layer.clone(), 1)));

        // Removing the child image keeps its manifest (the index image still lists it).
        let removed = lc.remove_images(&[key(ix, &image)]).unwrap();
        assert_eq!(removed.len(), 1);
        assert!(!removed[0].manifest_removed);
        assert!(ix.manifest(&image).unwrap().is_some());
        assert_eq!(
            lc.claim_for_deletion(&image.to_string(), 1, &limits)
                .unwrap(),
            Claim::Referenced
        );
        // Removing the index takes its tag and its record; the child is now an orphan record.
        let removed = lc.remove_images(&[key(ix, &index)]).unwrap();
        assert_eq!(removed[0].tags, vec!["1".to_string()]);
        assert!(removed[0].manifest_removed);
        assert_eq!(ix.tag(&repo, "1").unwrap(), None);
        assert_eq!(
            lc.claim_for_deletion(&image.to_string(), 1, &limits)
                .unwrap(),
            Claim::Forgotten { manifest: true }
        );
        assert_eq!(ix.manifest(&image).unwrap(), None);
        assert!(!ix.blob_records().unwrap().iter().any(|(d, _)| d == &image));
        // Removing a row that is gone reports nothing.
        assert!(lc
            .remove_images(&[ImageKey {
                repo_id: 999_999,
                digest: index.clone()
            }])
            .unwrap()
            .is_empty());

        // Archive and restore.
        let k = key(ix, &late_m);
        assert_eq!(
            lc.set_storage_class(std::slice::from_ref(&k), "archive", Some(1200))
                .unwrap(),
            1
        );
        let row = image_rows(ix)
            .into_iter()
            .find(|r| r.digest == late_m.to_string())
            .unwrap();
        assert_eq!(
            (row.storage_class.as_str(), row.transitioned_at_ms),
            ("archive", Some(1200))
        );
        assert_eq!(lc.restore_images(&[(k.clone(), 1300)]).unwrap(), 1);
        assert_eq!(
            lc.restore_images(&[(k, 1400)]).unwrap(),
            0,
            "only archived rows restore"
        );
        let row = image_rows(ix)
            .into_iter()
            .find(|r| r.digest == late_m.to_string())
            .unwrap();
        assert_eq!(
            (
                row.storage_class.as_str(),
                row.transitioned_at_ms,
                row.first_cached_ms
            ),
            ("standard", None, 1300)
        );

        // Missing blobs are forgotten only when older than the cut-off.
        assert_eq!(
            lc.forget_missing_blobs(&[loose.to_string()], 1000).unwrap(),
            0
        );
        assert_eq!(
            lc.forget_missing_blobs(&[loose.to_string()], 1001).unwrap(),
            1
        );

        // Pins: replaced by target (note updated), listed sorted, removed once.
        let pin = |target: &str, digest: Option<Digest>, note: &str| PinRow {
            target: target.into(),
            repository: "up/team/app".into(),
            digest,
            created_ms: 5,
            note: Some(note.into()),
        };
        lc.put_pin(&pin("up/team/*", None, "a")).unwrap();
        lc.put_pin(&pin(
            &format!("up/team/app@{image}"),
            Some(image.clone()),
            "b",
        ))
        .unwrap();
        lc.put_pin(&pin("up/team/*", None, "c")).unwrap();
        let pins = lc.pins().unwrap();
        assert_eq!(pins.len(), 2);
        assert_eq!(pins[0].target, "up/team/*");
        assert_eq!(pins[0].note.as_deref(), Some("c"));
        assert_eq!(pins[1].digest, Some(image.clone()));
        assert!(lc.remove_pin("up/team/*").unwrap());
        assert!(!lc.remove_pin("up/team/*").unwrap());

        // Policies: upserted by scope.
        lc.put_policy("default", "{\"rules\":[]}", 1).unwrap();
        lc.put_policy("default", "{\"rules\":[1]}", 2).unwrap();
        lc.put_policy("up/team/*", "{}", 3).unwrap();
        let p = lc.policies().unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].scope.as_str(), p[0].policy.as_str(), p[0].updated_ms),
            ("default", "{\"rules\":[1]}", 2)
        );
        assert!(lc.remove_policy("default").unwrap());
        assert!(!lc.remove_policy("default").unwrap());
    });
}
