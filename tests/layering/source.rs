//! A light reader of Rust source for the layering check: blanks comments and literals, then
//! finds the paths that name a root module (`crate::X`, `super::..::X`) and the `Registry`
//! type.

/// The source with comments, strings and char literals blanked (newlines kept, so byte offsets
/// still give line numbers).
pub fn strip(src: &str) -> String {
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

pub fn prev_is_ident(c: &[char], i: usize) -> bool {
    i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_' || c[i - 1] == '$')
}

pub fn is_ident(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// One use of another module: where, and the first path segment after the crate root.
pub struct Use {
    /// 1-based line.
    pub line: usize,
    /// The root module named.
    pub target: String,
}

/// The modules a file's code names at the crate root: `crate::X...`, `crate::{X::.., Y}`,
/// `breakwater::X` when `extern_name` is set (the binary), and `super::` chains that climb
/// out of the file's module (`depth`: how many modules deep the file is) to a name for which
/// `is_root` holds.
pub fn uses(
    code: &str,
    depth: usize,
    extern_name: Option<&str>,
    is_root: impl Fn(&str) -> bool,
) -> Vec<Use> {
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
                for t in heads(j).into_iter().filter(|t| is_root(t)) {
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

/// Lines that name the registry's `Registry` type: `registry::Registry`, or a
/// `registry::{..}` group with `Registry` (or a glob) in it.
pub fn names_registry(code: &str) -> Vec<usize> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_root_paths_outside_comments_and_strings() {
        let code = strip(
            "use crate::server::X; // crate::admin::Y\nlet s = \"crate::cli::Z\";\n\
             use crate::{config::A, metrics};\nuse super::super::upstream::B;\nfn f<'a>(c: char) { let q = '\\''; }\n\
             let r = r#\"crate::admin\"#;\n",
        );
        let found: Vec<(usize, String)> = uses(&code, 2, None, |t| t == "upstream")
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
    }
}
