//! OSV ecosystem strings (`Debian:12`, `Alpine:v3.19`, `PyPI`, …): which
//! version ordering they use, how package names are normalised, and the key
//! under which records are indexed (distro releases are kept apart).

use std::fmt;

use super::naming::{rpm_distro, Naming, ReleaseKey};
use crate::catalog::{cataloger, catalogers, PackageKind};
use crate::version::Ecosystem as Scheme;

/// The ecosystem families the matcher knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Debian (`Debian:<major>`); matched by source package.
    Debian,
    /// Ubuntu (`Ubuntu:<release>[:LTS]`); matched by source package.
    Ubuntu,
    /// Alpine and other apk distros (Wolfi, Chainguard); matched by origin package.
    Alpine,
    /// RPM distros of the naming table (Red Hat, AlmaLinux, SUSE, Azure Linux, …).
    Rpm,
    /// A language ecosystem of the cataloger table (PyPI, npm, Go, crates.io, Maven).
    Language(PackageKind),
    /// Anything else: only `versions` lists match.
    Other,
}

impl Family {
    /// The cataloger whose packages this family's advisories are about.
    pub fn kind(self) -> Option<PackageKind> {
        match self {
            Family::Debian | Family::Ubuntu => Some(PackageKind::Dpkg),
            Family::Alpine => Some(PackageKind::Apk),
            Family::Rpm => Some(PackageKind::Rpm),
            Family::Language(k) => Some(k),
            Family::Other => None,
        }
    }
}

/// A parsed OSV ecosystem string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OsvEcosystem {
    family: Family,
    /// The name before the first `:` as written (`Debian`, `Rocky Linux`).
    name: String,
    /// Normalised release (`12`, `3.19`, `22.04`), if the string has one.
    release: Option<String>,
}

impl OsvEcosystem {
    /// Parses an ecosystem string such as `Debian:12` or `crates.io`.
    pub fn parse(s: &str) -> Self {
        let s = s.trim();
        let (name, release) = match s.split_once(':') {
            Some((n, r)) => (n.trim(), Some(r.trim())),
            None => (s, None),
        };
        let rpm = rpm_distro(name);
        // Aliases (CBL-Mariner for Azure Linux) key under the ecosystem's own name.
        let name = rpm.map_or(name, |d| d.name);
        let family = match name {
            "Debian" => Family::Debian,
            "Ubuntu" => Family::Ubuntu,
            "Alpine" | "Wolfi" | "Chainguard" => Family::Alpine,
            _ if rpm.is_some() => Family::Rpm,
            n => match catalogers::by_osv_name(n) {
                Some(c) => Family::Language(c.kind),
                None => Family::Other,
            },
        };
        let release = release.filter(|r| !r.is_empty()).map(|r| match rpm {
            Some(d) => rpm_release(d.release, r),
            None => normalise_release(family, r),
        });
        OsvEcosystem {
            family,
            name: name.to_string(),
            release,
        }
    }

    /// The family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The normalised release, if any.
    pub fn release(&self) -> Option<&str> {
        self.release.as_deref()
    }

    /// How versions of this ecosystem are ordered (`None`: not supported).
    pub fn scheme(&self) -> Option<Scheme> {
        self.family.kind().map(|k| cataloger(k).scheme)
    }

    /// What the `name` of this ecosystem's records holds: per RPM distro from the schema's
    /// table, else the cataloger's `by_source` (Debian, Ubuntu, Alpine name source packages).
    pub fn naming(&self) -> Naming {
        if self.family == Family::Rpm {
            return rpm_distro(&self.name).map_or(Naming::Binary, |d| d.naming);
        }
        let by_source = self.family.kind().is_some_and(|k| {
            matches!(
                cataloger(k).osv,
                catalogers::Osv::Distro {
                    by_source: true,
                    ..
                }
            )
        });
        if by_source {
            Naming::Source
        } else {
            Naming::Binary
        }
    }

    /// Normalises a package name for lookup (PEP 503 for PyPI, unchanged otherwise).
    pub fn normalise_name(&self, name: &str) -> String {
        match self.family {
            Family::Language(k) => cataloger(k).normalise(name),
            _ => name.trim().to_string(),
        }
    }
}

