//! The one table of catalogers. Each entry says everything the scanner needs to know about one
//! package ecosystem: which files hold its packages and how they are parsed, the kind's name,
//! the purl type, the OSV ecosystem (fixed, or the distro's from os-release) and the version
//! scheme advisories are ordered in. Classification, parsing, purls, OSV lookup and version
//! ordering all read this table, so adding an ecosystem is one entry (plus its parser module,
//! and the `PackageKind`/`FileKind` variants that name it in stored analyses).

use super::{
    apk, dpkg, golang, java, npm, purl, python, rpm, rpmdb, rust, CatalogError, FileKind,
    OsRelease, Package, PackageKind,
};
use crate::osv::pep503;
use crate::version::Ecosystem as Scheme;

/// One package ecosystem's cataloger.
pub struct Cataloger {
    /// The kind its packages carry.
    pub kind: PackageKind,
    /// The kind's name in reports and stored data (`dpkg`, `python`, …).
    pub name: &'static str,
    /// The purl type (`deb`, `pypi`, …).
    pub purl_type: &'static str,
    /// Where the OSV ecosystem of its packages comes from.
    pub osv: Osv,
    /// How versions of its packages are ordered.
    pub scheme: Scheme,
    /// The files it reads, tried in table order (the first match wins).
    pub files: &'static [FileFormat],
    /// Builds a package's purl (from the entry's purl type and, for OS packages, os-release).
    pub purl: fn(&Cataloger, &Package, Option<&OsRelease>) -> String,
}

/// The OSV ecosystem of an ecosystem's packages.
pub enum Osv {
    /// A language ecosystem with one OSV name; `normalise` maps package names to OSV's.
    Named {
        /// The OSV ecosystem name (`PyPI`).
        name: &'static str,
        /// Package name normalisation for lookups.
        normalise: fn(&str) -> String,
    },
    /// An OS package manager: the distro's ecosystem from os-release (see
    /// [`purl::os_ecosystem`]), `fallback` without one.
    Distro {
        /// Ecosystem name when the image has no os-release.
        fallback: &'static str,
        /// purl namespace when os-release names no distro id (`None`: no namespace).
        namespace: Option<&'static str>,
        /// True when the distro's advisories name source packages, not binary ones.
        by_source: bool,
    },
}

/// One file format a cataloger reads.
pub struct FileFormat {
    /// Its kind, as recorded in layer analyses.
    pub kind: FileKind,
    /// Which files hold it.
    pub matches: Match,
    /// Parses a whole file (`path` is where it is in the image).
    pub parse: fn(&str, &[u8]) -> Result<Vec<Package>, CatalogError>,
    /// Which size cap applies.
    pub limit: Limit,
}

/// How a format's files are recognised.
pub enum Match {
    /// By their path in the image.
    Path(fn(&ImagePath) -> bool),
    /// Executable files (ELF), recognised by content, not path.
    Executable,
}

/// The size caps of layer analysis (the byte values are in `layer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// Package databases.
    Database,
    /// Manifests and small metadata files.
    Manifest,
    /// Archives read into memory (jar, war, ear).
    Archive,
    /// Executables.
    Binary,
}

/// An absolute, normalised image path split once for the matchers.
pub struct ImagePath<'a> {
    /// The whole path (`/var/lib/dpkg/status`).
    pub path: &'a str,
    /// Everything before the last `/` (`/var/lib/dpkg`).
    pub dir: &'a str,
    /// The file name (`status`).
    pub base: &'a str,
}

const RPM_DIRS: [&str; 3] = ["/var/lib/rpm/", "/usr/lib/sysimage/rpm/", "/usr/share/rpm/"];

