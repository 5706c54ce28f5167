//! Installed npm packages: `node_modules/<pkg>/package.json` and `node_modules/@scope/<pkg>/package.json`.

use super::{purl, CatalogError, Package, PackageKind};

const FORMAT: &str = "npm package.json";

/// True when `dir` is a package root directly inside a `node_modules` directory; deeper
/// `package.json` files (e.g. `lib/package.json` with only `"type"`) describe no package.
pub fn is_package_root(dir: &str) -> bool {
    let mut parts = dir.rsplit('/');
    let (Some(pkg), Some(parent)) = (parts.next(), parts.next()) else {
        return false;
    };
    if pkg.is_empty() || pkg.starts_with('.') {
        return false;
    }
    if parent == "node_modules" {
        return true;
    }
    parent.starts_with('@') && parts.next() == Some("node_modules")
}

/// Parses a package.json; one without a version (private roots, workspaces) yields nothing.
pub fn parse(path: &str, data: &[u8]) -> Result<Vec<Package>, CatalogError> {
    let v: serde_json::Value = serde_json::from_slice(data)
        .map_err(|e| CatalogError::not_format(path, FORMAT, format!("not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| CatalogError::not_format(path, FORMAT, "not a JSON object"))?;
    let name = obj
        .get("name")
        .and_then(|n| n.as_str())
        .filter(|n| !n.is_empty());
    let version = obj
        .get("version")
        .and_then(|n| n.as_str())
        .filter(|n| !n.is_empty());
    match (name, version) {
        (Some(n), Some(v)) => Ok(vec![purl::language_package(PackageKind::Npm, n, v, path)]),
        _ => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn package_roots() {
        assert!(is_package_root("/app/node_modules/left-pad"));
        assert!(is_package_root("/app/node_modules/@types/node"));
        assert!(is_package_root("/app/node_modules/a/node_modules/b"));
        assert!(!is_package_root("/app/node_modules/a/lib"));
        assert!(!is_package_root("/app/node_modules/.bin"));
        assert!(!is_package_root("/app"));
    }

    #[test]
    fn parses_and_skips() {
        let p = parse(
            "/n/node_modules/@s/x/package.json",
            br#"{"name":"@s/x","version":"1.0.0"}"#,
        )
        .unwrap();
        assert_eq!(p[0].purl, "pkg:npm/%40s/x@1.0.0");
        assert!(parse("/p", br#"{"name":"root","private":true}"#)
            .unwrap()
            .is_empty());
        assert!(parse("/p", b"[1,2]").is_err());
        assert!(parse("/p", b"{\"name\":").is_err());
    }
}
