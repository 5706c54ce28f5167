//! Tests of the catalogers, layer analysis and inventory merge on real data: the
//! package database samples in `testdata/`, a debootstrapped Debian root, real Python/npm/Go trees, and
//! multi-layer images built in memory.

mod binaries;
mod debian;
mod langs;
mod layers;
mod samples;

use std::io::Write;
use std::path::PathBuf;

/// The checkout's `testdata/vulndb`.
pub(super) fn vulndb() -> PathBuf {
    crate::version::vectors::vulndb_dir()
}

/// Reads a file under `testdata/vulndb`.
pub(super) fn sample(rel: &str) -> Vec<u8> {
    let p = vulndb().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Reports a test that cannot run here. Where the tools are required (CI sets
/// `BREAKWATER_REQUIRE_TEST_TOOLS=1`), that is a failure, so a missing install never passes quietly.
pub(super) fn skip(why: &str) {
    if std::env::var_os("BREAKWATER_REQUIRE_TEST_TOOLS").is_some() {
        panic!("required test tool or data missing: {why}");
    }
    eprintln!("SKIPPED: {why}");
}

/// True if `cmd` can be run (for comparisons against reference tools).
pub(super) fn have(cmd: &str) -> bool {
    std::process::Command::new(cmd)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// One member of a layer built in memory.
pub(super) enum Member<'a> {
    File(&'a str, &'a [u8]),
    Exec(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
}

/// Builds an uncompressed layer tar from members, in order.
pub(super) fn layer_tar(members: &[Member]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for m in members {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        let (path, data, ty, mode, link): (&str, &[u8], tar::EntryType, u32, Option<&str>) = match m
        {
            Member::File(p, d) => (p, d, tar::EntryType::Regular, 0o644, None),
            Member::Exec(p, d) => (p, d, tar::EntryType::Regular, 0o755, None),
            Member::Dir(p) => (p, &[], tar::EntryType::Directory, 0o755, None),
            Member::Symlink(p, t) => (p, &[], tar::EntryType::Symlink, 0o777, Some(t)),
            Member::HardLink(p, t) => (p, &[], tar::EntryType::Link, 0o644, Some(t)),
        };
        // The tar crate refuses absolute member paths; layers store them relative anyway.
        let path = path.trim_start_matches('/');
        h.set_entry_type(ty);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        match link {
            Some(t) => b.append_link(&mut h, path, t).unwrap(),
            None => b.append_data(&mut h, path, data).unwrap(),
        }
    }
    b.into_inner().unwrap()
}

/// gzip-compresses bytes.
pub(super) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// zstd-compresses bytes.
pub(super) fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 1).unwrap()
}