impl fmt::Display for OsvEcosystem {
    /// The index key: name plus normalised release (`Debian:12`, `Alpine:3.19`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(r) = &self.release {
            write!(f, ":{r}")?;
        }
        Ok(())
    }
}

/// Makes releases from OSV and from an image's os-release agree:
/// Debian `12.5` → `12`, Alpine `v3.19.1` → `3.19`, Ubuntu `22.04:LTS` → `22.04`
/// (RPM distros: [`rpm_release`]).
fn normalise_release(family: Family, r: &str) -> String {
    match family {
        Family::Debian => r.split('.').next().unwrap_or(r).to_string(),
        Family::Alpine => {
            let r = r.strip_prefix('v').unwrap_or(r);
            r.split('.').take(2).collect::<Vec<_>>().join(".")
        }
        // "LTS" only marks support length; "Pro:…" stays, as its fixes differ.
        Family::Ubuntu => r.strip_suffix(":LTS").unwrap_or(r).to_string(),
        _ => r.to_string(),
    }
}

/// RPM distros name releases their own way. Red Hat's OSV ecosystems carry a product stream
/// (`enterprise_linux:9::appstream`, `rhel_eus:9.2::baseos`) and Rocky, Alma and Azure Linux
/// name the major only, while os-release says `9.3` or `3.0`: all of them key on the major
/// release. SUSE's name a product and service pack (`Linux Enterprise Server 15 SP5`,
/// `openSUSE:Leap 15.5`) where os-release says `15.5`; Tumbleweed is rolling (os-release
/// gives a date).
fn rpm_release(key: ReleaseKey, r: &str) -> String {
    let major_of = |r: &str| {
        r.split(':')
            .find(|seg| seg.starts_with(|c: char| c.is_ascii_digit()))
            .map(|seg| seg.split('.').next().unwrap_or(seg).to_string())
    };
    match key {
        ReleaseKey::Major => major_of(r).unwrap_or_else(|| r.to_string()),
        ReleaseKey::SuseProduct => {
            let lower = r.to_ascii_lowercase();
            if lower.contains("tumbleweed")
                || (r.len() == 8 && r.bytes().all(|b| b.is_ascii_digit()))
            {
                return "tumbleweed".to_string();
            }
            // The release is the last run of `N`, `N SPm` or `N.m` in the product name.
            let words: Vec<&str> = r.split_whitespace().collect();
            let Some(i) = words
                .iter()
                .rposition(|w| w.starts_with(|c: char| c.is_ascii_digit()))
            else {
                return r.to_string();
            };
            let base = words[i];
            match words.get(i + 1).and_then(|w| w.strip_prefix("SP")) {
                Some(sp) if !base.contains('.') && !sp.is_empty() => format!("{base}.{sp}"),
                _ => base.to_string(),
            }
        }
        ReleaseKey::AsWritten => r.to_string(),
    }
}

