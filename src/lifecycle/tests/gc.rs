//! GC over a real store and index: what is kept, what goes, and the safety checks.

use super::fixture::{key, Fx, DAY};
use crate::cache::images::{Claim, ClaimLimits};
use crate::lifecycle::gc::GcRequest;
use crate::oci::{Digest, RepoName};

fn gc(fx: &Fx) -> crate::lifecycle::views::GcReport {
    fx.lc.gc(&GcRequest::default()).expect("gc runs")
}

#[test]
fn a_layer_shared_with_a_retained_image_is_never_deleted() {
    let fx = Fx::new("");
    let t = fx.now - 20 * DAY;
    let shared = fx.blob(&[7u8; 4000], t);
    let only_a = fx.blob(&[1u8; 3000], t);
    let only_b = fx.blob(&[2u8; 2000], t);
    let a = fx.image("local/team/app", &["v1"], &[&shared, &only_a], t);
    let b = fx.image("local/team/app", &["v2"], &[&shared, &only_b], t + 1000);
    let before = fx.lc.image("local/team/app:v1").unwrap();

    fx.lc.delete_image("local/team/app:v1").unwrap();
    let r = gc(&fx);

    assert!(
        !fx.stored(&a) && !fx.stored(&only_a),
        "v1's manifest and own layer go"
    );
    assert!(fx.stored(&shared) && fx.stored(&only_b) && fx.stored(&b));
    // Manifest, config and own layer of v1: three blobs, with a gc_delete event each.
    assert_eq!(r.deleted_blobs, 3, "{r:?}");
    let deleted: Vec<String> = fx
        .events("gc_delete")
        .into_iter()
        .filter_map(|e| e.digest)
        .collect();
    assert_eq!(deleted.len(), 3);
    assert!(deleted.contains(&only_a.to_string()) && !deleted.contains(&shared.to_string()));
    assert_eq!(r.freed_bytes, before.stored_bytes - 4000);
    // Records follow the bytes; the survivor still lists and resolves.
    assert_eq!(fx.lc.cache.index.manifest(&a).unwrap(), None);
    assert!(fx.lc.cache.index.manifest(&b).unwrap().is_some());
    assert_eq!(
        fx.lc.cache.index.tags(&key("local/team/app")).unwrap(),
        vec!["v2"]
    );
    assert_eq!(
        fx.lc.cache.metrics.store_blobs.get() as usize,
        r.store_blobs_after
    );

    // A second run finds nothing more to do.
    assert_eq!(gc(&fx).deleted_blobs, 0);
}

#[test]
fn grace_period_and_unrecorded_blobs_are_kept() {
    let fx = Fx::with("http://127.0.0.1:9", "", "[gc]\ngrace = \"10m\"\n");
    let fresh = fx.blob(b"committed a minute ago", fx.now - 60_000);
    let old = fx.blob(b"committed an hour ago", fx.now - 3_600_000);
    // Bytes in the store the index has no record of: a fill that committed but has not
    // recorded yet looks exactly like this.
    let unrecorded = Digest::sha256_of(b"no record");
    crate::cache::store::put_bytes(fx.lc.cache.store.as_ref(), &unrecorded, b"no record").unwrap();

    let r = gc(&fx);
    assert!(fx.stored(&fresh) && !fx.stored(&old) && fx.stored(&unrecorded));
    assert_eq!(
        (r.kept_recent, r.adopted, r.deleted_blobs),
        (1, 1, 1),
        "{r:?}"
    );
    // The adopted blob now has a record dated now: still within its grace period.
    assert_eq!(gc(&fx).kept_recent, 2);
}

#[test]
fn dry_run_changes_nothing() {
    let fx = Fx::new("");
    let t = fx.now - DAY;
    let l = fx.blob(b"layer", t);
    fx.image("local/a/b", &["x"], &[&l], t);
    fx.lc.delete_image("local/a/b:x").unwrap();
    let r = fx.lc.gc(&GcRequest { dry_run: true }).unwrap();
    assert!(r.dry_run && r.deleted_blobs == 3, "{r:?}");
    assert!(fx.stored(&l));
    assert!(fx.events("gc_delete").is_empty());
    assert_eq!(gc(&fx).deleted_blobs, 3);
    assert!(!fx.stored(&l));
}

