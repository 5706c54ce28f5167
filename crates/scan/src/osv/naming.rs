//! What an ecosystem's `affected[].package.name` holds, and so which name and version of an
//! installed package a record is compared with. The OSV schema's ecosystem table
//! (<https://ossf.github.io/osv-schema/#defined-ecosystems>) defines this per ecosystem; the
//! RPM distributions differ from one another, so each has its entry in [`RPM_DISTROS`].

use serde_json::Value;

/// Which name of an installed package an ecosystem's records carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// The installed (binary) package's name; its version is compared.
    Binary,
    /// The source package's name; the source package's version is compared.
    Source,
    /// The source package's name, with the binaries of that source the record covers in
    /// `ecosystem_specific.binaries`; a binary not listed there is not covered.
    SourceWithBinaries,
    /// Either: an entry matches a binary by its own name or by its source package's name.
    BinaryOrSource,
}

/// How an RPM distribution's OSV release suffix meets os-release's `VERSION_ID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseKey {
    /// The major release: `enterprise_linux:9::appstream`, `9`, `9.3` and `3.0` → `9`, `3`.
    Major,
    /// SUSE product names: `Linux Enterprise Server 15 SP5` and `15.5` → `15.5`.
    SuseProduct,
    /// The release as written (Photon `4.0`, Mageia `9`).
    AsWritten,
}

/// One RPM distribution's OSV ecosystem, as the schema's ecosystem table defines it.
#[derive(Debug)]
pub struct RpmDistro {
    /// The ecosystem name (before the first `:`).
    pub name: &'static str,
    /// Other spellings that mean the same ecosystem.
    pub aliases: &'static [&'static str],
    /// What `package.name` holds.
    pub naming: Naming,
    /// How its release suffix is keyed.
    pub release: ReleaseKey,
}

/// The RPM distributions whose advisories the scanner matches. Each `naming` follows the
/// schema's own words for that ecosystem, quoted beside it.
pub static RPM_DISTROS: &[RpmDistro] = &[
    // "the `name` field is the name of a binary or source RPM"; versions are full EVRs
    // (`0:2.13.3-3.el8_6.1`) and its CSAF-derived records list every binary and the source.
    RpmDistro {
        name: "Red Hat",
        aliases: &[],
        naming: Naming::BinaryOrSource,
        release: ReleaseKey::Major,
    },
    // "the `name` is the name of the source package"
    RpmDistro {
        name: "AlmaLinux",
        aliases: &[],
        naming: Naming::Source,
        release: ReleaseKey::Major,
    },
    // "the `name` is the name of the source package"
    RpmDistro {
        name: "Rocky Linux",
        aliases: &[],
        naming: Naming::Source,
        release: ReleaseKey::Major,
    },
    // "The `name` field is the name of the source RPM … There is a `ecosystem_specific`
    // specific array `binaries` of the associated RPM binary packages in this specific SUSE
    // product."
    RpmDistro {
        name: "SUSE",
        aliases: &[],
        naming: Naming::SourceWithBinaries,
        release: ReleaseKey::SuseProduct,
    },
    // The same words for openSUSE ("… in this specific openSUSE distribution").
    RpmDistro {
        name: "openSUSE",
        aliases: &[],
        naming: Naming::SourceWithBinaries,
        release: ReleaseKey::SuseProduct,
    },
    // "the `name` is the name of the source package"; `<RELEASE>` "is a numeric version".
    // CBL-Mariner has no ecosystem of its own: its advisories are published as `Azure Linux:2`.
    RpmDistro {
        name: "Azure Linux",
        aliases: &["Mariner", "CBL-Mariner"],
        naming: Naming::Source,
        release: ReleaseKey::Major,
    },
    // "the `name` is the name of the RPM package": the package as installed.
    RpmDistro {
        name: "Photon OS",
        aliases: &[],
        naming: Naming::Binary,
        release: ReleaseKey::AsWritten,
    },
    // "the `name` is the name of the source package"
    RpmDistro {
        name: "Mageia",
        aliases: &[],
        naming: Naming::Source,
        release: ReleaseKey::AsWritten,
    },
    // "The `name` field is the name of the source RPM"
    RpmDistro {
        name: "openEuler",
        aliases: &[],
        naming: Naming::Source,
        release: ReleaseKey::AsWritten,
    },
];

/// The RPM distribution an ecosystem name (or one of its aliases) belongs to.
pub fn rpm_distro(name: &str) -> Option<&'static RpmDistro> {
    RPM_DISTROS
        .iter()
        .find(|d| d.name == name || d.aliases.contains(&name))
}

/// The names in an `affected[]` entry's `ecosystem_specific.binaries`, sorted; `None` when
/// the entry has no such list. SUSE writes `[{"libz1": "1.2.13-…", "zlib-devel": "…"}]`
/// (binary name → version); plain strings and `{"name": …}` objects are read too.
pub fn listed_binaries(ecosystem_specific: Option<&Value>) -> Option<Vec<String>> {
    let list = ecosystem_specific?.get("binaries")?.as_array()?;
    let mut out = Vec::new();
    for item in list {
        match item {
            Value::String(s) => out.push(s.clone()),
            Value::Object(m) => match m.get("name").and_then(Value::as_str) {
                Some(n) => out.push(n.to_string()),
                None => out.extend(m.keys().cloned()),
            },
            _ => {}
        }
    }
    out.sort();
    out.dedup();
    Some(out)
}

/// The source package's EVR for comparison: SOURCERPM file names never carry the epoch, and
/// the binaries of one source share its epoch, so the binary's epoch is put in front.
pub fn rpm_source_evr(binary_version: &str, source_vr: &str) -> String {
    let digits = binary_version
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    match binary_version.as_bytes().get(digits) {
        Some(b':') if digits > 0 && !source_vr.contains(':') => {
            format!("{}:{source_vr}", &binary_version[..digits])
        }
        _ => source_vr.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn binaries_lists_in_every_shape() {
        let suse = json!({"binaries": [{"libz1": "1.2.13-150500.4.3.1", "zlib-devel": "1.2.13-150500.4.3.1"}]});
        assert_eq!(
            listed_binaries(Some(&suse)),
            Some(vec!["libz1".to_string(), "zlib-devel".to_string()])
        );
        let plain = json!({"binaries": ["b", "a", "b"]});
        assert_eq!(
            listed_binaries(Some(&plain)),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        let named = json!({"binaries": [{"name": "libfoo1", "version": "1"}]});
        assert_eq!(
            listed_binaries(Some(&named)),
            Some(vec!["libfoo1".to_string()])
        );
        assert_eq!(listed_binaries(Some(&json!({"severity": "low"}))), None);
        assert_eq!(listed_binaries(None), None);
    }

    #[test]
    fn source_evr_takes_the_binary_epoch() {
        assert_eq!(
            rpm_source_evr("1:3.0.7-25.el9", "3.0.7-25.el9"),
            "1:3.0.7-25.el9"
        );
        assert_eq!(
            rpm_source_evr("3.0.7-25.el9", "3.0.7-25.el9"),
            "3.0.7-25.el9"
        );
        assert_eq!(rpm_source_evr("2:1-1", "1:1-1"), "1:1-1");
        assert_eq!(rpm_source_evr(":1-1", "1-1"), "1-1");
    }

    #[test]
    fn aliases_find_their_distro() {
        assert_eq!(rpm_distro("Mariner").map(|d| d.name), Some("Azure Linux"));
        assert_eq!(
            rpm_distro("SUSE").map(|d| d.naming),
            Some(Naming::SourceWithBinaries)
        );
        assert!(rpm_distro("Fedora").is_none());
    }
}