/// PEP 503 name normalisation: lower case, runs of `-`, `_`, `.` become one `-`.
pub fn pep503(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_are_kept_apart_and_normalised() {
        let p = OsvEcosystem::parse;
        assert_eq!(p("Debian:12").to_string(), "Debian:12");
        assert_eq!(p("Debian:12.5").to_string(), "Debian:12");
        assert_ne!(p("Debian:11"), p("Debian:12"));
        assert_eq!(p("Alpine:v3.19"), p("Alpine:3.19.1"));
        assert_eq!(p("Ubuntu:22.04:LTS"), p("Ubuntu:22.04"));
        assert_ne!(p("Ubuntu:Pro:18.04:LTS"), p("Ubuntu:18.04"));
        assert_eq!(p("Rocky Linux:9").scheme(), Some(Scheme::Rpm));
        assert_eq!(
            p("Red Hat:enterprise_linux:9::appstream").scheme(),
            Some(Scheme::Rpm)
        );
        assert_eq!(p("AlmaLinux:8").scheme(), Some(Scheme::Rpm));
        assert_eq!(p("crates.io").scheme(), Some(Scheme::Semver));
        assert_eq!(p("npm").scheme(), Some(Scheme::Semver));
        assert_eq!(p("Go").scheme(), Some(Scheme::Go));
        assert_eq!(p("PyPI").scheme(), Some(Scheme::Pep440));
        assert_eq!(p("Maven").scheme(), Some(Scheme::Maven));
        assert_eq!(p("Alpine:v3.19").scheme(), Some(Scheme::Apk));
        assert_eq!(p("Debian:12").naming(), Naming::Source);
        assert_eq!(p("PyPI").naming(), Naming::Binary);
    }

    #[test]
    fn rpm_distro_releases_agree_with_os_release() {
        let p = |s: &str| OsvEcosystem::parse(s).to_string();
        // Red Hat's product streams and os-release's minor releases meet on the major.
        assert_eq!(p("Red Hat:enterprise_linux:9::appstream"), "Red Hat:9");
        assert_eq!(p("Red Hat:enterprise_linux:9::baseos"), "Red Hat:9");
        assert_eq!(p("Red Hat:rhel_eus:8.6::baseos"), "Red Hat:8");
        assert_eq!(p("Red Hat:9.3"), "Red Hat:9");
        assert_ne!(p("Red Hat:8.9"), p("Red Hat:enterprise_linux:9::appstream"));
        assert_eq!(p("Rocky Linux:9.3"), p("Rocky Linux:9"));
        assert_eq!(p("AlmaLinux:8.10"), "AlmaLinux:8");
        // SUSE's product names and service packs against os-release's VERSION_ID.
        assert_eq!(p("SUSE:Linux Enterprise Server 15 SP5"), "SUSE:15.5");
        assert_eq!(p("SUSE:15.5"), "SUSE:15.5");
        assert_eq!(p("SUSE:Linux Enterprise Server 15"), p("SUSE:15"));
        assert_eq!(p("SUSE:Linux Enterprise Micro 5.5"), "SUSE:5.5");
        assert_ne!(p("SUSE:15.4"), p("SUSE:Linux Enterprise Server 15 SP5"));
        assert_eq!(p("openSUSE:Leap 15.5"), p("openSUSE:15.5"));
        assert_eq!(p("openSUSE:Tumbleweed"), p("openSUSE:20240312"));
        // Azure Linux names the major; CBL-Mariner's advisories are Azure Linux's.
        assert_eq!(p("Azure Linux:3"), p("Azure Linux:3.0"));
        assert_eq!(p("Mariner:2.0").to_string(), "Azure Linux:2");
        assert_eq!(p("CBL-Mariner:2.0"), p("Azure Linux:2"));
        assert_eq!(p("Photon OS:4.0").to_string(), "Photon OS:4.0");
    }

    #[test]
    fn rpm_distros_name_what_the_schema_says() {
        let n = |s: &str| OsvEcosystem::parse(s).naming();
        assert_eq!(
            n("SUSE:Linux Enterprise Server 15 SP5"),
            Naming::SourceWithBinaries
        );
        assert_eq!(n("openSUSE:Leap 15.5"), Naming::SourceWithBinaries);
        assert_eq!(
            n("Red Hat:enterprise_linux:9::baseos"),
            Naming::BinaryOrSource
        );
        assert_eq!(n("AlmaLinux:9"), Naming::Source);
        assert_eq!(n("Rocky Linux:8"), Naming::Source);
        assert_eq!(n("Azure Linux:3"), Naming::Source);
        assert_eq!(n("Photon OS:5.0"), Naming::Binary);
        assert_eq!(
            OsvEcosystem::parse("Photon OS:5.0").scheme(),
            Some(Scheme::Rpm)
        );
        // An rpm distro the schema does not define has no ordering to compare with.
        assert_eq!(OsvEcosystem::parse("Fedora:40").scheme(), None);
    }

    #[test]
    fn pep503_normalisation() {
        assert_eq!(pep503("Django_REST.framework"), "django-rest-framework");
        assert_eq!(pep503("zope..interface"), "zope-interface");
        assert_eq!(pep503("Pillow"), "pillow");
        assert_eq!(pep503("_odd."), "-odd-");
        let py = OsvEcosystem::parse("PyPI");
        assert_eq!(py.normalise_name("Jinja2"), "jinja2");
        assert_eq!(
            OsvEcosystem::parse("Go").normalise_name("github.com/BurntSushi/toml"),
            "github.com/BurntSushi/toml"
        );
    }
}
