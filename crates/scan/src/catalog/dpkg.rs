//! dpkg: `/var/lib/dpkg/status` and distroless `/var/lib/dpkg/status.d/*`.

use super::{field, rfc822_paragraphs, text, CatalogError, Package, PackageKind};

const FORMAT: &str = "dpkg status";

/// Fields that vcpkg writes into its own `status` file and dpkg never does.
const VCPKG_FIELDS: [&str; 3] = ["Abi", "Feature", "Default-Features"];

/// Parses a dpkg `status` file, keeping only packages whose state is `installed`.
pub fn parse_status(path: &str, data: &[u8]) -> Result<Vec<Package>, CatalogError> {
    parse(path, data, true)
}

/// Parses a distroless `status.d` file; those carry no `Status:` field, so a missing one means installed.
pub fn parse_status_d(path: &str, data: &[u8]) -> Result<Vec<Package>, CatalogError> {
    parse(path, data, false)
}

fn parse(path: &str, data: &[u8], need_status: bool) -> Result<Vec<Package>, CatalogError> {
    let text = text(data);
    let (paras, well_formed) = rfc822_paragraphs(&text);
    if !well_formed {
        return Err(CatalogError::not_format(
            path,
            FORMAT,
            "has lines that are neither fields nor continuations",
        ));
    }
    if paras.is_empty() {
        // An image may legitimately have an empty status file (dpkg installed, nothing else).
        return Ok(Vec::new());
    }
    let mut pkgs = Vec::new();
    for (i, para) in paras.iter().enumerate() {
        reject_foreign(path, i, para)?;
        let Some(name) = field(para, "Package").filter(|n| !n.is_empty()) else {
            return Err(CatalogError::not_format(
                path,
                FORMAT,
                format!("paragraph {} has no Package name", i + 1),
            ));
        };
        let installed = match field(para, "Status") {
            // "want flag state": only the last word says whether files are on disk.
            Some(s) => s.split_whitespace().nth(2) == Some("installed"),
            None => !need_status,
        };
        if !installed {
            continue;
        }
        let Some(version) = field(para, "Version").filter(|v| !v.is_empty()) else {
            return Err(CatalogError::malformed(
                path,
                FORMAT,
                format!("installed package {name} has no Version"),
            ));
        };
        if !plausible_version(version) {
            return Err(CatalogError::malformed(
                path,
                FORMAT,
                format!("package {name}: bad version {version:?}"),
            ));
        }
        let (src_name, src_version) = match field(para, "Source") {
            Some(src) => split_source(src, version),
            None => (name.to_string(), version.to_string()),
        };
        let mut p = Package {
            kind: PackageKind::Dpkg,
            ecosystem: String::new(),
            name: name.to_string(),
            version: version.to_string(),
            arch: field(para, "Architecture").map(str::to_string),
            source_name: Some(src_name),
            source_version: Some(src_version),
            path: path.to_string(),
            purl: String::new(),
        };
        p.apply_os(None);
        pkgs.push(p);
    }
    Ok(pkgs)
}

/// Rejects files that share dpkg's syntax but are something else (vcpkg's `status`).
fn reject_foreign(path: &str, i: usize, para: &[(&str, String)]) -> Result<(), CatalogError> {
    if let Some(f) = VCPKG_FIELDS.iter().find(|f| field(para, f).is_some()) {
        return Err(CatalogError::not_format(
            path,
            FORMAT,
            format!("paragraph {} has vcpkg field {f}", i + 1),
        ));
    }
    if field(para, "Type") == Some("Port") {
        return Err(CatalogError::not_format(
            path,
            FORMAT,
            format!("paragraph {} is a vcpkg port", i + 1),
        ));
    }
    if let Some(arch) = field(para, "Architecture") {
        // dpkg architectures are `all`, `amd64`, `musl-linux-arm64`…; a vcpkg triplet names
        // an OS dpkg never ran on.
        let foreign = [
            "windows",
            "osx",
            "uwp",
            "emscripten",
            "ios",
            "android",
            "mingw",
        ];
        if arch.split('-').any(|part| foreign.contains(&part))
            || !arch.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(CatalogError::not_format(
                path,
                FORMAT,
                format!(
                    "paragraph {}: architecture {arch:?} is not a dpkg architecture",
                    i + 1
                ),
            ));
        }
    }
    Ok(())
}

/// `Source: name (version)` or `Source: name`; the version defaults to the binary's.
fn split_source(src: &str, bin_version: &str) -> (String, String) {
    match src.split_once('(') {
        Some((n, v)) => (
            n.trim().to_string(),
            v.trim_end_matches(')').trim().to_string(),
        ),
        None => (src.trim().to_string(), bin_version.to_string()),
    }
}

/// Cheap sanity check of a dpkg version string: `[epoch:]upstream[-revision]`.
fn plausible_version(v: &str) -> bool {
    let upstream = match v.split_once(':') {
        Some((e, rest)) => {
            if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
                return false;
            }
            rest
        }
        None => v,
    };
    upstream
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && upstream
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+-~:_".contains(&b))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn status_keeps_only_installed_and_reads_source() {
        let data = b"Package: a\nStatus: install ok installed\nArchitecture: amd64\nSource: srca (1.0-1)\nVersion: 1:1.0-1+b1\n\n\
Package: b\nStatus: deinstall ok config-files\nVersion: 2\nArchitecture: amd64\n\n\
Package: c\nStatus: hold ok installed\nVersion: 3.0\nArchitecture: all\nDescription: x\n more\n .\n";
        let pkgs = parse_status("/var/lib/dpkg/status", data).unwrap();
        assert_eq!(pkgs.len(), 2);
        assert_eq!(pkgs[0].source_name.as_deref(), Some("srca"));
        assert_eq!(pkgs[0].source_version.as_deref(), Some("1.0-1"));
        assert_eq!(
            pkgs[0].purl,
            "pkg:deb/debian/a@1%3A1.0-1%2Bb1?arch=amd64&upstream=srca"
        );
        assert_eq!(pkgs[1].source_name.as_deref(), Some("c"));
        assert_eq!(pkgs[1].source_version.as_deref(), Some("3.0"));
    }

    #[test]
    fn status_d_needs_no_status_field() {
        let data = b"Package: tzdata\nVersion: 2024a-0+deb12u1\nArchitecture: all\n";
        assert_eq!(
            parse_status_d("/var/lib/dpkg/status.d/tzdata", data)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(parse_status("/var/lib/dpkg/status", data).unwrap().len(), 0);
    }

    #[test]
    fn rejects_an_empty_package_name() {
        // Found by the `dpkg_status` fuzz target: `Package:` made a package named "".
        let data = b"Package:\nStatus: install ok installed\nVersion: 1.0\n";
        let e = parse_status("/var/lib/dpkg/status", data).unwrap_err();
        assert!(e.to_string().contains("no Package name"), "{e}");
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_status("/var/lib/dpkg/status", b"\x00\x01binary junk\n").is_err());
        assert!(parse_status("/var/lib/dpkg/status", b"Name: x\nVersion: 1\n").is_err());
    }
}
