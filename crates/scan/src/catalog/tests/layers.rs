//! Multi-layer images built in memory: whiteouts, opaque directories, replaced and shadowed
//! files, symlinked os-release, compression formats, size caps and damaged input.

use std::io::{Cursor, Read};

use super::{gzip, layer_tar, zstd, Member};
use crate::inventory::{self, Inventory};
use crate::layer::{
    analyze_layer, Compression, LayerAnalysis, LayerError, Outcome, MAX_DATABASE_BYTES,
};

const DEB11: &[u8] = b"ID=debian\nVERSION_ID=\"11\"\nVERSION_CODENAME=bullseye\n";
const DEB12: &[u8] = b"ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";

fn status(pkgs: &[(&str, &str)]) -> Vec<u8> {
    pkgs.iter()
        .map(|(n, v)| {
            format!(
                "Package: {n}\nStatus: install ok installed\nArchitecture: amd64\nVersion: {v}\n\n"
            )
        })
        .collect::<String>()
        .into_bytes()
}

fn analyze(members: &[Member]) -> LayerAnalysis {
    analyze_layer(&layer_tar(members)[..]).unwrap()
}

fn names(inv: &Inventory) -> Vec<String> {
    let mut v: Vec<String> = inv
        .packages
        .iter()
        .map(|p| format!("{}@{}", p.name, p.version))
        .collect();
    v.sort();
    v
}

#[test]
fn whiteouts_opaque_dirs_and_replacements() {
    let go = crate::catalog::golang::build_inline_blob(
        "go1.21.0",
        "path\tex.com/tool\nmod\tex.com/tool\tv1.0.0\t\n",
    );
    let mut go_elf = b"\x7fELF".to_vec();
    go_elf.resize(4096, 0);
    go_elf.extend_from_slice(&go);
    let s1 = status(&[
        ("libc6", "2.31-13"),
        ("bash", "5.1-2"),
        ("zlib1g", "1:1.2.11"),
    ]);
    let base = analyze(&[
        Member::File("etc/os-release", DEB11),
        Member::File("var/lib/dpkg/status", &s1),
        Member::File(
            "usr/lib/python3/site-packages/foo-1.0.dist-info/METADATA",
            b"Metadata-Version: 2.1\nName: foo\nVersion: 1.0\n",
        ),
        Member::File(
            "usr/lib/python3/site-packages/bar-2.0.dist-info/METADATA",
            b"Metadata-Version: 2.1\nName: bar\nVersion: 2.0\n",
        ),
        Member::File(
            "app/node_modules/a/package.json",
            br#"{"name":"a","version":"1.0.0"}"#,
        ),
        Member::File(
            "opt/node_modules/x/package.json",
            br#"{"name":"x","version":"9.0.0"}"#,
        ),
        Member::Exec("usr/local/bin/tool", &go_elf),
    ]);
    let one = inventory::merge([&base]);
    assert_eq!(one.os.as_ref().unwrap().version_id.as_deref(), Some("11"));
    assert_eq!(one.packages.len(), 3 + 2 + 2 + 2);
    assert_eq!(
        one.packages.iter().find(|p| p.name == "bash").unwrap().purl,
        "pkg:deb/debian/bash@5.1-2?arch=amd64&distro=debian-11"
    );

    let s2 = status(&[("libc6", "2.36-9"), ("bash", "5.2-1")]);
    let upper = analyze(&[
        Member::Symlink("etc/os-release", "../usr/lib/os-release"),
        Member::File("usr/lib/os-release", DEB12),
        Member::File("var/lib/dpkg/status", &s2),
        Member::File("usr/lib/python3/site-packages/.wh.foo-1.0.dist-info", b""),
        Member::Dir("app/node_modules"),
        Member::File("app/node_modules/.wh..wh..opq", b""),
        Member::File(
            "app/node_modules/b/package.json",
            br#"{"name":"b","version":"2.0.0"}"#,
        ),
        Member::Symlink("opt/node_modules", "/app/node_modules"),
        Member::Exec(
            "usr/local/bin/tool",
            b"#!/bin/sh\nexec something-else \"$@\"\n",
        ),
    ]);
    assert_eq!(
        upper.whiteouts,
        ["/usr/lib/python3/site-packages/foo-1.0.dist-info"]
    );
    assert_eq!(upper.opaque_dirs, ["/app/node_modules"]);
    let two = inventory::merge([&base, &upper]);
    assert_eq!(two.os_path.as_deref(), Some("/usr/lib/os-release"));
    assert_eq!(
        two.os.as_ref().unwrap().version_codename.as_deref(),
        Some("bookworm")
    );
    assert_eq!(
        names(&two),
        ["b@2.0.0", "bar@2.0", "bash@5.2-1", "libc6@2.36-9"]
    );
    assert!(two
        .packages
        .iter()
        .all(|p| !p.purl.contains("distro=debian-11")));

    // Deleting the dpkg database removes the OS packages; deleting a parent directory
    // removes everything below it.
    let top = analyze(&[
        Member::File("var/lib/dpkg/.wh.status", b""),
        Member::File("usr/lib/.wh.python3", b""),
    ]);
    let three = inventory::merge([&base, &upper, &top]);
    assert_eq!(names(&three), ["b@2.0.0"]);
    // Merging works from cached (serialised) analyses alone.
    let cached: Vec<LayerAnalysis> = [&base, &upper, &top]
        .iter()
        .map(|l| serde_json::from_str(&serde_json::to_string(l).unwrap()).unwrap())
        .collect();
    assert_eq!(inventory::merge(&cached), three);
}

