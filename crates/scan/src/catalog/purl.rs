//! Package URLs (purl) and OSV ecosystem names.

use super::catalogers::{cataloger, Cataloger, Osv};
use super::{OsRelease, Package, PackageKind};

/// Percent-encodes everything but RFC 3986 unreserved characters, so any version
/// (epochs `1:2.0`, `+dfsg`, `~rc1`) round-trips through a purl parser.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Builds `pkg:type/namespace/name@version?k=v&…` with qualifiers sorted and empty ones dropped.
pub fn build(
    ty: &str,
    namespace: Option<&str>,
    name: &str,
    version: &str,
    qualifiers: &[(&str, Option<&str>)],
) -> String {
    let mut out = format!("pkg:{ty}/");
    if let Some(ns) = namespace.filter(|n| !n.is_empty()) {
        for seg in ns.split('/').filter(|s| !s.is_empty()) {
            out.push_str(&encode(seg));
            out.push('/');
        }
    }
    out.push_str(&encode(name));
    if !version.is_empty() {
        out.push('@');
        out.push_str(&encode(version));
    }
    let mut qs: Vec<(&str, &str)> = qualifiers
        .iter()
        .filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| (*k, v)))
        .collect();
    qs.sort();
    for (i, (k, v)) in qs.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(k);
        out.push('=');
        out.push_str(&encode(v));
    }
    out
}

/// Splits a `/`-separated name (Go module path, npm `@scope/name`) into namespace and name.
pub fn split_namespace(full: &str) -> (Option<&str>, &str) {
    match full.rsplit_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, full),
    }
}

/// The OSV ecosystem name for an OS package, from os-release when known.
pub fn os_ecosystem(kind: PackageKind, os: Option<&OsRelease>) -> String {
    let id = os.map(|o| o.id.as_str()).unwrap_or("");
    let named = match id {
        "debian" => "Debian",
        "ubuntu" => "Ubuntu",
        "alpine" => "Alpine",
        "wolfi" => "Wolfi",
        "chainguard" => "Chainguard",
        "rhel" => "Red Hat",
        "almalinux" => "AlmaLinux",
        "rocky" => "Rocky Linux",
        // OSV has no Mariner ecosystem: CBL-Mariner's advisories are `Azure Linux:<major>`.
        "mariner" => "Azure Linux",
        "azurelinux" => "Azure Linux",
        "sles" | "sle-micro" | "sles_sap" => "SUSE",
        "opensuse-leap" | "opensuse-tumbleweed" | "opensuse" => "openSUSE",
        "photon" => "Photon OS",
        _ => "",
    };
    if !named.is_empty() {
        return named.to_string();
    }
    // An unknown derivative keeps its own NAME, so matching against the wrong distro's
    // advisories is never silent; without os-release fall back to the package format.
    if let Some(name) = os.and_then(|o| o.name.clone().or_else(|| Some(o.id.clone()))) {
        if !name.is_empty() {
            return name;
        }
    }
    match cataloger(kind).osv {
        Osv::Distro { fallback, .. } => fallback,
        Osv::Named { name, .. } => name,
    }
    .to_string()
}

/// The purl of an OS package (`pkg:deb/debian/…`, `pkg:apk/alpine/…`, `pkg:rpm/…`).
pub fn os_purl(p: &Package, os: Option<&OsRelease>) -> String {
    let c = cataloger(p.kind);
    (c.purl)(c, p, os)
}

/// The source package as purls name it: only when it differs from the binary package.
fn upstream(p: &Package) -> Option<&str> {
    match (&p.source_name, &p.source_version) {
        (Some(n), _) if *n != p.name => Some(n.as_str()),
        _ => None,
    }
}

/// The distro id from os-release, if it names one.
fn distro_id(os: Option<&OsRelease>) -> Option<&str> {
    os.map(|o| o.id.as_str()).filter(|s| !s.is_empty())
}

/// dpkg and apk purls: `pkg:<type>/<distro id>/name@version?arch=&upstream=&distro=`.
pub(super) fn distro(c: &Cataloger, p: &Package, os: Option<&OsRelease>) -> String {
    let fallback = match c.osv {
        Osv::Distro { namespace, .. } => namespace,
        Osv::Named { .. } => None,
    };
    let distro = os.map(OsRelease::distro_qualifier);
    build(
        c.purl_type,
        distro_id(os).or(fallback),
        &p.name,
        &p.version,
        &[
            ("arch", p.arch.as_deref()),
            ("upstream", upstream(p)),
            ("distro", distro.as_deref()),
        ],
    )
}

