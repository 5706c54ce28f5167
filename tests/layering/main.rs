//! The layering check: dependencies point one way, between the workspace's crates and between
//! the application's modules. Run by `cargo test` (so CI); a failure names the file, the line
//! and the forbidden edge. Set `BREAKWATER_LAYERING_GRAPH=<file>` to also write the module
//! graph the check sees.

mod source;

use source::{names_registry, strip, uses};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The library crates under `crates/` and the workspace crates each may depend on (normal,
/// dev and build dependencies alike). The application (the root package) may use them all.
const CRATES: &[(&str, &[&str])] = &[
    ("breakwater-oci", &[]),
    ("breakwater-lifecycle", &["breakwater-oci"]),
    ("breakwater-scan", &["breakwater-oci"]),
    ("breakwater-store", &["breakwater-oci", "breakwater-scan"]),
    ("breakwater-auth", &["breakwater-oci"]),
];

/// Names at the application's root that any module may use: the crates' re-exports in
/// `lib.rs` (`oci`, `cache`) and the clock.
const SHARED: &[&str] = &["oci", "cache", "now_ms"];

/// Each top-level module of `src/` and the modules it may import (`crate::X`, or
/// `breakwater::X` from the binary). Request path: server -> (access) -> registry -> {cache,
/// upstream}; access decides who may do what and knows nothing of HTTP or the registry;
/// the lifecycle and scan services use the registry's handle and hook types (never the
/// `Registry` itself, see [`REGISTRY_NAMED_BY`]); admin serves the services; nothing but
/// `cli` and `main` reaches admin, nothing but `main` the server.
const MODULES: &[(&str, &[&str])] = &[
    ("metrics", &[]),
    ("config", &[]),
    ("upstream", &["config", "metrics"]),
    ("cluster", &["upstream", "config", "metrics"]),
    ("registry", &["cluster", "upstream", "config", "metrics"]),
    ("access", &["config", "metrics"]),
    ("accesslog", &["config"]),
    (
        "server",
        &[
            "access",
            "accesslog",
            "registry",
            "cluster",
            "upstream",
            "config",
            "metrics",
        ],
    ),
    ("lifecycle", &["registry", "cluster", "config", "metrics"]),
    ("scan", &["registry", "cluster", "config", "metrics"]),
    ("ready", &["registry", "config", "metrics"]),
    ("background", &["registry"]),
    (
        "admin",
        &[
            "lifecycle",
            "scan",
            "ready",
            "registry",
            "cluster",
            "config",
            "metrics",
        ],
    ),
    ("clientconfig", &["config"]),
    ("cli", &["admin", "clientconfig", "config"]),
    ("lib", &[]),
    ("main", &["*"]),
];

/// The only modules that may name the `Registry` type; the services get narrow handles.
const REGISTRY_NAMED_BY: &[&str] = &["registry", "server", "main"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---- crates ----------------------------------------------------------------------------------

/// Workspace dependencies named in a manifest table (`[dependencies]` and the like).
fn workspace_deps(table: Option<&toml::Value>) -> Vec<String> {
    let Some(t) = table.and_then(toml::Value::as_table) else {
        return Vec::new();
    };
    t.iter()
        .map(|(name, spec)| {
            // `foo = { package = "breakwater-x", ... }` depends on breakwater-x.
            spec.get("package")
                .and_then(toml::Value::as_str)
                .unwrap_or(name)
                .to_string()
        })
        .filter(|n| n.starts_with("breakwater"))
        .collect()
}

fn crate_violations() -> (Vec<String>, BTreeMap<String, BTreeSet<String>>) {
    let mut bad = Vec::new();
    let mut graph = BTreeMap::new();
    let dir = root().join("crates");
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("crates/ is readable")
        .map(|e| e.expect("dir entry").path().join("Cargo.toml"))
        .filter(|p| p.is_file())
        .collect();
    manifests.sort();
    assert!(!manifests.is_empty(), "no crates under {}", dir.display());
    for path in manifests {
        let text = std::fs::read_to_string(&path).expect("manifest readable");
        let doc: toml::Value = toml::from_str(&text).expect("manifest parses");
        let name = doc["package"]["name"]
            .as_str()
            .expect("package.name")
            .to_string();
        let Some((_, allowed)) = CRATES.iter().find(|(n, _)| *n == name) else {
            bad.push(format!(
                "{}: crate {name} is not in the layering table (CRATES in tests/layering/main.rs)",
                path.display()
            ));
            continue;
        };
        let mut deps = Vec::new();
        for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
            deps.extend(workspace_deps(doc.get(section)));
        }
        if let Some(targets) = doc.get("target").and_then(toml::Value::as_table) {
            for t in targets.values() {
                for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
                    deps.extend(workspace_deps(t.get(section)));
                }
            }
        }
        for dep in deps {
            if !allowed.contains(&dep.as_str()) {
                bad.push(format!(
                    "{}: crate {name} depends on {dep}: forbidden edge {name} -> {dep} (allowed: {allowed:?})",
                    path.display()
                ));
            }
            graph
                .entry(name.clone())
                .or_insert_with(BTreeSet::new)
                .insert(dep);
        }
        graph.entry(name).or_insert_with(BTreeSet::new);
    }
    (bad, graph)
}

// ---- application modules ---------------------------------------------------------------------

