//! A real Debian bookworm root (debootstrap --variant=minbase), tarred into a gzip layer on
//! the fly and compared with dpkg-query. Make it with `load-tests/make-debian-rootfs.sh`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::samples::dpkg_tuples;
use crate::catalog::PackageKind;
use crate::inventory;
use crate::layer::{analyze_layer, Compression};

fn rootfs() -> Option<PathBuf> {
    let dir = std::env::var("BREAKWATER_DEBIAN_ROOTFS")
        .unwrap_or_else(|_| "/var/tmp/breakwater/debian-bookworm-minbase".into());
    let dir = PathBuf::from(dir);
    dir.join("var/lib/dpkg/status").is_file().then_some(dir)
}

/// Appends `dir` below `root` to a tar, as a container build would: symlinks kept as links,
/// device nodes and the contents of /proc, /sys and /dev left out.
fn append_tree<W: Write>(b: &mut tar::Builder<W>, root: &Path, dir: &Path) {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for path in names {
        let rel = path.strip_prefix(root).unwrap();
        let meta = fs::symlink_metadata(&path).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_mode(meta.permissions().mode() & 0o7777);
        h.set_mtime(meta.mtime() as u64);
        if meta.file_type().is_symlink() {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, rel, fs::read_link(&path).unwrap())
                .unwrap();
        } else if meta.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            b.append_data(&mut h, rel, std::io::empty()).unwrap();
            if !["proc", "sys", "dev"].iter().any(|s| rel == Path::new(s)) {
                append_tree(b, root, &path);
            }
        } else if meta.is_file() {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(meta.len());
            b.append_data(&mut h, rel, fs::File::open(&path).unwrap())
                .unwrap();
        }
    }
}

#[test]
fn debootstrap_bookworm_matches_dpkg_query() {
    let Some(root) = rootfs() else {
        super::skip("no Debian rootfs; run load-tests/make-debian-rootfs.sh (or set BREAKWATER_DEBIAN_ROOTFS)");
        return;
    };
    // Stream the layer through a pipe so the test also shows nothing needs the whole blob.
    let (reader, writer) = std::io::pipe().unwrap();
    let producer_root = root.clone();
    let producer = std::thread::spawn(move || {
        // zstd rather than gzip: its C encoder stays fast in unoptimised test builds.
        let z = zstd::stream::write::Encoder::new(writer, 1).unwrap();
        let mut b = tar::Builder::new(z);
        append_tree(&mut b, &producer_root, &producer_root);
        b.into_inner().unwrap().finish().unwrap();
    });
    let analysis = analyze_layer(reader).unwrap();
    producer.join().unwrap();
    assert_eq!(analysis.compression, Compression::Zstd);
    assert!(analysis
        .symlinks
        .iter()
        .any(|s| s.path == "/etc/os-release"));

    // The analysis is what gets cached: it must survive a JSON round trip unchanged.
    let json = serde_json::to_vec(&analysis).unwrap();
    let analysis: crate::layer::LayerAnalysis = serde_json::from_slice(&json).unwrap();
    let inv = inventory::merge([&analysis]);

    let os = inv
        .os
        .as_ref()
        .expect("os-release through the /etc/os-release symlink");
    assert_eq!(
        (
            os.id.as_str(),
            os.version_id.as_deref(),
            os.version_codename.as_deref()
        ),
        ("debian", Some("12"), Some("bookworm"))
    );
    assert_eq!(inv.os_path.as_deref(), Some("/usr/lib/os-release"));

    let debs: Vec<_> = inv
        .packages
        .iter()
        .filter(|p| p.kind == PackageKind::Dpkg)
        .cloned()
        .collect();
    let out = Command::new("dpkg-query")
        .arg(format!("--admindir={}", root.join("var/lib/dpkg").display()))
        .args(["-W", "-f", "${db:Status-Status}\t${Package}\t${Version}\t${source:Package}\t${source:Version}\t${Architecture}\n"])
        .output();
    match out {
        Ok(out) if out.status.success() => {
            let expected: std::collections::BTreeSet<_> = String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .filter_map(|l| {
                    let f: Vec<String> = l.split('\t').map(str::to_string).collect();
                    (f[0] == "installed").then(|| {
                        (
                            f[1].clone(),
                            f[2].clone(),
                            f[3].clone(),
                            f[4].clone(),
                            f[5].clone(),
                        )
                    })
                })
                .collect();
            assert_eq!(dpkg_tuples(&debs), expected);
        }
        _ => super::skip("dpkg-query unavailable: only the counts were checked"),
    }
    assert!(debs.len() > 50, "{}", debs.len());
    let libc = debs.iter().find(|p| p.name == "libc6").unwrap();
    assert_eq!(libc.ecosystem, "Debian");
    assert!(
        libc.purl.starts_with("pkg:deb/debian/libc6@2.36-9"),
        "{}",
        libc.purl
    );
    assert!(libc.purl.contains("distro=debian-12"), "{}", libc.purl);
    assert!(libc.source_name.as_deref() == Some("glibc"));
    eprintln!(
        "debootstrap bookworm: {} entries, {} tar bytes, {} dpkg packages = dpkg-query; problems: {:?}",
        analysis.entries,
        analysis.tar_bytes,
        debs.len(),
        inv.problems
    );
}