/// Found by the `layer_walk` fuzz target's long run: `.wh..` made the whiteout `/.`.
#[test]
fn whiteouts_of_dot_and_dot_dot_delete_nothing() {
    let a = analyze(&[
        Member::File(".wh..", b""),
        Member::File("etc/.wh..", b""),
        Member::File("etc/.wh...", b""),
        Member::File("etc/.wh.", b""),
        Member::File("etc/.wh.passwd", b""),
    ]);
    assert_eq!(a.whiteouts, vec!["/etc/passwd".to_string()]);
    assert!(a.opaque_dirs.is_empty());
    assert_eq!(
        a.notes
            .iter()
            .filter(|n| n.contains("names no entry"))
            .count(),
        4,
        "{:?}",
        a.notes
    );
}

#[test]
fn same_layer_in_every_compression() {
    let tar = layer_tar(&[
        Member::Dir("./etc"),
        Member::File("./etc/os-release", DEB12),
        Member::HardLink("usr/lib/os-release", "etc/os-release"),
        Member::File("var/lib/dpkg/status", &status(&[("a", "1")])),
        Member::File("var/lib/dpkg/status", &status(&[("b", "2")])),
    ]);
    let plain = analyze_layer(&tar[..]).unwrap();
    let gz = analyze_layer(&gzip(&tar)[..]).unwrap();
    let zs = analyze_layer(&zstd(&tar)[..]).unwrap();
    assert_eq!(
        (plain.compression, gz.compression, zs.compression),
        (Compression::None, Compression::Gzip, Compression::Zstd)
    );
    assert_eq!(plain.blob_bytes, tar.len() as u64);
    assert_eq!(
        (gz.tar_bytes, zs.tar_bytes),
        (plain.tar_bytes, plain.tar_bytes)
    );
    assert_eq!(gz.blob_bytes, gzip(&tar).len() as u64);
    assert_eq!(
        (gz.files.clone(), zs.files.clone()),
        (plain.files.clone(), plain.files.clone())
    );
    assert_eq!(plain.entries, 5);
    // The later duplicate wins; the hard link carries the os-release content.
    let inv = inventory::merge([&plain]);
    assert_eq!(names(&inv), ["b@2"]);
    assert!(plain
        .files
        .iter()
        .any(|f| f.path == "/usr/lib/os-release" && matches!(f.outcome, Outcome::Os(_))));
}

#[test]
fn oversized_database_is_skipped_but_still_shadows() {
    let lower = analyze(&[Member::File("var/lib/dpkg/status", &status(&[("a", "1")]))]);
    let size = MAX_DATABASE_BYTES + 1;
    let mut h = tar::Header::new_gnu();
    h.set_path("var/lib/dpkg/status").unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    let pad = (512 - size % 512) % 512;
    let stream = Cursor::new(h.as_bytes().to_vec())
        .chain(std::io::repeat(b'x').take(size))
        .chain(std::io::repeat(0).take(pad + 1024));
    let upper = analyze_layer(stream).unwrap();
    assert!(
        matches!(upper.files[0].outcome, Outcome::Skipped(_)),
        "{:?}",
        upper.files[0].outcome
    );
    let inv = inventory::merge([&lower, &upper]);
    assert!(inv.packages.is_empty());
    assert!(
        inv.problems[0].contains("/var/lib/dpkg/status"),
        "{:?}",
        inv.problems
    );
}

#[test]
fn damaged_input_is_an_error_not_a_panic() {
    let tar = layer_tar(&[
        Member::File("var/lib/dpkg/status", &status(&[("a", "1"), ("b", "2")])),
        Member::File("etc/os-release", DEB12),
    ]);
    let gz = gzip(&tar);
    let zs = zstd(&tar);
    // Truncated anywhere (except the optional end-of-archive padding), in every format.
    for blob in [&tar, &gz, &zs] {
        for cut in (1..blob.len()).step_by(37) {
            let _ = analyze_layer(&blob[..cut]);
        }
    }
    assert!(matches!(
        analyze_layer(&tar[..700]),
        Err(LayerError::Tar { .. })
    ));
    assert!(analyze_layer(&gz[..gz.len() / 2]).is_err());
    let mut junk_gz = vec![0x1f, 0x8b, 8, 0];
    junk_gz.extend((0..4000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    assert!(analyze_layer(&junk_gz[..]).is_err());
    let junk: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(40503) >> 7) as u8)
        .collect();
    assert!(analyze_layer(&junk[..]).is_err());
    assert!(matches!(
        analyze_layer(&b"BZh91AY&SY"[..]),
        Err(LayerError::UnsupportedCompression("bzip2"))
    ));
    // An empty blob is an empty layer.
    assert_eq!(analyze_layer(&b""[..]).unwrap().entries, 0);
    // Unsafe paths are skipped with a note.
    // (the tar crate refuses to write such paths, so poke the name field directly).
    let mut h = tar::Header::new_gnu();
    let name = b"../../etc/os-release";
    h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
    h.set_size(DEB12.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, DEB12).unwrap();
    let evil = analyze_layer(&b.into_inner().unwrap()[..]).unwrap();
    assert!(evil.files.is_empty() && evil.notes.len() == 1, "{evil:?}");
}
