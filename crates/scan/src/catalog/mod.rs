//! Catalogers: pure functions from one file's bytes (plus its path in the image) to the
//! packages that file records. They never touch the filesystem of the host, except the rpm
//! SQLite reader, which needs a short-lived temp file because SQLite reads files, not bytes.

pub mod apk;
pub mod catalogers;
pub mod dpkg;
pub mod elf;
pub mod golang;
pub mod java;
pub mod npm;
pub mod os_release;
pub mod purl;
pub mod python;
pub mod rpm;
pub mod rpmdb;
pub mod rust;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use catalogers::{cataloger, Cataloger, Limit, CATALOGERS};
pub use os_release::OsRelease;

/// Which package manager or language ecosystem recorded a package; everything else about
/// it is in its [`Cataloger`] entry (same order as [`CATALOGERS`]).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum PackageKind {
    /// Debian's dpkg database.
    Dpkg,
    /// Alpine's apk database.
    Apk,
    /// An rpm database (SQLite, BerkeleyDB or NDB).
    Rpm,
    /// Installed Python distributions.
    Python,
    /// Installed npm packages.
    Npm,
    /// Modules compiled into a Go binary.
    Go,
    /// Rust crates from a Cargo.lock or cargo-auditable data.
    Cargo,
    /// Maven artifacts inside Java archives.
    Maven,
}

impl PackageKind {
    /// True for distribution packages, whose ecosystem and purl depend on the image's OS.
    pub fn is_os(self) -> bool {
        cataloger(self).is_os()
    }

    /// The kind's name in reports (`dpkg`, `python`, …), as it is serialised.
    pub fn name(self) -> &'static str {
        cataloger(self).name
    }
}

/// One installed package as recorded by a package database, manifest or binary.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Package {
    /// The cataloger that found it.
    pub kind: PackageKind,
    /// OSV-style ecosystem name (`Debian`, `Alpine`, `PyPI`, `npm`, `Go`, `crates.io`, `Maven`, or the rpm distro).
    pub ecosystem: String,
    /// Package (binary package, distribution, module, crate, `group:artifact`) name.
    pub name: String,
    /// Version exactly as recorded (rpm: `[epoch:]version-release`).
    pub version: String,
    /// Architecture, for OS packages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// Source package name (dpkg `Source:`, rpm SOURCERPM, apk origin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_name: Option<String>,
    /// Source package version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_version: Option<String>,
    /// Path of the file it was found in (`outer.jar!/inner.jar` for nested archives).
    pub path: String,
    /// Package URL.
    pub purl: String,
}

impl Package {
    /// Re-derives ecosystem and purl of an OS package from the image's os-release.
    pub fn apply_os(&mut self, os: Option<&OsRelease>) {
        let c = cataloger(self.kind);
        if c.is_os() {
            self.ecosystem = purl::os_ecosystem(self.kind, os);
            self.purl = (c.purl)(c, self, os);
        }
    }
}

