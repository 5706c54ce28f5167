//! Tag lists (passed through, with cached tags when upstream is down) and the catalog of what the
//! cache holds.

use super::{blocking, fill_denied, internal, upstream_error, CacheStatus, Registry, Target};
use crate::oci::{ErrorCode, RegistryError};
use bytes::Bytes;
use serde::Serialize;

/// A tag-list answer.
pub struct TagList {
    /// JSON body `{"name":…, "tags":[…]}`.
    pub body: Bytes,
    /// Upstream's `Link` for the next page (its path still upstream's).
    pub link: Option<String>,
    /// When the cache paged the list itself: the `last` of the next page.
    pub next_last: Option<String>,
    /// Miss (from upstream) or stale (cached tags because upstream failed).
    pub status: CacheStatus,
}

/// `n` and `last` from a tag-list or catalog query.
#[derive(Debug, Default, Clone)]
pub struct Page {
    /// Page size.
    pub n: Option<usize>,
    /// Last entry of the previous page.
    pub last: Option<String>,
}

impl Page {
    /// Applies the page to a sorted list; returns the page and whether more follow.
    pub fn apply(&self, all: Vec<String>) -> (Vec<String>, bool) {
        let start = match &self.last {
            Some(l) => all.partition_point(|x| x <= l),
            None => 0,
        };
        let rest = &all[start..];
        match self.n {
            Some(n) if n < rest.len() => (rest[..n].to_vec(), true),
            _ => (rest.to_vec(), false),
        }
    }
}

#[derive(serde::Deserialize)]
struct TagsOwned {
    name: String,
    tags: Option<Vec<String>>,
}

#[derive(Serialize)]
struct TagsBody<'a> {
    name: &'a str,
    tags: Vec<String>,
}

impl Registry {
    /// Upstream's tag list with the client's query; cached tags when upstream is down.
    pub async fn tags(
        &self,
        t: &Target,
        query: &str,
        page: &Page,
        client_name: &str,
    ) -> Result<TagList, RegistryError> {
        self.ensure_accepted(t).await?;
        if !t.may_fill {
            return self
                .cached_tags(
                    t,
                    page,
                    client_name,
                    CacheStatus::Hit,
                    fill_denied(t, "the tag list"),
                )
                .await;
        }
        match t
            .upstream
            .tags(&t.repo, query, t.client_credentials())
            .await
        {
            Ok(f) => {
                self.metrics.request("tags", "miss");
                // A complete list (no upstream Link) is sorted lexically, as the specification
                // requires, and paged here for upstreams that ignore n/last (distribution 2.8).
                let paged = match &f.link {
                    None => serde_json::from_slice::<TagsOwned>(&f.body).ok().map(|t| {
                        let mut all = t.tags.unwrap_or_default();
                        all.sort();
                        all.dedup();
                        let (tags, more) = page.apply(all);
                        let next = more.then(|| tags.last().cloned()).flatten();
                        let body = serde_json::to_vec(&TagsBody {
                            name: &t.name,
                            tags,
                        })
                        .unwrap_or_default();
                        (Bytes::from(body), next)
                    }),
                    _ => None,
                };
                let (body, next_last) = match paged {
                    Some((b, n)) => (b, n),
                    None => (f.body, None),
                };
                Ok(TagList {
                    body,
                    link: f.link,
                    next_last,
                    status: CacheStatus::Miss,
                })
            }
            Err(e) if e.is_outage() => {
                let why = upstream_error(&e, ErrorCode::NameUnknown);
                self.cached_tags(t, page, client_name, CacheStatus::Stale, why)
                    .await
            }
            Err(e) => Err(upstream_error(&e, ErrorCode::NameUnknown)),
        }
    }

    /// The tag list as cached (an outage, or a client that may not fill); `why` when empty.
    async fn cached_tags(
        &self,
        t: &Target,
        page: &Page,
        client_name: &str,
        status: CacheStatus,
        why: RegistryError,
    ) -> Result<TagList, RegistryError> {
        let (index, key) = (self.index.clone(), t.key());
        let all = blocking(move || index.tags(&key))
            .await?
            .map_err(internal)?;
        if all.is_empty() {
            return Err(why);
        }
        let (tags, more) = page.apply(all);
        let next_last = more.then(|| tags.last().cloned()).flatten();
        self.metrics.request("tags", status.as_str());
        let body = serde_json::to_vec(&TagsBody {
            name: client_name,
            tags,
        })
        .unwrap_or_default();
        Ok(TagList {
            body: Bytes::from(body),
            link: None,
            next_last,
            status,
        })
    }

    /// Every cached repository as `<upstream>/<name>` (which the prefix route accepts), paged.
    /// Only repositories `visible` accepts are listed (the access rules' pull).
    pub async fn catalog(
        &self,
        page: &Page,
        visible: impl Fn(&str) -> bool,
    ) -> Result<(Vec<String>, bool), RegistryError> {
        let index = self.index.clone();
        let repos = blocking(move || index.repositories())
            .await?
            .map_err(internal)?;
        let mut names: Vec<String> = repos
            .into_iter()
            .map(|r| r.to_string())
            .filter(|n| visible(n))
            .collect();
        names.sort();
        Ok(page.apply(names))
    }
}

#[cfg(test)]
mod tests {
    use super::Page;

    #[test]
    fn paging() {
        let all: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let p = Page {
            n: Some(2),
            last: None,
        };
        assert_eq!(p.apply(all.clone()), (vec!["a".into(), "b".into()], true));
        let p = Page {
            n: Some(2),
            last: Some("b".into()),
        };
        assert_eq!(p.apply(all.clone()), (vec!["c".into(), "d".into()], false));
        let p = Page {
            n: None,
            last: Some("bb".into()),
        };
        assert_eq!(p.apply(all), (vec!["c".into(), "d".into()], false));
    }
}
