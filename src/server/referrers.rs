//! `GET /v2/<name>/referrers/<digest>[?artifactType=…]`: parses the request, asks the registry,
//! and answers an OCI image index with the cache and filter headers.

use super::respond::{header, send_bytes, set};
use super::{Outcome, RegistryApp};
use crate::access::Client;
use crate::oci::manifest::OCI_INDEX;
use crate::registry::CacheStatus;
use pingora::protocols::http::ServerSession;

impl RegistryApp {
    pub(super) async fn referrers(
        &self,
        session: &mut ServerSession,
        client: Option<&Client>,
        name: &str,
        digest: &str,
        query: &str,
        head: bool,
    ) -> Outcome {
        // The same routing and pull / fill checks as a manifest request.
        let (target, subject) = match self
            .digest_target(session, (client, "referrers"), name, digest, query, head)
            .await
        {
            Ok(found) => found,
            Err(refused) => return refused,
        };
        let artifact_type = artifact_type(query);
        let answer = match self
            .registry
            .referrers(&target, &subject, artifact_type.as_deref())
            .await
        {
            Ok(a) => a,
            Err(e) => {
                return self
                    .refuse_or_fail(session, (client, name), &target, "referrers", &e, head)
                    .await
            }
        };
        self.registry
            .metrics()
            .request("referrers", answer.status.as_str());
        let mut h = header(200);
        set(&mut h, "Content-Type", OCI_INDEX);
        set(&mut h, "X-Breakwater-Cache", answer.status.as_str());
        if answer.filtered {
            set(&mut h, "OCI-Filters-Applied", "artifactType");
        }
        if answer.status == CacheStatus::Stale {
            set(
                &mut h,
                "Warning",
                "110 breakwater \"Response is Stale: upstream unavailable\"",
            );
        }
        send_bytes(session, h, answer.body, head).await.into()
    }
}

/// The `artifactType` query parameter, percent-decoded. A `+` stays a `+`: media types hold no
/// spaces, and clients that do not escape it (`application/spdx+json`) mean the plus.
fn artifact_type(query: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let v = kv.strip_prefix("artifactType=")?;
        let v = percent_encoding::percent_decode_str(v).decode_utf8_lossy();
        (!v.is_empty()).then(|| v.into_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::artifact_type;

    #[test]
    fn artifact_type_param() {
        let sbom = Some("application/spdx+json".to_string());
        assert_eq!(artifact_type("artifactType=application/spdx+json"), sbom);
        assert_eq!(
            artifact_type("ns=x&artifactType=application%2Fspdx%2Bjson"),
            sbom
        );
        assert_eq!(artifact_type("artifactType="), None);
        assert_eq!(artifact_type("n=1"), None);
    }
}