#[test]
fn the_recheck_keeps_blobs_referenced_by_manifests_recorded_during_gc() {
    let fx = Fx::new("");
    let t = fx.now - DAY;
    let layer = fx.blob(b"layer of an expired image", t);
    fx.image("local/team/app", &["old"], &[&layer], t);
    fx.lc.delete_image("local/team/app:old").unwrap();
    // The mark saw `layer` unreferenced. Before the sweep reaches it, a client pulls an image
    // that uses it and the request path records that manifest.
    let mark_began = crate::now_ms();
    fx.image("local/team/other", &["new"], &[&layer], mark_began + 5);
    let limits = ClaimLimits {
        now_ms: mark_began + 10,
        committed_after_ms: mark_began,
        recorded_since_ms: mark_began,
    };
    let ix = fx.lc.cache.index.lifecycle();
    let size = layer_size(&fx, &layer);
    assert_eq!(
        ix.claim_for_deletion(&layer.to_string(), size, &limits)
            .unwrap(),
        Claim::Referenced
    );
    // Without the late reference the same check lets it go, taking its record with it.
    let orphan = fx.blob(b"nobody wants me", t);
    let got = ix
        .claim_for_deletion(&orphan.to_string(), 15, &limits)
        .unwrap();
    assert_eq!(got, Claim::Forgotten { manifest: false });
    assert_eq!(
        ix.claim_for_deletion(&orphan.to_string(), 15, &limits)
            .unwrap(),
        Claim::Adopted,
        "its record is gone, so a second look treats it as new"
    );
    // And a full run keeps the layer the new image uses.
    gc(&fx);
    assert!(fx.stored(&layer));
}

fn layer_size(fx: &Fx, d: &Digest) -> u64 {
    fx.lc.cache.store.stat(d).unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_being_filled_is_not_deleted() {
    // An upstream that accepts connections and never answers: the fill stays running.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let fx = Fx::with(&url, "", "[gc]\ngrace = \"0s\"\n");
    let data = b"bytes that are also being filled".to_vec();
    let d = Digest::sha256_of(&data);
    let target = fx
        .reg
        .target("local", RepoName::parse("team/app").unwrap())
        .unwrap();
    // A client asks for the blob: a fill starts and hangs on the silent upstream.
    let source = fx.reg.blob(&target, &d).await.unwrap();
    assert!(matches!(
        source,
        crate::registry::blobs::BlobSource::Filling(_)
    ));
    assert!(fx.reg.is_filling(&d));
    // The same bytes reach the store by another way while the fill runs, with an old record.
    crate::cache::store::put_bytes(fx.lc.cache.store.as_ref(), &d, &data).unwrap();
    fx.lc
        .cache
        .index
        .record_blob(&d, data.len() as u64, fx.now - DAY)
        .unwrap();

    let lc = &fx.lc;
    let r = tokio::task::block_in_place(|| lc.gc(&GcRequest::default())).unwrap();
    assert_eq!((r.kept_in_flight, r.deleted_blobs), (1, 0), "{r:?}");
    assert!(fx.stored(&d));
    drop(silent);
}

#[test]
fn archived_images_keep_their_manifests_and_come_back_when_pulled() {
    let fx = Fx::new("");
    let t = fx.now - 40 * DAY;
    let layer = fx.blob(&[3u8; 5000], t);
    let img = fx.image("local/team/app", &["v1"], &[&layer], t);
    let policy = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"sinceImagePushed","countUnit":"days","countNumber":30},"action":{"type":"transition","targetStorageClass":"archive"}}]}"#;
    fx.lc.put_policy("default", policy).unwrap();
    let applied = fx.lc.apply(None).unwrap();
    assert_eq!(applied.transitioning_images, 1);
    gc(&fx);
    assert!(fx.stored(&img), "the manifest is the record and stays");
    assert!(!fx.stored(&layer), "the layer is dropped");
    let v = fx.lc.image("local/team/app:v1").unwrap();
    assert_eq!(v.storage_class, "archive");
    assert_eq!(v.tags, vec!["v1"]);

    // A client pulls it again (the layer is refilled from upstream): the next run restores it
    // and the refilled layer stays.
    fx.pull("local/team/app", &img, crate::now_ms() + 1);
    let layer_again = fx.blob(&[3u8; 5000], fx.now - DAY);
    assert_eq!(layer_again, layer);
    let r = gc(&fx);
    assert_eq!(r.restored_images, 1);
    assert!(fx.stored(&layer));
    let restored = fx.lc.image("local/team/app:v1").unwrap();
    assert_eq!(restored.storage_class, "standard");
    // "Pushed" is now the restore: when breakwater cached the image's bytes again.
    assert!(restored.first_cached_ms > fx.now - DAY, "{restored:?}");
    let ev = fx.events("restore");
    assert_eq!(ev.len(), 1);
    let detail = ev[0].detail.clone().unwrap_or_default();
    assert!(detail.contains("pushed time set to"), "{detail}");
    assert!(
        detail.contains(&restored.first_cached_ms.to_string()),
        "{detail}"
    );

    // The same rule, applied again, leaves the image in use alone: no archive/restore loop.
    let again = fx.lc.apply(None).unwrap();
    assert_eq!(again.transitioning_images, 0, "{again:?}");
    gc(&fx);
    assert!(fx.stored(&layer));
    assert_eq!(
        fx.lc.image("local/team/app:v1").unwrap().storage_class,
        "standard"
    );
    assert_eq!(fx.events("transition").len(), 1);
}