/// Every cataloger, in `PackageKind` order (classification tries them in this order).
pub static CATALOGERS: &[Cataloger] = &[
    Cataloger {
        kind: PackageKind::Dpkg,
        name: "dpkg",
        purl_type: "deb",
        osv: Osv::Distro {
            fallback: "Debian",
            namespace: Some("debian"),
            by_source: true,
        },
        scheme: Scheme::Dpkg,
        files: &[
            FileFormat {
                kind: FileKind::DpkgStatus,
                matches: Match::Path(|p| p.path == "/var/lib/dpkg/status"),
                parse: dpkg::parse_status,
                limit: Limit::Database,
            },
            FileFormat {
                kind: FileKind::DpkgStatusD,
                // distroless keeps `<pkg>.md5sums` next to each `<pkg>` control file.
                matches: Match::Path(|p| {
                    p.dir == "/var/lib/dpkg/status.d"
                        && !p.base.ends_with(".md5sums")
                        && !p.base.is_empty()
                }),
                parse: dpkg::parse_status_d,
                limit: Limit::Manifest,
            },
        ],
        purl: purl::distro,
    },
    Cataloger {
        kind: PackageKind::Apk,
        name: "apk",
        purl_type: "apk",
        osv: Osv::Distro {
            fallback: "Alpine",
            namespace: Some("alpine"),
            by_source: true,
        },
        scheme: Scheme::Apk,
        files: &[FileFormat {
            kind: FileKind::ApkInstalled,
            matches: Match::Path(|p| {
                matches!(
                    p.path,
                    "/lib/apk/db/installed" | "/usr/lib/apk/db/installed"
                )
            }),
            parse: apk::parse,
            limit: Limit::Database,
        }],
        purl: purl::distro,
    },
    Cataloger {
        kind: PackageKind::Rpm,
        name: "rpm",
        purl_type: "rpm",
        osv: Osv::Distro {
            fallback: "rpm",
            namespace: None,
            by_source: false,
        },
        scheme: Scheme::Rpm,
        files: &[
            FileFormat {
                kind: FileKind::RpmSqlite,
                matches: Match::Path(|p| p.base == "rpmdb.sqlite" && in_rpm_dir(p)),
                parse: rpm::parse_sqlite,
                limit: Limit::Database,
            },
            FileFormat {
                kind: FileKind::RpmBdb,
                matches: Match::Path(|p| p.base == "Packages" && in_rpm_dir(p)),
                parse: rpmdb::parse_bdb,
                limit: Limit::Database,
            },
            FileFormat {
                kind: FileKind::RpmNdb,
                matches: Match::Path(|p| p.base == "Packages.db" && in_rpm_dir(p)),
                parse: rpmdb::parse_ndb,
                limit: Limit::Database,
            },
        ],
        purl: purl::rpm,
    },
    Cataloger {
        kind: PackageKind::Python,
        name: "python",
        purl_type: "pypi",
        osv: Osv::Named {
            name: "PyPI",
            normalise: pep503,
        },
        scheme: Scheme::Pep440,
        files: &[FileFormat {
            kind: FileKind::PythonMetadata,
            matches: Match::Path(|p| {
                (p.base == "METADATA" && p.dir.ends_with(".dist-info"))
                    || (p.base == "PKG-INFO" && p.dir.ends_with(".egg-info"))
                    || p.base.ends_with(".egg-info")
            }),
            parse: python::parse,
            limit: Limit::Manifest,
        }],
        purl: purl::pypi,
    },
    Cataloger {
        kind: PackageKind::Npm,
        name: "npm",
        purl_type: "npm",
        osv: Osv::Named {
            name: "npm",
            normalise: trimmed,
        },
        scheme: Scheme::Semver,
        files: &[FileFormat {
            kind: FileKind::NpmPackageJson,
            matches: Match::Path(|p| p.base == "package.json" && npm::is_package_root(p.dir)),
            parse: npm::parse,
            limit: Limit::Manifest,
        }],
        purl: purl::namespaced,
    },
    Cataloger {
        kind: PackageKind::Go,
        name: "go",
        purl_type: "golang",
        osv: Osv::Named {
            name: "Go",
            normalise: trimmed,
        },
        scheme: Scheme::Go,
        files: &[FileFormat {
            kind: FileKind::Binary,
            matches: Match::Executable,
            parse: golang::parse_binary,
            limit: Limit::Binary,
        }],
        purl: purl::namespaced,
    },
    Cataloger {
        kind: PackageKind::Cargo,
        name: "cargo",
        purl_type: "cargo",
        osv: Osv::Named {
            name: "crates.io",
            normalise: trimmed,
        },
        scheme: Scheme::Semver,
        files: &[
            FileFormat {
                kind: FileKind::CargoLock,
                matches: Match::Path(|p| p.base == "Cargo.lock"),
                parse: rust::parse_cargo_lock,
                limit: Limit::Manifest,
            },
            FileFormat {
                kind: FileKind::Binary,
                matches: Match::Executable,
                parse: rust::parse_auditable_binary,
                limit: Limit::Binary,
            },
        ],
        purl: purl::plain,
    },
    Cataloger {
        kind: PackageKind::Maven,
        name: "maven",
        purl_type: "maven",
        osv: Osv::Named {
            name: "Maven",
            normalise: trimmed,
        },
        scheme: Scheme::Maven,
        files: &[FileFormat {
            kind: FileKind::JavaArchive,
            matches: Match::Path(|p| {
                [".jar", ".war", ".ear"]
                    .iter()
                    .any(|e| ends_with_ignore_case(p.base, e))
            }),
            parse: java::parse_archive,
            limit: Limit::Archive,
        }],
        purl: purl::maven,
    },
];

