//! The referrers API upstream (`GET /v2/<name>/referrers/<digest>`): every page of the answer,
//! merged into one list, or word that the upstream has no such API.

use super::body::{read_limited, ReadError};
use super::{Upstream, UpstreamError};
use crate::config::Credentials;
use crate::oci::manifest::OCI_INDEX;
use crate::oci::referrers::{Referrers, MAX_REFERRERS_BYTES};
use crate::oci::{Digest, RepoName};
use reqwest::header::{ACCEPT, LINK};
use reqwest::Method;

/// Pages followed before the answer is called too long (each page may hold many referrers).
const MAX_PAGES: usize = 20;

impl Upstream {
    /// All referrers of `subject` in `repo` through upstream's referrers API, unfiltered (the
    /// cache filters, so one cached answer serves every `artifactType`). A 404 (a registry
    /// without the API) is an error like any other status: what it means is the caller's call.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        client: Option<&Credentials>,
    ) -> Result<Referrers, UpstreamError> {
        let mut url = self.url(repo, &format!("referrers/{subject}"));
        let mut all = Referrers::default();
        let mut total = 0;
        for _ in 0..MAX_PAGES {
            let resp = self
                .send(
                    "referrers",
                    Method::GET,
                    &url,
                    &[(ACCEPT, OCI_INDEX.to_string())],
                    repo,
                    client,
                )
                .await?;
            if !resp.status().is_success() {
                return Err(self.error_from(resp).await);
            }
            let next = resp
                .headers()
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let body = read_limited(
                resp,
                MAX_REFERRERS_BYTES - total,
                self.settings.manifest_timeout,
            )
            .await
            .map_err(|e| match e {
                ReadError::TooLarge => self.invalid(format!(
                    "referrers of {subject} in {repo} exceed {MAX_REFERRERS_BYTES} bytes"
                )),
                ReadError::Io(r) => self.unreachable(r),
            })?;
            total += body.len();
            let list = Referrers::parse(&body)
                .map_err(|e| self.invalid(format!("referrers of {subject} in {repo}: {e}")))?;
            all.extend(list);
            match next {
                Some(n) => url = self.resolve_link(&n),
                None => return Ok(all),
            }
        }
        Err(self.invalid(format!(
            "referrers of {subject} in {repo} run past {MAX_PAGES} pages"
        )))
    }

    /// A `Link` target made absolute against this upstream (registries send paths).
    fn resolve_link(&self, target: &str) -> String {
        if target.starts_with("http://") || target.starts_with("https://") {
            target.to_string()
        } else {
            format!("{}{}", self.settings.url, target)
        }
    }
}

/// The target of a `Link: <…>; rel="next"` header.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.trim().split_once(';')?;
        let rel_next = params
            .split(';')
            .any(|p| p.trim().replace('"', "") == "rel=next");
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        rel_next.then(|| target.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::next_link;

    #[test]
    fn link_header_next_target() {
        assert_eq!(
            next_link(r#"</v2/a/referrers/sha256:1?n=1&last=x>; rel="next""#).as_deref(),
            Some("/v2/a/referrers/sha256:1?n=1&last=x")
        );
        assert_eq!(
            next_link(r#"<https://h/p>; rel="prev", <https://h/q>; rel=next"#).as_deref(),
            Some("https://h/q")
        );
        assert_eq!(next_link(r#"<https://h/p>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
    }
}
