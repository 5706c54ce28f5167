//! Go binaries: the build info blob the Go linker embeds (`\xff Go buildinf:`), which names
//! the Go version, the main module and every dependency module with its version.

use memchr::memmem;

use super::elf::Elf;
use super::{purl, CatalogError, Package, PackageKind};

const FORMAT: &str = "Go build info";

/// The 14-byte magic that starts the build info blob.
pub const BUILDINFO_MAGIC: &[u8; 14] = b"\xff Go buildinf:";
/// Size of the build info header (magic, pointer size, flags, padding).
const HEADER: usize = 32;
/// Flag bit: the strings follow the header inline (Go 1.18+), rather than by pointer.
const FLAG_INLINE: u8 = 0x2;
/// Flag bit: pointers are big-endian.
const FLAG_BIG_ENDIAN: u8 = 0x1;
/// Longest string we accept: real modinfo strings are kilobytes; this only bounds junk.
const MAX_STRING: u64 = 4 << 20;

/// Finds and decodes build info in a whole binary; a binary without it yields no packages.
pub fn parse_binary(path: &str, data: &[u8]) -> Result<Vec<Package>, CatalogError> {
    let elf = Elf::parse(data);
    let mut last_err = None;
    for at in memmem::find_iter(data, BUILDINFO_MAGIC) {
        match parse_buildinfo(path, &data[at..], elf.as_ref()) {
            Ok(p) => return Ok(p),
            // The magic can occur by chance (e.g. in the Go toolchain's own source strings).
            Err(e) => last_err = Some(e),
        }
    }
    match (last_err, elf) {
        // An ELF file that carries the magic but nothing readable is worth reporting.
        (Some(e), Some(_)) => Err(e),
        _ => Ok(Vec::new()),
    }
}

/// Decodes a build info blob that starts at the magic; `elf` resolves pre-1.18 pointers.
pub fn parse_buildinfo(
    path: &str,
    blob: &[u8],
    elf: Option<&Elf>,
) -> Result<Vec<Package>, CatalogError> {
    let err = |m: &str| CatalogError::malformed(path, FORMAT, m.to_string());
    if blob.len() < HEADER || &blob[..14] != BUILDINFO_MAGIC {
        return Err(err("truncated header"));
    }
    let ptr_size = blob[14] as usize;
    let flags = blob[15];
    let (version, modinfo) = if flags & FLAG_INLINE != 0 {
        let mut rest = &blob[HEADER..];
        let v = read_varint_string(&mut rest).ok_or_else(|| err("bad inline version string"))?;
        let m = read_varint_string(&mut rest).ok_or_else(|| err("bad inline modinfo string"))?;
        (v, m)
    } else {
        if ptr_size != 4 && ptr_size != 8 {
            return Err(err("pointer size is neither 4 nor 8"));
        }
        let elf = elf.ok_or_else(|| err("pre-1.18 pointer format needs the whole ELF file"))?;
        let big = flags & FLAG_BIG_ENDIAN != 0;
        let ptr = |b: &[u8], at: usize| read_uint(b.get(at..at + ptr_size)?, big);
        let deref = |field_at: usize| -> Option<&[u8]> {
            let header_addr = ptr(blob, field_at)?;
            let hdr = elf.read_vaddr(header_addr, 2 * ptr_size as u64)?;
            let (data, len) = (ptr(hdr, 0)?, ptr(hdr, ptr_size)?);
            if len > MAX_STRING {
                return None;
            }
            elf.read_vaddr(data, len)
        };
        let v = deref(16).ok_or_else(|| err("version pointer does not resolve"))?;
        let m = deref(16 + ptr_size).ok_or_else(|| err("modinfo pointer does not resolve"))?;
        (v, m)
    };
    let version = String::from_utf8_lossy(version).into_owned();
    if !version.starts_with("go") && !version.starts_with("devel") {
        return Err(err("version string does not name a Go release"));
    }
    let modinfo = String::from_utf8_lossy(strip_sentinels(modinfo)).into_owned();
    Ok(packages(path, &version, &modinfo))
}

/// Reads a uvarint length followed by that many bytes, advancing `rest`.
fn read_varint_string<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let mut len: u64 = 0;
    let mut shift = 0u32;
    loop {
        let (&b, tail) = rest.split_first()?;
        *rest = tail;
        len |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    if len > MAX_STRING {
        return None;
    }
    let len = len as usize;
    let s = rest.get(..len)?;
    *rest = &rest[len..];
    Some(s)
}

fn read_uint(b: &[u8], big: bool) -> Option<u64> {
    let fold = |v: u64, byte: &u8| (v << 8) | u64::from(*byte);
    Some(if big {
        b.iter().fold(0, fold)
    } else {
        b.iter().rev().fold(0, fold)
    })
}

/// The linker wraps modinfo in two 16-byte sentinels so the runtime can find it; drop them.
fn strip_sentinels(m: &[u8]) -> &[u8] {
    if m.len() >= 33 && m[m.len() - 17] == b'\n' {
        &m[16..m.len() - 16]
    } else {
        m
    }
}

