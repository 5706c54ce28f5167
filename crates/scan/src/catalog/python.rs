//! Installed Python distributions: `*.dist-info/METADATA`, `*.egg-info/PKG-INFO`, `*.egg-info` files.

use super::{field, purl, rfc822_paragraphs, text, CatalogError, Package, PackageKind};

const FORMAT: &str = "Python core metadata";

/// Parses core metadata headers (Name, Version); the body after the first blank line is ignored.
pub fn parse(path: &str, data: &[u8]) -> Result<Vec<Package>, CatalogError> {
    let text = text(data);
    // Only the header block matters, and the description body may contain anything.
    let header_end = text
        .find("\n\n")
        .or_else(|| text.find("\r\n\r\n"))
        .unwrap_or(text.len());
    let (paras, _) = rfc822_paragraphs(&text[..header_end]);
    let Some(head) = paras.first() else {
        return Err(CatalogError::not_format(path, FORMAT, "no header fields"));
    };
    if field(head, "Metadata-Version").is_none() {
        return Err(CatalogError::not_format(
            path,
            FORMAT,
            "no Metadata-Version field",
        ));
    }
    let name = field(head, "Name").filter(|n| !n.is_empty());
    let version = field(head, "Version").filter(|v| !v.is_empty());
    match (name, version) {
        (Some(n), Some(v)) => Ok(vec![purl::language_package(
            PackageKind::Python,
            n,
            v,
            path,
        )]),
        _ => Err(CatalogError::malformed(
            path,
            FORMAT,
            "missing Name or Version",
        )),
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn parses_metadata() {
        let m = b"Metadata-Version: 2.1\nName: Requests_OAuth\nVersion: 2.31.0\nSummary: x\n\nName: not-this\n";
        let p = parse(
            "/usr/lib/python3/dist-packages/requests-2.31.0.dist-info/METADATA",
            m,
        )
        .unwrap();
        assert_eq!(p[0].name, "Requests_OAuth");
        assert_eq!(p[0].purl, "pkg:pypi/requests-oauth@2.31.0");
        assert!(parse("/x.egg-info", b"just text").is_err());
        assert!(parse("/x.egg-info", b"Metadata-Version: 1.0\nName: x\n").is_err());
    }
}