/// rpm purls carry the epoch as a qualifier, not in the version, and the source rpm.
pub(super) fn rpm(c: &Cataloger, p: &Package, os: Option<&OsRelease>) -> String {
    let distro = os.map(OsRelease::distro_qualifier);
    let (epoch, vr) = match p.version.split_once(':') {
        Some((e, vr)) if e.bytes().all(|b| b.is_ascii_digit()) => (Some(e), vr),
        _ => (None, p.version.as_str()),
    };
    let srpm = match (&p.source_name, &p.source_version) {
        (Some(n), Some(v)) => Some(format!("{n}-{v}.src.rpm")),
        _ => None,
    };
    build(
        c.purl_type,
        distro_id(os),
        &p.name,
        vr,
        &[
            ("arch", p.arch.as_deref()),
            ("epoch", epoch),
            ("upstream", srpm.as_deref()),
            ("distro", distro.as_deref()),
        ],
    )
}

/// A purl with the name as is (crates).
pub(super) fn plain(c: &Cataloger, p: &Package, _: Option<&OsRelease>) -> String {
    build(c.purl_type, None, &p.name, &p.version, &[])
}

/// A purl with the PEP 503 name (PyPI).
pub(super) fn pypi(c: &Cataloger, p: &Package, _: Option<&OsRelease>) -> String {
    build(c.purl_type, None, &pep503(&p.name), &p.version, &[])
}

/// A purl whose `/`-separated name prefix is the namespace (npm scopes, Go module paths).
pub(super) fn namespaced(c: &Cataloger, p: &Package, _: Option<&OsRelease>) -> String {
    let (ns, n) = split_namespace(&p.name);
    build(c.purl_type, ns, n, &p.version, &[])
}

/// A purl from `group:artifact`.
pub(super) fn maven(c: &Cataloger, p: &Package, _: Option<&OsRelease>) -> String {
    let (g, a) = p.name.split_once(':').unwrap_or(("", &p.name));
    build(c.purl_type, Some(g), a, &p.version, &[])
}

/// Fills in ecosystem and purl of a language package from its kind, name and version.
pub fn language_package(kind: PackageKind, name: &str, version: &str, path: &str) -> Package {
    let c = cataloger(kind);
    let mut p = Package {
        kind,
        ecosystem: c.osv_name().unwrap_or("").to_string(),
        name: name.to_string(),
        version: version.to_string(),
        arch: None,
        source_name: None,
        source_version: None,
        path: path.to_string(),
        purl: String::new(),
    };
    if !c.is_os() {
        p.purl = (c.purl)(c, &p, None);
    }
    p
}

/// PEP 503 normalised project name, which is what PyPI purls and OSV use.
pub fn pep503(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn encodes_versions_and_sorts_qualifiers() {
        let p = build(
            "deb",
            Some("debian"),
            "libc6",
            "1:2.36-9+deb12u4",
            &[
                ("distro", Some("debian-12")),
                ("arch", Some("amd64")),
                ("upstream", None),
            ],
        );
        assert_eq!(
            p,
            "pkg:deb/debian/libc6@1%3A2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12"
        );
    }

    #[test]
    fn language_purls() {
        let npm = language_package(PackageKind::Npm, "@types/node", "20.1.0", "/x");
        assert_eq!(npm.purl, "pkg:npm/%40types/node@20.1.0");
        let go = language_package(PackageKind::Go, "github.com/a/b", "v1.2.3", "/x");
        assert_eq!(go.purl, "pkg:golang/github.com/a/b@v1.2.3");
        let py = language_package(PackageKind::Python, "Zope.Interface_x", "5.0", "/x");
        assert_eq!(py.purl, "pkg:pypi/zope-interface-x@5.0");
        let mvn = language_package(PackageKind::Maven, "org.example:demo", "1.0", "/x");
        assert_eq!(mvn.purl, "pkg:maven/org.example/demo@1.0");
    }
}