#[test]
fn preview_and_dry_run_see_pulled_archived_images_as_restored() {
    let fx = Fx::new("");
    let t = fx.now - 200 * DAY;
    let layer = fx.blob(&[4u8; 3000], t);
    let img = fx.image("local/team/app", &["v1"], &[&layer], t);
    // Archived 100 days ago, pulled again yesterday (its layer refilled since).
    let ix = fx.lc.cache.index.lifecycle();
    let k = fx.lc.catalog().unwrap();
    let row = k.key(k.groups[0].parent).expect("a valid digest");
    ix.set_storage_class(&[row], "archive", Some(fx.now - 100 * DAY))
        .unwrap();
    fx.pull("local/team/app", &img, fx.now - DAY);
    let expire_archived = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","storageClass":"archive","countType":"sinceImageTransitioned","countUnit":"days","countNumber":90},"action":{"type":"expire"}}]}"#;
    fx.lc.put_policy("default", expire_archived).unwrap();

    // A dry run keeps the layer a real run keeps, and changes nothing.
    let dry = fx.lc.gc(&GcRequest { dry_run: true }).unwrap();
    assert_eq!((dry.restored_images, dry.deleted_blobs), (1, 0), "{dry:?}");
    assert_eq!(
        fx.lc.image("local/team/app:v1").unwrap().storage_class,
        "archive"
    );
    assert!(fx.events("restore").is_empty());

    let preview = fx.lc.preview(&Default::default()).unwrap();
    assert_eq!(preview.expiring_images, 0, "{preview:?}");
    assert!(fx.events("restore").is_empty(), "preview writes nothing");
    let applied = fx.lc.apply(None).unwrap();
    assert_eq!(
        (applied.expiring_images, applied.transitioning_images),
        (preview.expiring_images, preview.transitioning_images)
    );
    let v = fx.lc.image("local/team/app:v1").unwrap();
    assert_eq!(v.storage_class, "standard");
    assert_eq!(
        v.first_cached_ms,
        fx.now - DAY,
        "pushed: the pull that restored it"
    );
}

#[test]
fn platform_manifests_belong_to_their_index() {
    let fx = Fx::new("");
    let t = fx.now - 10 * DAY;
    let (la, lb) = (fx.blob(b"amd64 layer", t), fx.blob(b"arm64 layer", t));
    let amd = fx.image("local/team/multi", &[], &[&la], t);
    let arm = fx.image("local/team/multi", &[], &[&lb], t);
    let idx = fx.index("local/team/multi", &["v1"], &[&amd, &arm], t);
    fx.pull("local/team/multi", &amd, fx.now - DAY);

    let images = fx.lc.images(Some("local/team/multi")).unwrap();
    assert_eq!(
        images.len(),
        1,
        "the platform manifests are part of the index image"
    );
    assert_eq!(images[0].digest, idx);
    assert_eq!(images[0].children.len(), 2);
    assert_eq!(
        images[0].last_pulled_ms,
        Some(fx.now - DAY),
        "a child's pull counts"
    );
    assert!(images[0]
        .children
        .iter()
        .any(|c| c.platform.as_deref() == Some("linux/arm64")));

    // An untagged-images rule never sees the (untagged) platform manifests on their own.
    let untagged = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":1},"action":{"type":"expire"}}]}"#;
    fx.lc.put_policy("local/team/*", untagged).unwrap();
    assert_eq!(fx.lc.apply(None).unwrap().expiring_images, 0);
    gc(&fx);
    assert!(fx.stored(&la) && fx.stored(&lb) && fx.stored(&amd) && fx.stored(&idx));

    // Expiring the index takes its platform manifests along.
    fx.lc.delete_image("local/team/multi:v1").unwrap();
    gc(&fx);
    for d in [&idx, &amd, &arm, &la, &lb] {
        assert!(!fx.stored(d), "{d} should be gone");
    }
    assert!(fx.lc.images(None).unwrap().is_empty());
}
