//! Rust: `Cargo.lock` (lockfile versions 1–4) and cargo-auditable `.dep-v0` data in binaries.

use std::io::Read;

use serde::Deserialize;

use super::elf::Elf;
use super::{purl, CatalogError, Package, PackageKind};

const LOCK: &str = "Cargo.lock";
const AUDITABLE: &str = "cargo-auditable data";
/// Decompressed size cap for `.dep-v0`; real ones are tens of kilobytes.
const MAX_AUDIT_JSON: u64 = 16 << 20;

#[derive(Deserialize)]
struct Lockfile {
    version: Option<i64>,
    package: Option<Vec<LockPackage>>,
}

#[derive(Deserialize)]
struct LockPackage {
    name: String,
    version: String,
    source: Option<String>,
}

/// Parses a Cargo.lock; workspace and path crates (no `source`) are not crates.io packages and are skipped.
pub fn parse_cargo_lock(path: &str, data: &[u8]) -> Result<Vec<Package>, CatalogError> {
    let text = std::str::from_utf8(data)
        .map_err(|e| CatalogError::not_format(path, LOCK, format!("not UTF-8: {e}")))?;
    let lock: Lockfile =
        toml::from_str(text).map_err(|e| CatalogError::not_format(path, LOCK, e.to_string()))?;
    if let Some(v) = lock.version.filter(|v| !(1..=4).contains(v)) {
        return Err(CatalogError::malformed(
            path,
            LOCK,
            format!("unknown lockfile version {v}"),
        ));
    }
    let Some(pkgs) = lock.package else {
        return Err(CatalogError::not_format(
            path,
            LOCK,
            "no [[package]] entries",
        ));
    };
    Ok(pkgs
        .into_iter()
        .filter(|p| {
            p.source.as_deref().is_some_and(|s| {
                s.starts_with("registry+") || s.starts_with("sparse+") || s.starts_with("git+")
            })
        })
        .map(|p| purl::language_package(PackageKind::Cargo, &p.name, &p.version, path))
        .collect())
}

#[derive(Deserialize)]
struct AuditData {
    packages: Vec<AuditPackage>,
}

#[derive(Deserialize)]
struct AuditPackage {
    name: String,
    version: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    kind: String,
}

/// Reads cargo-auditable dependency data from an ELF binary's `.dep-v0` section, if any.
pub fn parse_auditable_binary(path: &str, data: &[u8]) -> Result<Vec<Package>, CatalogError> {
    let Some(section) = Elf::parse(data).and_then(|e| e.section(".dep-v0")) else {
        return Ok(Vec::new());
    };
    parse_auditable_section(path, section)
}

/// Decodes a `.dep-v0` section: zlib-compressed JSON listing the compiled-in crates.
pub fn parse_auditable_section(path: &str, section: &[u8]) -> Result<Vec<Package>, CatalogError> {
    let mut json = Vec::new();
    flate2::read::ZlibDecoder::new(section)
        .take(MAX_AUDIT_JSON)
        .read_to_end(&mut json)
        .map_err(|e| CatalogError::malformed(path, AUDITABLE, format!("zlib: {e}")))?;
    let audit: AuditData = serde_json::from_slice(&json)
        .map_err(|e| CatalogError::malformed(path, AUDITABLE, format!("json: {e}")))?;
    Ok(audit
        .packages
        .into_iter()
        // Build-time dependencies are not in the binary; local crates are the program itself.
        .filter(|p| p.kind != "build" && p.source != "local")
        .map(|p| purl::language_package(PackageKind::Cargo, &p.name, &p.version, path))
        .collect())
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn lockfile_versions() {
        let v1 = "[[package]]\nname = \"app\"\nversion = \"0.1.0\"\ndependencies = [\"serde 1.0.0 (registry+https://github.com/rust-lang/crates.io-index)\"]\n\n\
[[package]]\nname = \"serde\"\nversion = \"1.0.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n\
[metadata]\n\"checksum serde 1.0.0 (registry+https://github.com/rust-lang/crates.io-index)\" = \"abc\"\n";
        let p = parse_cargo_lock("/src/Cargo.lock", v1.as_bytes()).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].purl, "pkg:cargo/serde@1.0.0");
        let v4 = "version = 4\n\n[[package]]\nname = \"libc\"\nversion = \"0.2.150\"\nsource = \"sparse+https://index.crates.io/\"\nchecksum = \"x\"\n";
        assert_eq!(
            parse_cargo_lock("/Cargo.lock", v4.as_bytes()).unwrap()[0].name,
            "libc"
        );
        assert!(parse_cargo_lock(
            "/Cargo.lock",
            b"version = 9\n[[package]]\nname='a'\nversion='1'\n"
        )
        .is_err());
        assert!(parse_cargo_lock("/Cargo.lock", b"not = [toml").is_err());
        assert!(parse_cargo_lock("/Cargo.lock", b"[workspace]\n").is_err());
    }

    #[test]
    fn auditable_section() {
        use std::io::Write;
        let json = br#"{"packages":[{"name":"app","version":"0.1.0","source":"local","dependencies":[1],"root":true},
{"name":"serde","version":"1.0.190","source":"crates.io"},{"name":"cc","version":"1.0.83","source":"crates.io","kind":"build"}]}"#;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(json).unwrap();
        let bin = super::super::elf::build_test_elf(0x1000, &[(".dep-v0", &z.finish().unwrap())]);
        let p = parse_auditable_binary("/usr/bin/app", &bin).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].name, "serde");
        assert!(parse_auditable_section("/x", b"not zlib").is_err());
    }
}