fn in_rpm_dir(p: &ImagePath) -> bool {
    RPM_DIRS
        .iter()
        .any(|d| p.path.len() == d.len() + p.base.len() && p.path.starts_with(d))
}

fn ends_with_ignore_case(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// Names compared as written, without surrounding blanks.
fn trimmed(name: &str) -> String {
    name.trim().to_string()
}

/// The cataloger of a kind.
pub fn cataloger(kind: PackageKind) -> &'static Cataloger {
    // The table is in `PackageKind` order (a unit test holds it to that).
    &CATALOGERS[kind as usize]
}

/// The language cataloger whose OSV ecosystem is `name` (`PyPI`, `crates.io`).
pub fn by_osv_name(name: &str) -> Option<&'static Cataloger> {
    CATALOGERS
        .iter()
        .find(|c| matches!(c.osv, Osv::Named { name: n, .. } if n == name))
}

/// The first path-matched format for an image path (binaries are recognised by content).
pub fn classify_path(p: &ImagePath) -> Option<&'static FileFormat> {
    CATALOGERS
        .iter()
        .flat_map(|c| c.files)
        .find(|f| match f.matches {
            Match::Path(m) => m(p),
            Match::Executable => false,
        })
}

/// Every format of one file kind, in table order (ELF binaries are read by Go and Rust).
pub fn formats(kind: FileKind) -> impl Iterator<Item = &'static FileFormat> {
    CATALOGERS
        .iter()
        .flat_map(|c| c.files)
        .filter(move |f| f.kind == kind)
}