fn is_root_name(name: &str) -> bool {
    SHARED.contains(&name) || MODULES.iter().any(|(m, _)| *m == name)
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("source dir readable") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// A file's top-level module, how deep its module is, and whether it is a test file (a
/// `tests.rs` or a file under a `tests/` directory: tests wire real parts together, as main
/// does, and are not held to the table).
fn module_of(rel: &Path) -> (String, usize, bool) {
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let file = parts
        .last()
        .expect("a file")
        .trim_end_matches(".rs")
        .to_string();
    let top = if parts.len() == 1 {
        file.clone()
    } else {
        parts[0].clone()
    };
    let mut depth = parts.len() - 1;
    if parts.len() > 1 && file != "mod" {
        depth += 1;
    }
    if parts.len() == 1 && file != "lib" && file != "main" {
        depth = 1;
    }
    let test = file == "tests" || parts[..parts.len() - 1].iter().any(|p| p == "tests");
    (top, depth, test)
}

struct AppScan {
    violations: Vec<String>,
    /// module -> imported module -> number of uses (test files excluded).
    graph: BTreeMap<String, BTreeMap<String, usize>>,
}

fn scan_app(src: &Path) -> AppScan {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    let mut graph: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for path in files {
        let rel = path.strip_prefix(src).expect("under src");
        let (module, depth, test) = module_of(rel);
        let shown = Path::new("src").join(rel).display().to_string();
        let Some((_, allowed)) = MODULES.iter().find(|(m, _)| *m == module) else {
            violations.push(format!(
                "{shown}: module {module} is not in the layering table (MODULES in tests/layering/main.rs)"
            ));
            continue;
        };
        let text = std::fs::read_to_string(&path).expect("source readable");
        let code = strip(&text);
        let extern_name = (module == "main").then_some("breakwater");
        if test {
            continue;
        }
        graph.entry(module.clone()).or_default();
        for u in uses(&code, depth, extern_name, is_root_name) {
            if u.target == module || u.target.is_empty() {
                continue;
            }
            *graph
                .entry(module.clone())
                .or_default()
                .entry(u.target.clone())
                .or_default() += 1;
            let ok = SHARED.contains(&u.target.as_str())
                || allowed.contains(&"*")
                || allowed.contains(&u.target.as_str());
            if !ok {
                violations.push(format!(
                    "{shown}:{}: forbidden edge {module} -> {} (crate::{}); {module} may use {:?} and {SHARED:?}",
                    u.line, u.target, u.target, allowed
                ));
            }
        }
        if !REGISTRY_NAMED_BY.contains(&module.as_str()) {
            for line in names_registry(&code) {
                violations.push(format!(
                    "{shown}:{line}: {module} names the Registry type; only {REGISTRY_NAMED_BY:?} may \
                     (services get registry::CacheHandle, registry::ImageSource or hook traits, wired in main)"
                ));
            }
        }
    }
    AppScan { violations, graph }
}

/// A cycle in `edges`, if any, as the path around it.
fn cycle(edges: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, Vec<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let at = path.iter().position(|p| p == n).unwrap_or(0);
                let mut c = path[at..].to_vec();
                c.push(n.to_string());
                return Some(c);
            }
            _ => {}
        }
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if let Some(c) = visit(n, edges, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

fn render_graph(
    crates: &BTreeMap<String, BTreeSet<String>>,
    app: &BTreeMap<String, BTreeMap<String, usize>>,
) -> String {
    let mut s =
        String::from("# Crates (crates/*/Cargo.toml; the app, package breakwater, uses all)\n");
    for (k, deps) in crates {
        let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
        let _ = writeln!(
            s,
            "{k} -> {}",
            if deps.is_empty() {
                "-".into()
            } else {
                deps.join(", ")
            }
        );
    }
    s.push_str("\n# App modules (src/; crate::X uses outside test files, with counts)\n");
    for (m, deps) in app {
        let deps: Vec<String> = deps.iter().map(|(d, n)| format!("{d} ({n})")).collect();
        let _ = writeln!(
            s,
            "{m} -> {}",
            if deps.is_empty() {
                "-".into()
            } else {
                deps.join(", ")
            }
        );
    }
    s
}

#[test]
fn the_tables_have_no_cycle() {
    let crates = CRATES
        .iter()
        .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
        .collect();
    assert_eq!(cycle(&crates), None, "CRATES has a cycle");
    let modules = MODULES
        .iter()
        .map(|(k, v)| {
            let v = v
                .iter()
                .filter(|s| **s != "*")
                .map(|s| s.to_string())
                .collect();
            (k.to_string(), v)
        })
        .collect();
    assert_eq!(cycle(&modules), None, "MODULES has a cycle");
}

#[test]
fn crates_depend_only_downwards() {
    let (bad, _) = crate_violations();
    assert!(
        bad.is_empty(),
        "crate layering violated:\n{}",
        bad.join("\n")
    );
}

#[test]
fn app_modules_import_only_downwards() {
    let scan = scan_app(&root().join("src"));
    if let Ok(out) = std::env::var("BREAKWATER_LAYERING_GRAPH") {
        let (_, crates) = crate_violations();
        std::fs::write(&out, render_graph(&crates, &scan.graph)).expect("graph written");
    }
    assert!(
        scan.violations.is_empty(),
        "module layering violated:\n{}",
        scan.violations.join("\n")
    );
    let edges = scan
        .graph
        .iter()
        .map(|(k, v)| (k.clone(), v.keys().cloned().collect()))
        .collect();
    assert_eq!(cycle(&edges), None, "the module graph has a cycle");
}

#[test]
fn files_map_to_their_modules() {
    assert_eq!(
        module_of(Path::new("registry/fill.rs")),
        ("registry".into(), 2, false)
    );
    assert_eq!(
        module_of(Path::new("registry/mod.rs")),
        ("registry".into(), 1, false)
    );
    assert_eq!(
        module_of(Path::new("lifecycle/tests/gc.rs")),
        ("lifecycle".into(), 3, true)
    );
    assert_eq!(module_of(Path::new("cli.rs")), ("cli".into(), 1, false));
    assert_eq!(module_of(Path::new("main.rs")), ("main".into(), 0, false));
}
