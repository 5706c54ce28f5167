//! Listing answers: a repository's tags and the catalog, with their `Link` paging.

use super::respond::{header, send_bytes, set};
use super::route::query_param;
use super::{Outcome, RegistryApp};
use crate::access::Client;
use crate::registry::tags::Page;
use bytes::Bytes;
use pingora::protocols::http::ServerSession;

impl RegistryApp {
    pub(super) async fn tags(
        &self,
        session: &mut ServerSession,
        client: Option<&Client>,
        name: &str,
        path: &str,
        query: &str,
        head: bool,
    ) -> Outcome {
        let target = match self
            .target(session, client, "tags", name, query, head)
            .await
        {
            Ok(t) => t,
            Err(refused) => return refused,
        };
        let page = page_of(query);
        // Pass n/last (and nothing else, e.g. not ns) upstream.
        let upstream_query: Vec<String> = query
            .split('&')
            .filter(|kv| kv.starts_with("n=") || kv.starts_with("last="))
            .map(str::to_string)
            .collect();
        match self
            .registry
            .tags(&target, &upstream_query.join("&"), &page, name)
            .await
        {
            Ok(list) => {
                let mut h = header(200);
                set(&mut h, "Content-Type", "application/json");
                set(&mut h, "X-Breakwater-Cache", list.status.as_str());
                if let Some(link) = list
                    .link
                    .as_deref()
                    .and_then(|l| rewrite_link(l, path, query))
                {
                    set(&mut h, "Link", link);
                } else if let (Some(last), Some(n)) = (&list.next_last, page.n) {
                    // The cache paged the list itself: point at its own next page.
                    let own = format!("<{path}?n={n}&last={last}>; rel=\"next\"");
                    if let Some(link) = rewrite_link(&own, path, query) {
                        set(&mut h, "Link", link);
                    }
                }
                send_bytes(session, h, list.body, head).await.into()
            }
            Err(e) => {
                self.refuse_or_fail(session, (client, name), &target, "tags", &e, head)
                    .await
            }
        }
    }

    pub(super) async fn catalog(
        &self,
        session: &mut ServerSession,
        client: Option<&Client>,
        query: &str,
        head: bool,
    ) -> Outcome {
        let page = page_of(query);
        let visible = |repo: &str| match (&self.access, client) {
            (Some(ac), Some(c)) => ac.may_pull(c, repo),
            _ => true,
        };
        match self.registry.catalog(&page, visible).await {
            Ok((repos, more)) => {
                self.registry.metrics().request("catalog", "hit");
                let mut h = header(200);
                set(&mut h, "Content-Type", "application/json");
                if more {
                    if let (Some(last), Some(n)) = (repos.last(), page.n) {
                        set(
                            &mut h,
                            "Link",
                            format!("</v2/_catalog?n={n}&last={last}>; rel=\"next\""),
                        );
                    }
                }
                let body = serde_json::json!({ "repositories": repos });
                send_bytes(session, h, Bytes::from(body.to_string()), head)
                    .await
                    .into()
            }
            Err(e) => self.fail(session, "catalog", &e, head).await,
        }
    }
}

fn page_of(query: &str) -> Page {
    Page {
        n: query_param(query, "n").and_then(|n| n.parse().ok()),
        last: query_param(query, "last"),
    }
}

/// Points upstream's next-page `Link` at this cache's path for the repository, keeping its query
/// (`n`, `last`) and the client's `ns`.
fn rewrite_link(link: &str, path: &str, client_query: &str) -> Option<String> {
    let start = link.find('<')? + 1;
    let end = link[start..].find('>')? + start;
    let target = &link[start..end];
    let upstream_query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut query: Vec<&str> = upstream_query
        .split('&')
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(ns) = client_query.split('&').find(|kv| kv.starts_with("ns=")) {
        query.push(ns);
    }
    Some(format!("<{path}?{}>{}", query.join("&"), &link[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::rewrite_link;

    #[test]
    fn link_rewrite() {
        assert_eq!(
            rewrite_link(
                r#"</v2/library/nginx/tags/list?last=b&n=2>; rel="next""#,
                "/v2/nginx/tags/list",
                "n=2&ns=docker.io"
            )
            .unwrap(),
            r#"</v2/nginx/tags/list?last=b&n=2&ns=docker.io>; rel="next""#
        );
        assert_eq!(
            rewrite_link(
                r#"<https://h/v2/x/tags/list?n=1&last=a>; rel="next""#,
                "/v2/p/x/tags/list",
                ""
            )
            .unwrap(),
            r#"</v2/p/x/tags/list?n=1&last=a>; rel="next""#
        );
        assert!(rewrite_link("garbage", "/p", "").is_none());
    }
}