impl Cataloger {
    /// The OSV name of a language ecosystem (`None` for OS package managers).
    pub fn osv_name(&self) -> Option<&'static str> {
        match self.osv {
            Osv::Named { name, .. } => Some(name),
            Osv::Distro { .. } => None,
        }
    }

    /// A package name as OSV lookups key it.
    pub fn normalise(&self, name: &str) -> String {
        match self.osv {
            Osv::Named { normalise, .. } => normalise(name),
            Osv::Distro { .. } => trimmed(name),
        }
    }

    /// True for OS package managers, whose ecosystem and purl depend on the image's OS.
    pub fn is_os(&self) -> bool {
        matches!(self.osv, Osv::Distro { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::classify;

    /// A path each path-matched format must recognise.
    fn sample_path(kind: FileKind) -> &'static str {
        match kind {
            FileKind::OsRelease => "/etc/os-release",
            FileKind::DpkgStatus => "/var/lib/dpkg/status",
            FileKind::DpkgStatusD => "/var/lib/dpkg/status.d/base-files",
            FileKind::ApkInstalled => "/lib/apk/db/installed",
            FileKind::RpmSqlite => "/var/lib/rpm/rpmdb.sqlite",
            FileKind::RpmBdb => "/var/lib/rpm/Packages",
            FileKind::RpmNdb => "/usr/lib/sysimage/rpm/Packages.db",
            FileKind::PythonMetadata => "/usr/lib/python3/site-packages/a-1.0.dist-info/METADATA",
            FileKind::NpmPackageJson => "/app/node_modules/left-pad/package.json",
            FileKind::CargoLock => "/src/Cargo.lock",
            FileKind::JavaArchive => "/opt/app/lib/demo.JAR",
            FileKind::Binary => "/usr/bin/app",
        }
    }

    #[test]
    fn the_table_is_consistent() {
        let mut seen = std::collections::HashSet::new();
        for (i, c) in CATALOGERS.iter().enumerate() {
            assert_eq!(
                c.kind as usize, i,
                "{}: table out of PackageKind order",
                c.name
            );
            assert_eq!(cataloger(c.kind).name, c.name);
            let serde_name = serde_json::to_value(c.kind).unwrap();
            assert_eq!(serde_name, c.name, "kind name matches its stored spelling");
            assert_eq!(c.kind.name(), c.name);
            assert!(seen.insert(c.purl_type), "{}: purl type used twice", c.name);
            assert!(!c.purl_type.is_empty() && !c.files.is_empty(), "{}", c.name);
            // Its purl has its type, and its OSV ecosystem orders versions by its scheme.
            let p = Package {
                kind: c.kind,
                ecosystem: String::new(),
                name: "g:a".into(),
                version: "1.0".into(),
                arch: None,
                source_name: None,
                source_version: None,
                path: "/x".into(),
                purl: String::new(),
            };
            let purl = (c.purl)(c, &p, None);
            assert!(
                purl.starts_with(&format!("pkg:{}/", c.purl_type)),
                "{}: {purl}",
                c.name
            );
            let eco = match &c.osv {
                Osv::Named { name, .. } => {
                    assert_eq!(by_osv_name(name).map(|x| x.kind), Some(c.kind));
                    name.to_string()
                }
                Osv::Distro { fallback, .. } => {
                    assert!(c.kind.is_os());
                    fallback.to_string()
                }
            };
            if c.kind != PackageKind::Rpm {
                // The rpm fallback names no distro: its scheme comes from the distro's name.
                let parsed = crate::osv::OsvEcosystem::parse(&eco);
                assert_eq!(parsed.scheme(), Some(c.scheme), "{}: {eco}", c.name);
            }
            for f in c.files {
                let path = sample_path(f.kind);
                match f.matches {
                    Match::Path(m) => {
                        let (dir, base) = path.rsplit_once('/').unwrap();
                        assert!(m(&ImagePath { path, dir, base }), "{}: {path}", c.name);
                        assert_eq!(classify(path), Some(f.kind), "{path} goes to its format");
                    }
                    Match::Executable => assert_eq!(classify(path), None, "by content only"),
                }
            }
        }
        assert_eq!(
            crate::osv::OsvEcosystem::parse("Rocky Linux:9").scheme(),
            Some(cataloger(PackageKind::Rpm).scheme)
        );
        assert_eq!(
            classify(sample_path(FileKind::OsRelease)),
            Some(FileKind::OsRelease)
        );
    }

    #[test]
    fn classification_keeps_its_precedence_and_edges() {
        let cases = [
            ("/usr/lib/os-release", Some(FileKind::OsRelease)),
            ("/var/lib/dpkg/status-old", None),
            ("/var/lib/dpkg/status.d/libc6.md5sums", None),
            // The dpkg directory wins over a name another cataloger would claim.
            (
                "/var/lib/dpkg/status.d/foo.egg-info",
                Some(FileKind::DpkgStatusD),
            ),
            ("/usr/lib/apk/db/installed", Some(FileKind::ApkInstalled)),
            ("/usr/share/rpm/Packages.db", Some(FileKind::RpmNdb)),
            ("/var/lib/rpm/sub/Packages", None),
            ("/opt/Packages", None),
            ("/x/foo.egg-info", Some(FileKind::PythonMetadata)),
            ("/x/foo.egg-info/PKG-INFO", Some(FileKind::PythonMetadata)),
            ("/x/METADATA", None),
            ("/app/package.json", None),
            (
                "/app/node_modules/@scope/pkg/package.json",
                Some(FileKind::NpmPackageJson),
            ),
            ("/app/node_modules/pkg/lib/package.json", None),
            ("/Cargo.lock", Some(FileKind::CargoLock)),
            ("/srv/app.War", Some(FileKind::JavaArchive)),
            ("/srv/jar", None),
            ("/usr/bin/app", None),
        ];
        for (path, kind) in cases {
            assert_eq!(classify(path), kind, "{path}");
        }
        assert_eq!(FileKind::RpmBdb.limit(), Limit::Database);
        assert_eq!(FileKind::JavaArchive.limit(), Limit::Archive);
        assert_eq!(FileKind::OsRelease.limit(), Limit::Manifest);
        assert!(!FileKind::DpkgStatusD.is_database());
    }
}
