//! `WWW-Authenticate` parsing: every challenge in every header, quoted values with commas and
//! escapes, case-insensitive schemes and parameter names.

use std::collections::BTreeMap;

/// One authentication challenge, e.g. `Bearer realm="…",service="…",scope="…"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Scheme, lowercased (`bearer`, `basic`).
    pub scheme: String,
    /// Parameters by lowercased name.
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// A parameter by (lowercase) name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parses all challenges in one header value. Malformed parts are skipped, never fatal.
pub fn parse(value: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let mut p = Parser {
        s: value.as_bytes(),
        i: 0,
    };
    loop {
        p.skip_ws_commas();
        let Some(tok) = p.token() else { break };
        p.skip_ws();
        if p.peek() == Some(b'=') {
            // `name=value` belongs to the current challenge.
            p.i += 1;
            p.skip_ws();
            let v = if p.peek() == Some(b'"') {
                p.quoted()
            } else {
                p.token().unwrap_or_default()
            };
            if let Some(c) = out.last_mut() {
                c.params.insert(tok.to_ascii_lowercase(), v);
            }
        } else {
            // A bare token starts a new challenge.
            out.push(Challenge {
                scheme: tok.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
        }
    }
    out
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }
    fn skip_ws_commas(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }
    fn token(&mut self) -> Option<String> {
        // A loop, not recursion, over stray characters: each is skipped so a malformed header
        // cannot loop forever, and a long run of them cannot exhaust the stack.
        loop {
            let start = self.i;
            while let Some(c) = self.peek() {
                if matches!(c, b' ' | b'\t' | b',' | b'=' | b'"') {
                    break;
                }
                self.i += 1;
            }
            if self.i > start {
                return Some(String::from_utf8_lossy(&self.s[start..self.i]).into_owned());
            }
            if self.i >= self.s.len() {
                return None;
            }
            self.i += 1;
        }
    }
    fn quoted(&mut self) -> String {
        self.i += 1; // opening quote
        let mut v = Vec::new();
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'\\' => {
                    if let Some(n) = self.peek() {
                        v.push(n);
                        self.i += 1;
                    }
                }
                b'"' => break,
                _ => v.push(c),
            }
        }
        String::from_utf8_lossy(&v).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_form() {
        let c = parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(c[0].param("scope"), Some("repository:library/nginx:pull"));
    }

    #[test]
    fn commas_spaces_case_and_several_challenges() {
        let c = parse(
            r#"Basic realm="Registry Realm", BEARER Realm = "http://127.0.0.1:9/token" , service=reg, scope="repository:a/b:pull,push repository:c:pull", error="insufficient_scope""#,
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some("Registry Realm"));
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].param("realm"), Some("http://127.0.0.1:9/token"));
        assert_eq!(c[1].param("service"), Some("reg"));
        assert_eq!(
            c[1].param("scope"),
            Some("repository:a/b:pull,push repository:c:pull")
        );
        assert_eq!(c[1].param("error"), Some("insufficient_scope"));
    }

    #[test]
    fn escapes_host_port_scopes_and_garbage() {
        let c = parse(r#"Bearer realm="https://x/\"t\"",scope="repository:127.0.0.1:5000/x:pull""#);
        assert_eq!(c[0].param("realm"), Some(r#"https://x/"t""#));
        assert_eq!(
            c[0].param("scope"),
            Some("repository:127.0.0.1:5000/x:pull")
        );
        assert_eq!(
            parse(r#"Bearer scope="aws""#)[0].param("scope"),
            Some("aws")
        );
        assert!(parse("").is_empty());
        assert!(parse(",,,   ,").is_empty());
        // Unterminated quote and stray '=' must not panic or hang.
        let c = parse(r#"Bearer realm="unterminated, ="#);
        assert_eq!(c[0].param("realm"), Some("unterminated, ="));
        let _ = parse(r#"="a" ="b" Bearer"#);
    }

    #[test]
    fn long_runs_of_stray_characters() {
        // Found while fuzzing www_authenticate with long inputs: token() recursed once per
        // stray character and overflowed the stack. Each stray '=' or '"' is skipped on the way to the next token; a header of nothing
        // else must neither exhaust the stack nor take quadratic time.
        for stray in ["=", "\"", "=\""] {
            let value = format!("Bearer realm=\"x\", {}", stray.repeat(1 << 20));
            let c = parse(&value);
            assert_eq!(c.len(), 1, "{stray}");
            assert_eq!(c[0].param("realm"), Some("x"));
        }
    }
}
