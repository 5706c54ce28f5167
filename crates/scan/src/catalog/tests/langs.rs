//! Language ecosystems on real installed trees, compared with the ecosystems' own tools
//! (`pip list`, `npm ls`), plus Cargo.lock files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{layer_tar, Member};
use crate::catalog::{purl::pep503, rust, PackageKind};
use crate::inventory;
use crate::layer::analyze_layer;

/// Every regular file under `root` whose path satisfies `keep`, as `(relative path, bytes)`.
fn files_under(root: &Path, keep: &dyn Fn(&Path) -> bool) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() && keep(&p) {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Puts files into a one-layer image under `prefix` and returns its merged inventory.
fn inventory_of(prefix: &str, files: &[(String, Vec<u8>)]) -> inventory::Inventory {
    let paths: Vec<String> = files
        .iter()
        .map(|(rel, _)| format!("{prefix}/{rel}"))
        .collect();
    let members: Vec<Member> = files
        .iter()
        .zip(&paths)
        .map(|((_, d), p)| Member::File(p, d))
        .collect();
    let analysis = analyze_layer(&layer_tar(&members)[..]).unwrap();
    inventory::merge([&analysis])
}

/// The pure-library directory of a Python interpreter.
fn purelib(python: &Path) -> Option<PathBuf> {
    let out = Command::new(python)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .filter(|p| p.is_dir())
}

/// The inventory of `tree` equals what `pip list --path tree` reports.
fn assert_python_tree_matches_pip(python: &Path, tree: &Path) {
    let out = Command::new(python)
        .args(["-m", "pip", "list", "--format=json", "--path"])
        .arg(tree)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pip list failed on {}",
        tree.display()
    );
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let expected: BTreeSet<(String, String)> = listed
        .iter()
        .map(|v| {
            (
                pep503(v["name"].as_str().unwrap()),
                v["version"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        !expected.is_empty(),
        "pip lists nothing in {}",
        tree.display()
    );
    let files = files_under(tree, &|p| {
        let parent = p.parent().and_then(|d| d.to_str()).unwrap_or("");
        (parent.ends_with(".dist-info") && p.ends_with("METADATA"))
            || (parent.ends_with(".egg-info") && p.ends_with("PKG-INFO"))
    });
    let inv = inventory_of("/usr/local/lib/python3/site-packages", &files);
    let got: BTreeSet<(String, String)> = inv
        .packages
        .iter()
        .map(|p| (pep503(&p.name), p.version.clone()))
        .collect();
    assert!(inv
        .packages
        .iter()
        .all(|p| p.kind == PackageKind::Python && p.purl.starts_with("pkg:pypi/")));
    assert_eq!(got, expected, "problems: {:?}", inv.problems);
    eprintln!(
        "{}: {} Python distributions, same as pip list",
        tree.display(),
        got.len()
    );
}

/// A tree pip installed for this test (a venv: ensurepip installs pip with pip, offline),
/// then the interpreter's own site-packages, then `BREAKWATER_PY_TREE` if set.
#[test]
fn python_tree_matches_pip_list() {
    let python = PathBuf::from("python3");
    let dir = tempfile::tempdir().unwrap();
    let venv = dir.path().join("venv");
    let made = Command::new(&python)
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .is_ok_and(|o| o.status.success());
    let venv_python = venv.join("bin/python");
    let Some(venv_tree) = made.then(|| purelib(&venv_python)).flatten() else {
        super::skip("python3 -m venv did not produce a tree (install python3-venv)");
        return;
    };
    assert_python_tree_matches_pip(&venv_python, &venv_tree);
    if let Some(system) = purelib(&python) {
        assert_python_tree_matches_pip(&python, &system);
    }
    if let Ok(extra) = std::env::var("BREAKWATER_PY_TREE") {
        assert_python_tree_matches_pip(&python, Path::new(&extra));
    }
}

/// The inventory of `<prefix>/node_modules` equals what `npm ls` reports for it.
fn assert_npm_tree_matches_npm_ls(prefix: Option<&Path>) {
    let mut cmd = Command::new("npm");
    cmd.args(["ls", "--all", "--parseable", "--long"]);
    let tree = match prefix {
        Some(p) => {
            cmd.arg("--prefix").arg(p);
            p.join("node_modules")
        }
        None => {
            cmd.arg("-g");
            let root = Command::new("npm").args(["root", "-g"]).output().unwrap();
            PathBuf::from(String::from_utf8_lossy(&root.stdout).trim())
        }
    };
    let out = cmd.output().unwrap();
    // `path:name@version`, one per installed package location; the first line is the root.
    let expected: BTreeSet<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (path, spec) = l.split_once(':')?;
            let rel = path.strip_prefix(tree.to_str()?)?.to_string();
            let spec = spec.split(':').next()?;
            let at = spec.rfind('@').filter(|&i| i > 0)?;
            Some((rel, format!("{}@{}", &spec[..at], &spec[at + 1..])))
        })
        .collect();
    assert!(
        !expected.is_empty(),
        "npm ls lists nothing in {}",
        tree.display()
    );
    let files = files_under(&tree, &|p| p.ends_with("package.json"));
    let inv = inventory_of("/node_modules", &files);
    let got: BTreeSet<(String, String)> = inv
        .packages
        .iter()
        .map(|p| {
            let dir = p
                .path
                .strip_prefix("/node_modules")
                .unwrap()
                .strip_suffix("/package.json")
                .unwrap();
            (dir.to_string(), format!("{}@{}", p.name, p.version))
        })
        .collect();
    assert_eq!(got, expected, "problems: {:?}", inv.problems);
    eprintln!(
        "{}: {} npm packages, same as npm ls",
        tree.display(),
        got.len()
    );
}

/// A tree npm installed for this test, offline: npm's own package (with its bundled
/// dependencies) packed and installed into a fresh prefix; then the global tree, and
/// `BREAKWATER_NPM_TREE` (an `npm install --prefix` dir) if set.
#[test]
fn npm_tree_matches_npm_ls() {
    if !super::have("npm") {
        super::skip("no npm (install npm)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = Command::new("npm").args(["root", "-g"]).output().unwrap();
    let npm_pkg = PathBuf::from(String::from_utf8_lossy(&root.stdout).trim()).join("npm");
    let quiet = ["--ignore-scripts", "--silent", "--no-audit", "--no-fund"];
    let packed = Command::new("npm")
        .arg("pack")
        .args(quiet)
        .arg("--pack-destination")
        .arg(dir.path())
        .arg(&npm_pkg)
        .output()
        .unwrap();
    let tgz = String::from_utf8_lossy(&packed.stdout).trim().to_string();
    assert!(
        packed.status.success() && !tgz.is_empty(),
        "npm pack failed"
    );
    let prefix = dir.path().join("tree");
    std::fs::create_dir(&prefix).unwrap();
    let installed = Command::new("npm")
        .arg("install")
        .args(quiet)
        .arg("--offline")
        .arg("--prefix")
        .arg(&prefix)
        .arg(dir.path().join(&tgz))
        .output()
        .unwrap();
    assert!(
        installed.status.success(),
        "npm install --offline failed: {}",
        String::from_utf8_lossy(&installed.stderr)
    );
    assert_npm_tree_matches_npm_ls(Some(&prefix));
    assert_npm_tree_matches_npm_ls(None);
    if let Ok(extra) = std::env::var("BREAKWATER_NPM_TREE") {
        assert_npm_tree_matches_npm_ls(Some(Path::new(&extra)));
    }
}

#[test]
fn cargo_lock_of_this_crate() {
    // The workspace's lock file, two levels above this crate.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock");
    let Ok(data) = std::fs::read(path) else {
        super::skip(&format!("no Cargo.lock at {path}"));
        return;
    };
    let pkgs = rust::parse_cargo_lock("/src/Cargo.lock", &data).unwrap();
    // Independent count: one `source = "registry+…"` line per registry package.
    let text = String::from_utf8_lossy(&data);
    let expected = text
        .lines()
        .filter(|l| l.starts_with("source = \"registry+") || l.starts_with("source = \"sparse+"))
        .count();
    assert_eq!(pkgs.len(), expected);
    assert!(pkgs
        .iter()
        .any(|p| p.name == "serde" && p.purl.starts_with("pkg:cargo/serde@")));
    eprintln!("{path}: {} crates", pkgs.len());
}

#[test]
fn hand_built_language_tree() {
    let meta = b"Metadata-Version: 2.1\nName: six\nVersion: 1.16.0\n\nlong description\n";
    let pkginfo = b"Metadata-Version: 1.1\nName: legacy_pkg\nVersion: 0.9\n";
    let members = [
        Member::File(
            "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
            meta,
        ),
        Member::File(
            "usr/lib/python3/dist-packages/legacy_pkg-0.9.egg-info",
            pkginfo,
        ),
        Member::File(
            "usr/lib/python3/dist-packages/other.egg-info/PKG-INFO",
            b"Metadata-Version: 1.0\nName: other\nVersion: 2\n",
        ),
        Member::File("app/package.json", br#"{"name":"app","private":true}"#),
        Member::File(
            "app/node_modules/a/package.json",
            br#"{"name":"a","version":"1.0.0"}"#,
        ),
        Member::File(
            "app/node_modules/a/lib/package.json",
            br#"{"type":"module"}"#,
        ),
        Member::File(
            "app/node_modules/a/node_modules/b/package.json",
            br#"{"name":"b","version":"2.0.0"}"#,
        ),
        Member::File(
            "app/node_modules/@s/c/package.json",
            br#"{"name":"@s/c","version":"3.0.0"}"#,
        ),
        Member::File("app/node_modules/broken/package.json", b"{not json"),
    ];
    let analysis = analyze_layer(&layer_tar(&members)[..]).unwrap();
    let inv = inventory::merge([&analysis]);
    let mut got: Vec<&str> = inv.packages.iter().map(|p| p.purl.as_str()).collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            "pkg:npm/%40s/c@3.0.0",
            "pkg:npm/a@1.0.0",
            "pkg:npm/b@2.0.0",
            "pkg:pypi/legacy-pkg@0.9",
            "pkg:pypi/other@2",
            "pkg:pypi/six@1.16.0",
        ]
    );
    assert_eq!(inv.problems.len(), 1, "{:?}", inv.problems);
    assert!(inv.problems[0].contains("/app/node_modules/broken/package.json"));
}