/// Why a cataloger could not read a file.
#[derive(thiserror::Error, Debug)]
pub enum CatalogError {
    /// The file is not in the format its path suggests (e.g. a vcpkg file at a dpkg path).
    #[error("{path}: not a {format} file: {reason}")]
    NotThisFormat {
        /// Path of the file in the image.
        path: String,
        /// Format the cataloger expected.
        format: &'static str,
        /// What gave it away.
        reason: String,
    },
    /// The file is in the expected format but damaged.
    #[error("{path}: malformed {format} data: {reason}")]
    Malformed {
        /// Path of the file in the image.
        path: String,
        /// Format the cataloger expected.
        format: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// SQLite could not read an rpm database.
    #[error("{path}: sqlite: {source}")]
    Sqlite {
        /// Path of the file in the image.
        path: String,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// A temp file for SQLite could not be written.
    #[error("{path}: temp file: {source}")]
    Io {
        /// Path of the file in the image.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl CatalogError {
    /// Shorthand for [`CatalogError::NotThisFormat`].
    pub fn not_format(path: &str, format: &'static str, reason: impl Into<String>) -> Self {
        CatalogError::NotThisFormat {
            path: path.to_string(),
            format,
            reason: reason.into(),
        }
    }

    /// Shorthand for [`CatalogError::Malformed`].
    pub fn malformed(path: &str, format: &'static str, reason: impl Into<String>) -> Self {
        CatalogError::Malformed {
            path: path.to_string(),
            format,
            reason: reason.into(),
        }
    }
}

/// What kind of file a path holds, as far as the catalogers care.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    /// `/etc/os-release` or `/usr/lib/os-release`.
    OsRelease,
    /// `/var/lib/dpkg/status`.
    DpkgStatus,
    /// One distroless `/var/lib/dpkg/status.d/*` file.
    DpkgStatusD,
    /// `/lib/apk/db/installed`.
    ApkInstalled,
    /// rpm `rpmdb.sqlite`.
    RpmSqlite,
    /// rpm BerkeleyDB `Packages`.
    RpmBdb,
    /// rpm NDB `Packages.db`.
    RpmNdb,
    /// Python `METADATA` / `PKG-INFO` / `*.egg-info` file.
    PythonMetadata,
    /// `node_modules/<pkg>/package.json`.
    NpmPackageJson,
    /// `Cargo.lock`.
    CargoLock,
    /// `*.jar`, `*.war`, `*.ear`.
    JavaArchive,
    /// An executable ELF file (Go build info, cargo-auditable data).
    Binary,
}

impl FileKind {
    /// Which size cap applies to files of this kind.
    pub fn limit(self) -> Limit {
        catalogers::formats(self)
            .next()
            .map_or(Limit::Manifest, |f| f.limit)
    }

    /// True for package databases, which get the larger size cap.
    pub fn is_database(self) -> bool {
        self.limit() == Limit::Database
    }
}

/// Classifies an absolute, normalised image path (`/etc/os-release`) by the cataloger table;
/// binaries are not path-based.
pub fn classify(path: &str) -> Option<FileKind> {
    let (dir, base) = path.rsplit_once('/')?;
    if matches!(path, "/etc/os-release" | "/usr/lib/os-release") {
        return Some(FileKind::OsRelease);
    }
    catalogers::classify_path(&catalogers::ImagePath { path, dir, base }).map(|f| f.kind)
}

/// The result of cataloging one file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum Cataloged {
    /// An os-release file.
    Os(OsRelease),
    /// Packages (possibly none, e.g. an ELF file that is not a Go or auditable Rust binary).
    Packages(Vec<Package>),
}

/// Runs the cataloger(s) for `kind` over a file's complete contents (an ELF binary goes to
/// every cataloger that reads binaries, in table order).
pub fn catalog(kind: FileKind, path: &str, data: &[u8]) -> Result<Cataloged, CatalogError> {
    if kind == FileKind::OsRelease {
        return os_release::parse(path, data).map(Cataloged::Os);
    }
    let mut pkgs = Vec::new();
    for f in catalogers::formats(kind) {
        let found = (f.parse)(path, data)?;
        if pkgs.is_empty() {
            pkgs = found;
        } else {
            pkgs.extend(found);
        }
    }
    Ok(Cataloged::Packages(pkgs))
}

/// Splits RFC 822-style text (dpkg, PKG-INFO) into paragraphs of `(field, value)` pairs,
/// joining continuation lines; the bool is false when a non-field line was seen.
pub(crate) fn rfc822_paragraphs(text: &str) -> (Vec<Vec<(&str, String)>>, bool) {
    let mut paras = Vec::new();
    let mut cur: Vec<(&str, String)> = Vec::new();
    let mut well_formed = true;
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                paras.push(std::mem::take(&mut cur));
            }
        } else if line.starts_with([' ', '\t']) {
            match cur.last_mut() {
                Some((_, v)) => {
                    v.push('\n');
                    v.push_str(line.trim());
                }
                None => well_formed = false,
            }
        } else if let Some((k, v)) = line.split_once(':') {
            cur.push((k.trim(), v.trim().to_string()));
        } else {
            well_formed = false;
        }
    }
    if !cur.is_empty() {
        paras.push(cur);
    }
    (paras, well_formed)
}

/// First value of `field` in a paragraph (field names compare case-insensitively).
pub(crate) fn field<'a>(para: &'a [(&str, String)], name: &str) -> Option<&'a str> {
    para.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Decodes text leniently: package metadata is nearly always UTF-8, and a stray byte
/// in a description must not lose the whole database.
pub(crate) fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}
