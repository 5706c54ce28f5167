//! Alpine apk: `/lib/apk/db/installed`, one `X:value` line per field, blank line between packages.

use super::{text, CatalogError, Package, PackageKind};

const FORMAT: &str = "apk installed database";

/// Parses an apk `installed` database (P: name, V: version, A: arch, o: origin).
pub fn parse(path: &str, data: &[u8]) -> Result<Vec<Package>, CatalogError> {
    let text = text(data);
    let mut pkgs = Vec::new();
    let mut cur = Entry::default();
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() {
            cur.finish(path, &mut pkgs);
            continue;
        }
        let b = line.as_bytes();
        // Every line of the database is a one-letter tag and a colon.
        if b.len() < 2 || b[1] != b':' || !b[0].is_ascii_alphabetic() {
            return Err(CatalogError::not_format(
                path,
                FORMAT,
                format!("line {} is not an X:value line", n + 1),
            ));
        }
        let value = &line[2..];
        match b[0] {
            b'P' => {
                // A P: line without a blank line before it still starts a new package.
                cur.finish(path, &mut pkgs);
                cur.name = Some(value.to_string());
            }
            b'V' => cur.version = Some(value.to_string()),
            b'A' => cur.arch = Some(value.to_string()),
            b'o' => cur.origin = Some(value.to_string()),
            _ => {}
        }
    }
    cur.finish(path, &mut pkgs);
    Ok(pkgs)
}

#[derive(Default)]
struct Entry {
    name: Option<String>,
    version: Option<String>,
    arch: Option<String>,
    origin: Option<String>,
}

impl Entry {
    /// Emits the package being read, skipping entries without name or version (apk itself does too).
    fn finish(&mut self, path: &str, out: &mut Vec<Package>) {
        let e = std::mem::take(self);
        // A bare `P:` or `V:` line names nothing: no package, as with no line at all.
        let non_empty = |v: Option<String>| v.filter(|v| !v.is_empty());
        let (Some(name), Some(version)) = (non_empty(e.name), non_empty(e.version)) else {
            return;
        };
        let mut p = Package {
            kind: PackageKind::Apk,
            ecosystem: String::new(),
            source_name: Some(e.origin.unwrap_or_else(|| name.clone())),
            // apk builds every subpackage from its origin at the same version.
            source_version: Some(version.clone()),
            name,
            version,
            arch: e.arch,
            path: path.to_string(),
            purl: String::new(),
        };
        p.apply_os(None);
        out.push(p);
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let db = b"C:Q1x=\nP:musl\nV:1.2.4-r2\nA:x86_64\no:musl\n\nP:noversion\n\nP:libcrypto3\nV:3.1.4-r1\nA:aarch64\no:openssl\n";
        let pkgs = parse("/lib/apk/db/installed", db).unwrap();
        assert_eq!(pkgs.len(), 2);
        assert_eq!(pkgs[1].source_name.as_deref(), Some("openssl"));
        assert_eq!(
            pkgs[1].purl,
            "pkg:apk/alpine/libcrypto3@3.1.4-r1?arch=aarch64&upstream=openssl"
        );
        assert!(parse("/lib/apk/db/installed", b"Package: x\nVersion: 1\n").is_err());
    }

    #[test]
    fn empty_name_or_version_is_no_package() {
        // Found by the `apk_installed` fuzz target: `P:` made a package named "".
        let db = b"P:\nV:1.0-r0\n\nP:musl\nV:\n\nP:zlib\nV:1.3-r0\n";
        let pkgs = parse("/lib/apk/db/installed", db).unwrap();
        assert_eq!(pkgs.len(), 1);
        assert_eq!(pkgs[0].name, "zlib");
    }
}
