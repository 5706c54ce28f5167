//! Language ecosystems on real installed trees, compared with the ecosystems' own tools
//! (`pip list`, `npm ls`), plus Cargo.lock files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{layer_tar, Member};
use crate::scan::catalog::{purl::pep503, rust, PackageKind};
use crate::scan::inventory;
use crate::scan::layer::analyze_layer;

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

fn python_tree() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("BREAKWATER_PY_TREE") {
        return Some(PathBuf::from(p));
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

#[test]
fn python_tree_matches_pip_list() {
    let Some(tree) = python_tree().filter(|t| t.is_dir()) else {
        super::skip(
            "no python3 site-packages (set BREAKWATER_PY_TREE to a `pip install --target` dir)",
        );
        return;
    };
    let out = Command::new("python3")
        .args(["-m", "pip", "list", "--format=json", "--path"])
        .arg(&tree)
        .output();
    let Some(out) = out.ok().filter(|o| o.status.success()) else {
        super::skip("pip not runnable");
        return;
    };
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
    let files = files_under(&tree, &|p| {
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

#[test]
fn npm_tree_matches_npm_ls() {
    let prefix = std::env::var("BREAKWATER_NPM_TREE").unwrap_or_else(|_| "/usr/lib".to_string());
    let tree = PathBuf::from(&prefix).join("node_modules");
    if !tree.is_dir() || !super::have("npm") {
        super::skip(&format!(
            "no npm or no {} (set BREAKWATER_NPM_TREE to an `npm install --prefix` dir)",
            tree.display()
        ));
        return;
    }
    let global = std::env::var("BREAKWATER_NPM_TREE").is_err();
    let mut cmd = Command::new("npm");
    cmd.args(["ls", "--all", "--parseable", "--long"]);
    if global {
        cmd.arg("-g");
    } else {
        cmd.args(["--prefix", &prefix]);
    }
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

#[test]
fn cargo_lock_of_this_crate() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock");
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