/// Builds packages from the Go version and the `path`/`mod`/`dep`/`=>` modinfo lines.
fn packages(path: &str, go_version: &str, modinfo: &str) -> Vec<Package> {
    let mut out = Vec::new();
    // OSV's Go advisories name the toolchain's standard library `stdlib` with bare versions.
    let first = go_version.split_whitespace().next().unwrap_or(go_version);
    let std_version = match first.strip_prefix("go") {
        Some(v) if v.starts_with(|c: char| c.is_ascii_digit()) => v,
        _ => go_version,
    };
    out.push(purl::language_package(
        PackageKind::Go,
        "stdlib",
        std_version,
        path,
    ));
    for line in modinfo.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["mod" | "dep", module, version, ..] if !module.is_empty() => {
                out.push(purl::language_package(
                    PackageKind::Go,
                    module,
                    version,
                    path,
                ));
            }
            // A versioned replacement is what got compiled; a directory replacement has no
            // version of its own, so the required module and version are the best name for it.
            ["=>", module, version, ..] if !version.is_empty() => {
                if let Some(last) = out.pop() {
                    let mut p = purl::language_package(PackageKind::Go, module, version, path);
                    p.source_name = Some(last.name);
                    p.source_version = Some(last.version);
                    out.push(p);
                }
            }
            _ => {}
        }
    }
    out
}

/// Test helper: a Go 1.18+ style inline build info blob.
#[cfg(test)]
pub(crate) fn build_inline_blob(version: &str, modinfo: &str) -> Vec<u8> {
    let mut b = BUILDINFO_MAGIC.to_vec();
    b.extend_from_slice(&[8, FLAG_INLINE]);
    b.resize(HEADER, 0);
    for s in [version.as_bytes(), modinfo.as_bytes()] {
        let mut n = s.len();
        while n >= 0x80 {
            b.push((n as u8) | 0x80);
            n >>= 7;
        }
        b.push(n as u8);
        b.extend_from_slice(s);
    }
    b
}

#[cfg(test)]
mod unit {
    use super::*;
    use crate::catalog::elf::build_test_elf;

    const MODINFO: &str = "path\texample.com/app\nmod\texample.com/app\t(devel)\t\n\
dep\tgolang.org/x/text\tv0.3.7\th1:abc=\ndep\texample.com/old\tv1.0.0\t\n=>\texample.com/new\tv1.1.0\th1:x=\n\
dep\texample.com/local\tv0.0.0\t\n=>\t../local\t\t\nbuild\t-compiler=gc\n";

    fn check(pkgs: &[Package]) {
        let got: Vec<(&str, &str)> = pkgs
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("stdlib", "1.21.3"),
                ("example.com/app", "(devel)"),
                ("golang.org/x/text", "v0.3.7"),
                ("example.com/new", "v1.1.0"),
                ("example.com/local", "v0.0.0"),
            ]
        );
        assert_eq!(pkgs[3].source_name.as_deref(), Some("example.com/old"));
        assert_eq!(pkgs[2].purl, "pkg:golang/golang.org/x/text@v0.3.7");
    }

    #[test]
    fn inline_format() {
        let mut m = vec![0u8; 16];
        m.extend_from_slice(MODINFO.as_bytes());
        m.extend_from_slice(&[0u8; 16]);
        let blob = build_inline_blob("go1.21.3", std::str::from_utf8(&m).unwrap());
        let mut bin = vec![0x55u8; 1000];
        bin.extend_from_slice(&blob);
        check(&parse_binary("/bin/app", &bin).unwrap());
        // Truncated blobs are errors, never panics.
        for cut in 0..blob.len() {
            let _ = parse_buildinfo("/bin/app", &blob[..cut], None);
        }
    }

    #[test]
    fn pointer_format() {
        let vaddr = 0x40_0000u64;
        // Layout inside the one section: [buildinfo 32][ver hdr 16][mod hdr 16][ver][modinfo].
        let base = 128u64; // build_test_elf puts the first section at file offset 128.
        let ver = b"go1.21.3";
        let modinfo = MODINFO.as_bytes();
        let ver_at = base + 64;
        let mod_at = ver_at + ver.len() as u64;
        let mut sec = BUILDINFO_MAGIC.to_vec();
        sec.extend_from_slice(&[8, 0]);
        sec.extend_from_slice(&(vaddr + base + 32).to_le_bytes());
        sec.extend_from_slice(&(vaddr + base + 48).to_le_bytes());
        for (at, len) in [(ver_at, ver.len()), (mod_at, modinfo.len())] {
            sec.extend_from_slice(&(vaddr + at).to_le_bytes());
            sec.extend_from_slice(&(len as u64).to_le_bytes());
        }
        sec.extend_from_slice(ver);
        sec.extend_from_slice(modinfo);
        let bin = build_test_elf(vaddr, &[(".go.buildinfo", &sec)]);
        assert_eq!(&bin[128..142], BUILDINFO_MAGIC);
        check(&parse_binary("/bin/app", &bin).unwrap());
    }

    #[test]
    fn no_buildinfo_is_not_an_error() {
        assert!(parse_binary("/bin/sh", b"\x7fELF junk").unwrap().is_empty());
    }
}
