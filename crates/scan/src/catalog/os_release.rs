//! `/etc/os-release` and `/usr/lib/os-release` (freedesktop.org os-release(5)).

use serde::{Deserialize, Serialize};

use super::CatalogError;

const FORMAT: &str = "os-release";

/// The fields of an os-release file that identify the distribution.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct OsRelease {
    /// `ID`, e.g. `debian`; os-release(5) says it defaults to `linux`.
    pub id: String,
    /// `ID_LIKE`, split on spaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub id_like: Vec<String>,
    /// `NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `VERSION_ID`, e.g. `12`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// `VERSION_CODENAME`, e.g. `bookworm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_codename: Option<String>,
    /// `PRETTY_NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretty_name: Option<String>,
}

impl OsRelease {
    /// The purl `distro` qualifier, `<id>-<version_id>` (e.g. `debian-12`).
    pub fn distro_qualifier(&self) -> String {
        match &self.version_id {
            Some(v) => format!("{}-{}", self.id, v),
            None => self.id.clone(),
        }
    }
}

/// Parses an os-release file; rejects files with no recognisable `KEY=value` line.
pub fn parse(path: &str, data: &[u8]) -> Result<OsRelease, CatalogError> {
    let text = std::str::from_utf8(data)
        .map_err(|e| CatalogError::not_format(path, FORMAT, format!("not UTF-8: {e}")))?;
    let mut os = OsRelease::default();
    let mut seen = 0usize;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            return Err(CatalogError::not_format(
                path,
                FORMAT,
                format!("line {}: no '='", n + 1),
            ));
        };
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(CatalogError::not_format(
                path,
                FORMAT,
                format!("line {}: bad key {key:?}", n + 1),
            ));
        }
        seen += 1;
        let value = unquote(raw);
        match key {
            "ID" => os.id = value,
            "ID_LIKE" => os.id_like = value.split_whitespace().map(str::to_string).collect(),
            "NAME" => os.name = Some(value),
            "VERSION_ID" => os.version_id = Some(value),
            "VERSION_CODENAME" => os.version_codename = Some(value),
            "PRETTY_NAME" => os.pretty_name = Some(value),
            _ => {}
        }
    }
    if seen == 0 {
        return Err(CatalogError::not_format(path, FORMAT, "no KEY=value lines"));
    }
    if os.id.is_empty() {
        os.id = "linux".to_string();
    }
    Ok(os)
}

/// Strips shell-style quotes; inside double quotes `\` escapes `"`, `\`, `$` and `` ` ``.
fn unquote(raw: &str) -> String {
    let raw = raw.trim();
    let bytes = raw.as_bytes();
    if bytes.len() >= 2 && bytes[0] == b'\'' && bytes[bytes.len() - 1] == b'\'' {
        return raw[1..raw.len() - 1].to_string();
    }
    if bytes.len() >= 2 && bytes[0] == b'"' && bytes[bytes.len() - 1] == b'"' {
        let mut out = String::new();
        let mut chars = raw[1..raw.len() - 1].chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else {
                out.push(c);
            }
        }
        return out;
    }
    raw.to_string()
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn parses_debian() {
        let data = b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n";
        let os = parse("/etc/os-release", data).unwrap();
        assert_eq!(os.id, "debian");
        assert_eq!(os.version_id.as_deref(), Some("12"));
        assert_eq!(os.version_codename.as_deref(), Some("bookworm"));
        assert_eq!(
            os.pretty_name.as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(os.distro_qualifier(), "debian-12");
    }

    #[test]
    fn rejects_non_os_release() {
        assert!(parse("/etc/os-release", b"<html>\n").is_err());
        assert!(parse("/etc/os-release", b"\xff\xfe").is_err());
        assert!(parse("/etc/os-release", b"").is_err());
    }
}
