//! Image inventory: the per-layer analyses merged bottom-up with OCI whiteout semantics,
//! without reading any layer again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::{FileKind, OsRelease, Package};
use crate::layer::{FileRecord, LayerAnalysis, Outcome};

/// Symlink hops followed when resolving os-release, enough for any sane chain.
const MAX_LINK_HOPS: usize = 8;

/// The packages of a whole image.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Inventory {
    /// The image's os-release, if any.
    pub os: Option<OsRelease>,
    /// Where `os` was read from (after following symlinks).
    pub os_path: Option<String>,
    /// All packages visible in the merged filesystem, by path then name.
    pub packages: Vec<Package>,
    /// Visible files that could not be cataloged (`path: reason`), so gaps are not silent.
    pub problems: Vec<String>,
    /// Layers whose analysis came from an older analyzer and should be redone.
    pub stale_layers: Vec<usize>,
}

/// One path of the merged filesystem that matters to the inventory.
#[derive(Clone, Copy)]
enum Node<'a> {
    File(&'a FileRecord),
    Link(&'a str),
    Other,
}

/// Merges layer analyses, lowest layer first, into the image's inventory.
pub fn merge<'a>(layers: impl IntoIterator<Item = &'a LayerAnalysis>) -> Inventory {
    let mut view: BTreeMap<&'a str, Node<'a>> = BTreeMap::new();
    let mut stale = Vec::new();
    for (i, layer) in layers.into_iter().enumerate() {
        if !layer.is_current() {
            stale.push(i);
        }
        // Whiteouts and opaque markers only ever hide lower layers, so apply them first.
        for dir in &layer.opaque_dirs {
            remove_below(&mut view, dir);
        }
        for path in &layer.whiteouts {
            view.remove(path.as_str());
            remove_below(&mut view, path);
        }
        // A non-directory entry replaces whatever was at its path, including a whole directory.
        let upper = layer
            .files
            .iter()
            .map(|f| (f.path.as_str(), Node::File(f)))
            .chain(
                layer
                    .symlinks
                    .iter()
                    .map(|s| (s.path.as_str(), Node::Link(&s.target))),
            )
            .chain(layer.shadows.iter().map(|p| (p.as_str(), Node::Other)));
        for (path, node) in upper {
            remove_below(&mut view, path);
            view.insert(path, node);
        }
    }
    let (os, os_path) = match find_os(&view) {
        Some((p, os)) => (Some(os.clone()), Some(p)),
        None => (None, None),
    };
    let mut inv = Inventory {
        os,
        os_path,
        stale_layers: stale,
        ..Inventory::default()
    };
    for (path, node) in &view {
        let Node::File(rec) = node else { continue };
        match &rec.outcome {
            Outcome::Packages(pkgs) if !superseded_rpmdb(&view, rec) => {
                for p in pkgs {
                    let mut p = p.clone();
                    p.apply_os(inv.os.as_ref());
                    inv.packages.push(p);
                }
            }
            Outcome::Skipped(why) => inv.problems.push(format!("{path}: skipped: {why}")),
            Outcome::Failed(why) => inv.problems.push(why.clone()),
            _ => {}
        }
    }
    inv
}

/// Removes everything strictly below directory `dir`.
fn remove_below(view: &mut BTreeMap<&str, Node>, dir: &str) {
    let prefix = if dir.ends_with('/') {
        dir.to_string()
    } else {
        format!("{dir}/")
    };
    let doomed: Vec<&str> = view
        .range(prefix.as_str()..)
        .map(|(k, _)| *k)
        .take_while(|k| k.starts_with(&prefix))
        .collect();
    for k in doomed {
        view.remove(k);
    }
}

/// `/etc/os-release` takes precedence over `/usr/lib/os-release`, each through symlinks.
fn find_os<'a>(view: &BTreeMap<&str, Node<'a>>) -> Option<(String, &'a OsRelease)> {
    for start in ["/etc/os-release", "/usr/lib/os-release"] {
        let mut path = start.to_string();
        for _ in 0..MAX_LINK_HOPS {
            match view.get(path.as_str()) {
                Some(Node::File(FileRecord {
                    outcome: Outcome::Os(os),
                    ..
                })) => return Some((path, os)),
                Some(Node::Link(target)) => match resolve_link(&path, target) {
                    Some(p) => path = p,
                    None => break,
                },
                _ => break,
            }
        }
    }
    None
}

/// Resolves a symlink target against the link's directory, lexically.
pub fn resolve_link(link: &str, target: &str) -> Option<String> {
    let base = if target.starts_with('/') {
        String::new()
    } else {
        link.rsplit_once('/')
            .map(|(d, _)| d)
            .unwrap_or("")
            .to_string()
    };
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            // `..` at the root stays at the root, as the kernel does.
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| format!("/{}", parts.join("/")))
}

/// rpm reads only one database per directory; when a SQLite one exists beside leftovers
/// of an older backend, the leftovers are stale copies, not more packages.
fn superseded_rpmdb(view: &BTreeMap<&str, Node>, rec: &FileRecord) -> bool {
    if !matches!(rec.kind, FileKind::RpmBdb | FileKind::RpmNdb) {
        return false;
    }
    let Some((dir, _)) = rec.path.rsplit_once('/') else {
        return false;
    };
    let sqlite = format!("{dir}/rpmdb.sqlite");
    matches!(view.get(sqlite.as_str()), Some(Node::File(FileRecord { outcome: Outcome::Packages(p), .. })) if !p.is_empty())
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn resolves_links() {
        assert_eq!(
            resolve_link("/etc/os-release", "../usr/lib/os-release").as_deref(),
            Some("/usr/lib/os-release")
        );
        assert_eq!(
            resolve_link("/etc/os-release", "/usr/lib/os-release").as_deref(),
            Some("/usr/lib/os-release")
        );
        assert_eq!(
            resolve_link("/etc/os-release", "../../../x").as_deref(),
            Some("/x")
        );
        assert_eq!(resolve_link("/etc/os-release", "..").as_deref(), None);
    }
}
