//! The layering check: dependencies point one way, between the workspace's crates and between
//! the application's modules. Run by `cargo test` (so CI); a failure names the file, the line
//! and the forbidden edge. Set `BREAKWATER_LAYERING_GRAPH=<file>` to also write the module
//! graph the check sees.

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
];

/// Names at the application's root that any module may use: the crates' re-exports in
/// `lib.rs` (`oci`, `cache`) and the clock.
const SHARED: &[&str] = &["oci", "cache", "now_ms"];

/// Each top-level module of `src/` and the modules it may import (`crate::X`, or
/// `breakwater::X` from the binary). Request path: server -> registry -> {cache, upstream};
/// the lifecycle and scan services use the registry's handle and hook types (never the
/// `Registry` itself, see [`REGISTRY_NAMED_BY`]); admin serves the services; nothing but
/// `cli` and `main` reaches admin, nothing but `main` the server.
const MODULES: &[(&str, &[&str])] = &[
    ("metrics", &[]),
    ("config", &[]),
    ("upstream", &["config", "metrics"]),
    ("registry", &["upstream", "config", "metrics"]),
    ("server", &["registry", "upstream", "config", "metrics"]),
    ("lifecycle", &["registry", "config", "metrics"]),
    ("scan", &["registry", "config", "metrics"]),
    ("background", &["registry"]),
    (
        "admin",
        &["lifecycle", "scan", "registry", "config", "metrics"],
    ),
    ("cli", &["admin", "config"]),
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
                "{}: crate {name} is not in the layering table (CRATES in tests/layering.rs)",
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

/// The source with comments, strings and char literals blanked (newlines kept, so byte offsets
/// still give line numbers).
fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < c.len() {
        let at = |j: usize| c.get(j).copied().unwrap_or('\0');
        if c[i] == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if (c[i] == 'r' || (c[i] == 'b' && at(i + 1) == 'r')) && !prev_is_ident(&c, i) && {
            let start = if c[i] == 'b' { i + 2 } else { i + 1 };
            let mut j = start;
            while c.get(j) == Some(&'#') {
                j += 1;
            }
            c.get(j) == Some(&'"')
        } {
            // Raw string: r"..", r#".."#, br#".."#.
            let start = if c[i] == 'b' { i + 2 } else { i + 1 };
            let mut j = start;
            while c[j] == '#' {
                j += 1;
            }
            let hashes = j - start;
            for _ in i..=j {
                out.push(' ');
            }
            i = j + 1;
            while i < c.len() {
                if c[i] == '"' && (1..=hashes).all(|k| c.get(i + k) == Some(&'#')) {
                    for _ in 0..=hashes {
                        out.push(' ');
                    }
                    i += hashes + 1;
                    break;
                }
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '"' {
            out.push(' ');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                if i < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c[i] == '\'' && (at(i + 1) == '\\' || at(i + 2) == '\'') {
            // A char literal (a lifetime has no closing quote right after one char).
            out.push(' ');
            i += 1;
            if c[i] == '\\' {
                // The backslash and the escaped char (which may be a quote).
                out.push_str("  ");
                i += 2;
            }
            while i < c.len() && c[i] != '\'' {
                out.push(' ');
                i += 1;
            }
            out.push(' ');
            i += 1;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

fn prev_is_ident(c: &[char], i: usize) -> bool {
    i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_' || c[i - 1] == '$')
}

fn is_ident(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// One use of another module: where, and the first path segment after the crate root.
struct Use {
    line: usize,
    target: String,
}

/// The modules a file's code names at the crate root: `crate::X...`, `crate::{X::.., Y}`,
/// `breakwater::X` when `extern_name` is set (the binary), and `super::` chains that climb
/// out of the file's module (`depth`: how many modules deep the file is).
fn uses(code: &str, depth: usize, extern_name: Option<&str>) -> Vec<Use> {
    let c: Vec<char> = code.chars().collect();
    let line_at = |i: usize| c[..i].iter().filter(|&&ch| ch == '\n').count() + 1;
    let word_at = |i: usize| -> String { c[i..].iter().take_while(|ch| is_ident(**ch)).collect() };
    let skip_ws = |mut i: usize| {
        while i < c.len() && c[i].is_whitespace() {
            i += 1;
        }
        i
    };
    // After `root ::` at `i`: the names it reaches (one, or each item of a `{...}` group).
    let heads = |i: usize| -> Vec<String> {
        let i = skip_ws(i);
        if c.get(i) != Some(&'{') {
            return vec![word_at(i)];
        }
        let mut names = Vec::new();
        let (mut depth, mut j, mut expect) = (0, i, true);
        while j < c.len() {
            match c[j] {
                '{' => {
                    depth += 1;
                    j += 1;
                    continue;
                }
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                ',' if depth == 1 => expect = true,
                ch if depth == 1 && expect && is_ident(ch) => {
                    names.push(word_at(j));
                    expect = false;
                }
                ch if depth == 1 && !ch.is_whitespace() => expect = false,
                _ => {}
            }
            j += 1;
        }
        names
    };
    let mut found = Vec::new();
    let mut i = 0;
    while i < c.len() {
        if !is_ident(c[i]) || prev_is_ident(&c, i) {
            i += 1;
            continue;
        }
        let w = word_at(i);
        let after = skip_ws(i + w.len());
        let has_path = c.get(after) == Some(&':') && c.get(after + 1) == Some(&':');
        if has_path && (w == "crate" || Some(w.as_str()) == extern_name) {
            for t in heads(after + 2) {
                found.push(Use {
                    line: line_at(i),
                    target: t,
                });
            }
        } else if has_path && w == "super" {
            // Count the chain; past the file's own depth it names a root module.
            let (mut n, mut j) = (1, after + 2);
            loop {
                let k = skip_ws(j);
                let next = word_at(k);
                let a = skip_ws(k + next.len());
                if next == "super" && c.get(a) == Some(&':') && c.get(a + 1) == Some(&':') {
                    n += 1;
                    j = a + 2;
                } else {
                    break;
                }
            }
            // (An inline module adds a level this cannot see: only root modules count.)
            if n >= depth {
                for t in heads(j).into_iter().filter(|t| is_root_name(t)) {
                    found.push(Use {
                        line: line_at(i),
                        target: t,
                    });
                }
            }
            i = j;
            continue;
        }
        i += w.len().max(1);
    }
    found
}

fn is_root_name(name: &str) -> bool {
    SHARED.contains(&name) || MODULES.iter().any(|(m, _)| *m == name)
}

/// Lines that name the registry's `Registry` type: `registry::Registry`, or a
/// `registry::{..}` group with `Registry` (or a glob) in it.
fn names_registry(code: &str) -> Vec<usize> {
    let c: Vec<char> = code.chars().collect();
    let word_at = |i: usize| -> String { c[i..].iter().take_while(|ch| is_ident(**ch)).collect() };
    let skip_ws = |mut i: usize| {
        while i < c.len() && c[i].is_whitespace() {
            i += 1;
        }
        i
    };
    let mut lines = Vec::new();
    let mut i = 0;
    while i < c.len() {
        if !is_ident(c[i]) || prev_is_ident(&c, i) {
            i += 1;
            continue;
        }
        let w = word_at(i);
        let a = skip_ws(i + w.len());
        if w == "registry" && c.get(a) == Some(&':') && c.get(a + 1) == Some(&':') {
            let k = skip_ws(a + 2);
            let named = if c.get(k) == Some(&'{') {
                let mut depth = 0;
                let mut j = k;
                let mut hit = false;
                while j < c.len() {
                    match c[j] {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        '*' => hit = true,
                        ch if is_ident(ch) && !prev_is_ident(&c, j) => {
                            hit |= word_at(j) == "Registry";
                        }
                        _ => {}
                    }
                    j += 1;
                }
                hit
            } else {
                word_at(k) == "Registry" || c.get(k) == Some(&'*')
            };
            if named {
                lines.push(c[..i].iter().filter(|&&ch| ch == '\n').count() + 1);
            }
        }
        i += w.len();
    }
    lines
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
                "{shown}: module {module} is not in the layering table (MODULES in tests/layering.rs)"
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
        for u in uses(&code, depth, extern_name) {
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
fn the_scanner_sees_what_it_must() {
    let code = strip(
        "use crate::server::X; // crate::admin::Y\nlet s = \"crate::cli::Z\";\n\
         use crate::{config::A, metrics};\nuse super::super::upstream::B;\nfn f<'a>(c: char) { let q = '\\''; }\n\
         let r = r#\"crate::admin\"#;\n",
    );
    let found: Vec<(usize, String)> = uses(&code, 2, None)
        .into_iter()
        .map(|u| (u.line, u.target))
        .collect();
    assert_eq!(
        found,
        vec![
            (1, "server".to_string()),
            (3, "config".to_string()),
            (3, "metrics".to_string()),
            (4, "upstream".to_string()),
        ]
    );
    assert_eq!(
        names_registry(
            "use crate::registry::{blocking, Registry};\nuse prometheus::Registry;\n\
             fn f(r: &crate::registry::Registry, t: registry::Target) {}\nuse crate::registry::*;"
        ),
        vec![1, 3, 4]
    );
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
