//! The key of a tag (or of an upstream fetch by digest) in the in-memory caches and flights: one
//! string, so the hit path can look a tag up through a per-thread buffer without allocating.

use std::borrow::Borrow;
use std::cell::RefCell;

/// Upstream, repository and reference as one string: `repo NUL reference NUL upstream`. The
/// repository and reference grammars exclude NUL, so it splits one way only.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct TagKey(Box<str>);

impl TagKey {
    /// The key of `reference` in `repo` on `upstream`.
    pub(crate) fn new(upstream: &str, repo: &str, reference: &str) -> Self {
        let mut s = String::with_capacity(repo.len() + reference.len() + upstream.len() + 2);
        join(&mut s, upstream, repo, reference);
        TagKey(s.into_boxed_str())
    }

    /// Calls `f` with the key's string form, built in a reused per-thread buffer.
    pub(crate) fn with<R>(
        upstream: &str,
        repo: &str,
        reference: &str,
        f: impl FnOnce(&str) -> R,
    ) -> R {
        thread_local! {
            static BUF: RefCell<String> = const { RefCell::new(String::new()) };
        }
        BUF.with(|b| {
            let mut b = b.borrow_mut();
            b.clear();
            join(&mut b, upstream, repo, reference);
            f(&b)
        })
    }
}

fn join(s: &mut String, upstream: &str, repo: &str, reference: &str) {
    s.push_str(repo);
    s.push('\0');
    s.push_str(reference);
    s.push('\0');
    s.push_str(upstream);
}

// Hash and Eq agree with str's: the derived ones hash and compare the one field.
impl Borrow<str> for TagKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn a_borrowed_lookup_finds_the_owned_key() {
        let mut m = HashMap::new();
        m.insert(TagKey::new("local", "team/app", "v1"), 1);
        m.insert(TagKey::new("local", "team/app", "v2"), 2);
        m.insert(TagKey::new("other", "team/app", "v1"), 3);
        let get = |u, r, t| TagKey::with(u, r, t, |k| m.get(k).copied());
        assert_eq!(get("local", "team/app", "v1"), Some(1));
        assert_eq!(get("other", "team/app", "v1"), Some(3));
        assert_eq!(get("local", "team/app", "v3"), None);
        // The parts cannot run into each other.
        assert_eq!(get("local", "team/appv", "1"), None);
        assert_ne!(TagKey::new("a", "b", "c"), TagKey::new("a", "bc", ""));
    }
}
