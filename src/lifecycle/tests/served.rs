//! GC and the request path: blobs served lately, and those named by a manifest served lately,
//! are kept however unreferenced the mark found them.

use super::fixture::{key, Fx, DAY};
use crate::lifecycle::gc::GcRequest;
use crate::oci::manifest::Accept;
use crate::oci::{Reference, RepoName};
use crate::registry::blobs::BlobSource;
use crate::registry::Target;

/// A cache whose GC grace period is ten minutes.
fn fx() -> Fx {
    Fx::with("http://127.0.0.1:9", "", "[gc]\ngrace = \"10m\"\n")
}

fn target(fx: &Fx, repo: &str) -> Target {
    fx.reg
        .target("local", RepoName::parse(repo).unwrap())
        .unwrap()
}

fn gc(fx: &Fx) -> crate::lifecycle::views::GcReport {
    let lc = &fx.lc;
    tokio::task::block_in_place(|| lc.gc(&GcRequest::default())).expect("gc runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreferenced_blob_served_just_now_survives_gc() {
    let fx = fx();
    let t = fx.now - DAY;
    let served = fx.blob(b"unreferenced, but a client is reading it", t);
    let idle = fx.blob(b"unreferenced and idle", t);
    // Fetched for team/app once (a link), though no manifest references it.
    fx.reg
        .cache_handle()
        .index
        .link(&key("local/team/app"), &served, t)
        .unwrap();
    let source = fx
        .reg
        .blob(&target(&fx, "team/app"), &served)
        .await
        .unwrap();
    assert!(matches!(source, BlobSource::Stored(_)));

    let r = gc(&fx);
    assert!(fx.stored(&served), "served within the grace period");
    assert!(!fx.stored(&idle));
    assert_eq!((r.kept_served, r.deleted_blobs), (1, 1), "{r:?}");
    // The dry run agrees.
    let lc = &fx.lc;
    let dry = tokio::task::block_in_place(|| lc.gc(&GcRequest { dry_run: true })).unwrap();
    assert_eq!((dry.kept_served, dry.deleted_blobs), (1, 0), "{dry:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archived_image_whose_manifest_is_served_keeps_its_layers() {
    let fx = fx();
    let t = fx.now - 40 * DAY;
    let (la, lb) = (fx.blob(&[1u8; 4000], t), fx.blob(&[2u8; 4000], t));
    let a = fx.image("local/team/app", &["a"], &[&la], t);
    let b = fx.image("local/team/app", &["b"], &[&lb], t);
    let archive = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"sinceImagePushed","countUnit":"days","countNumber":30},"action":{"type":"transition","targetStorageClass":"archive"}}]}"#;
    fx.lc.put_policy("default", archive).unwrap();
    let lc = &fx.lc;
    let applied = tokio::task::block_in_place(|| lc.apply(None)).unwrap();
    assert_eq!(applied.transitioning_images, 2);

    // A client asks for `a` (its pull is not even recorded yet) just before GC marks.
    let answer = fx
        .reg
        .manifest(
            &target(&fx, "team/app"),
            &Reference::Digest(a.clone()),
            &Accept::parse([]),
        )
        .await
        .unwrap();
    assert_eq!(answer.manifest.digest, a);

    let r = gc(&fx);
    assert!(fx.stored(&la), "the layer the client fetches next stays");
    assert!(!fx.stored(&lb), "the idle archived image's layer goes");
    assert!(fx.stored(&a) && fx.stored(&b), "manifests are the record");
    // `a`'s layer and config.
    assert_eq!(r.kept_served, 2, "{r:?}");
}
