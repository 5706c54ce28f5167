//! The `scope` parameter of the distribution token specification:
//! `type[(class)]:name:action[,action...]`, several per value separated by spaces.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest `scope` value accepted; real clients send a few hundred bytes at most.
pub const MAX_SCOPE_LEN: usize = 4096;

/// Most scopes accepted in one request (a pull plus cross-repository mounts is a handful).
pub const MAX_SCOPES: usize = 32;

/// One requested or granted access: the `access` entries of a registry token.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Access {
    /// Resource type as written, possibly with a class: `repository`, `repository(plugin)`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Resource name, e.g. `docker.io/library/redis` (may contain `:`).
    pub name: String,
    /// Actions such as `pull`; unknown ones are kept so the policy can refuse them.
    pub actions: Vec<String>,
}

impl Access {
    /// Builds an access entry from its parts.
    pub fn new(kind: &str, name: &str, actions: &[&str]) -> Self {
        Access {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    /// A `repository` scope for `name` with `actions`.
    pub fn repository(name: &str, actions: &[&str]) -> Self {
        Self::new("repository", name, actions)
    }

    /// The type without its class: `repository(plugin)` → `repository`.
    pub fn base_kind(&self) -> &str {
        self.kind
            .split_once('(')
            .map_or(self.kind.as_str(), |(base, _)| base)
    }

    /// True when `action` is among the actions.
    pub fn has_action(&self, action: &str) -> bool {
        self.actions.iter().any(|a| a == action)
    }
}

impl fmt::Display for Access {
    /// Formats back into scope syntax, `type:name:a,b`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }
}

/// Why a `scope` value was refused. Messages quote at most a short, sanitised prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// The value is empty or only spaces.
    #[error("scope is empty")]
    Empty,
    /// Longer than [`MAX_SCOPE_LEN`].
    #[error("scope is {len} bytes long; at most {MAX_SCOPE_LEN} are accepted")]
    TooLong {
        /// Length of the value in bytes.
        len: usize,
    },
    /// More than [`MAX_SCOPES`] scopes in one value.
    #[error("{count} scopes requested; at most {MAX_SCOPES} are accepted")]
    TooMany {
        /// Number of scopes found.
        count: usize,
    },
    /// A control character (other than the separating spaces) somewhere in the value.
    #[error("scope contains a control character at byte {0}")]
    ControlChar(usize),
    /// A scope that is not `type:name:actions`, or with an empty part.
    #[error("scope #{index} is malformed: {reason}")]
    Malformed {
        /// 1-based position of the scope within the value.
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Parses one `scope` query value, which may hold several space-separated scopes.
pub fn parse_scope(value: &str) -> Result<Vec<Access>, ScopeError> {
    if value.len() > MAX_SCOPE_LEN {
        return Err(ScopeError::TooLong { len: value.len() });
    }
    if let Some((at, _)) = value.char_indices().find(|(_, c)| c.is_control()) {
        return Err(ScopeError::ControlChar(at));
    }
    let parts: Vec<&str> = value.split(' ').filter(|s| !s.is_empty()).collect();
    if parts.is_empty() {
        return Err(ScopeError::Empty);
    }
    if parts.len() > MAX_SCOPES {
        return Err(ScopeError::TooMany { count: parts.len() });
    }
    parts
        .iter()
        .enumerate()
        .map(|(i, s)| parse_one(i + 1, s))
        .collect()
}

/// Parses every `scope` value of a request (clients may repeat the parameter).
pub fn parse_scopes<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<Access>, ScopeError> {
    let mut all = Vec::new();
    for value in values {
        all.extend(parse_scope(value)?);
        if all.len() > MAX_SCOPES {
            return Err(ScopeError::TooMany { count: all.len() });
        }
    }
    Ok(all)
}

fn parse_one(index: usize, scope: &str) -> Result<Access, ScopeError> {
    let bad = |reason| ScopeError::Malformed { index, reason };
    // The type never contains `:` and actions never do, but a name may (`host:5000/app`),
    // so the type ends at the first colon and the actions start after the last.
    let (kind, rest) = scope
        .split_once(':')
        .ok_or(bad("expected type:name:actions"))?;
    let (name, actions) = rest
        .rsplit_once(':')
        .ok_or(bad("expected type:name:actions"))?;
    if kind.is_empty() {
        return Err(bad("empty type"));
    }
    check_kind(kind).map_err(bad)?;
    if name.is_empty() {
        return Err(bad("empty name"));
    }
    if actions.is_empty() {
        return Err(bad("no actions"));
    }
    let mut list: Vec<String> = Vec::new();
    for action in actions.split(',') {
        if action.is_empty() {
            return Err(bad("empty action"));
        }
        if !list.iter().any(|a| a == action) {
            list.push(action.to_owned());
        }
    }
    Ok(Access {
        kind: kind.to_owned(),
        name: name.to_owned(),
        actions: list,
    })
}

/// A type is a word, optionally followed by one parenthesised class word.
fn check_kind(kind: &str) -> Result<(), &'static str> {
    let word = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    match kind.split_once('(') {
        None if word(kind) => Ok(()),
        None => Err("type has unexpected characters"),
        Some((base, class)) => match class.strip_suffix(')') {
            Some(class) if word(base) && word(class) => Ok(()),
            _ => Err("type class must look like type(class)"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_scope() {
        let got = parse_scope("repository:docker.io/library/redis:pull").unwrap();
        assert_eq!(
            got,
            vec![Access::repository("docker.io/library/redis", &["pull"])]
        );
        assert_eq!(
            got[0].to_string(),
            "repository:docker.io/library/redis:pull"
        );
    }

    #[test]
    fn several_scopes_and_actions() {
        let got =
            parse_scope("repository:a/b:pull,push  repository:c:pull registry:catalog:*").unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].actions, vec!["pull", "push"]);
        assert_eq!(got[1].name, "c");
        assert_eq!(got[2].kind, "registry");
        assert_eq!(got[2].actions, vec!["*"]);
    }

    #[test]
    fn name_may_contain_colons() {
        let got = parse_scope("repository:localhost:5000/team/app:pull").unwrap();
        assert_eq!(got[0].kind, "repository");
        assert_eq!(got[0].name, "localhost:5000/team/app");
        assert_eq!(got[0].actions, vec!["pull"]);
    }

    #[test]
    fn type_class_is_kept() {
        let got = parse_scope("repository(plugin):vieux/sshfs:pull").unwrap();
        assert_eq!(got[0].kind, "repository(plugin)");
        assert_eq!(got[0].base_kind(), "repository");
        assert!(parse_scope("repository(:x:pull").is_err());
        assert!(parse_scope("repository():x:pull").is_err());
        assert!(parse_scope("(plugin):x:pull").is_err());
    }

    #[test]
    fn unknown_actions_are_kept_and_deduplicated() {
        let got = parse_scope("repository:x:pull,frobnicate,pull").unwrap();
        assert_eq!(got[0].actions, vec!["pull", "frobnicate"]);
    }

    #[test]
    fn empty_parts_are_refused() {
        for bad in [
            "repository::pull",
            ":x:pull",
            "repository:x:",
            "repository:x",
            "repository",
            "repository:x:pull,,push",
            "repository:x:,pull",
        ] {
            assert!(
                matches!(
                    parse_scope(bad),
                    Err(ScopeError::Malformed { index: 1, .. })
                ),
                "{bad:?} was accepted"
            );
        }
        assert_eq!(parse_scope(""), Err(ScopeError::Empty));
        assert_eq!(parse_scope("   "), Err(ScopeError::Empty));
        let second = parse_scope("repository:x:pull repository:y:");
        assert!(matches!(
            second,
            Err(ScopeError::Malformed { index: 2, .. })
        ));
    }

    #[test]
    fn control_chars_and_length_are_refused() {
        assert_eq!(
            parse_scope("repository:x\n:pull"),
            Err(ScopeError::ControlChar(12))
        );
        assert!(matches!(
            parse_scope("repository:x:pull\t"),
            Err(ScopeError::ControlChar(_))
        ));
        let long = format!("repository:{}:pull", "a".repeat(MAX_SCOPE_LEN));
        assert!(matches!(
            parse_scope(&long),
            Err(ScopeError::TooLong { .. })
        ));
        let many = vec!["repository:x:pull"; MAX_SCOPES + 1].join(" ");
        assert!(matches!(
            parse_scope(&many),
            Err(ScopeError::TooMany { .. })
        ));
        let error = parse_scope(&long).unwrap_err().to_string();
        assert!(error.len() < 100, "error quotes the input: {error}");
    }

    #[test]
    fn repeated_parameters_are_joined() {
        let got = parse_scopes(["repository:a:pull", "repository:b:pull"]).unwrap();
        assert_eq!(got.len(), 2);
        let many = vec!["repository:x:pull"; MAX_SCOPES + 1];
        assert!(parse_scopes(many).is_err());
    }

    #[test]
    fn access_serialises_with_type_key() {
        let json = serde_json::to_string(&Access::repository("a/b", &["pull"])).unwrap();
        assert_eq!(
            json,
            r#"{"type":"repository","name":"a/b","actions":["pull"]}"#
        );
    }
}
