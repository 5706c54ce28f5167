//! OCI 1.1 referrers: the list of manifests whose `subject` is a given digest, as the referrers
//! API answers it and as the fallback `<alg>-<hex>` tag holds it (an OCI image index either way).
//! Parsed once from upstream bytes; filtered by `artifactType` here.

use crate::digest::Digest;
use crate::manifest::OCI_INDEX;
use crate::name::Tag;
use serde::{Deserialize, Serialize};

/// Largest referrers document accepted from upstream (all pages together), as for manifests.
pub const MAX_REFERRERS_BYTES: usize = crate::manifest::MAX_MANIFEST_BYTES;

/// The tag that holds `subject`'s referrers on a registry without the referrers API:
/// `<alg>-<hex>`, the hex part truncated to 64 characters (the specification's referrers tag).
pub fn referrers_tag(subject: &Digest) -> Tag {
    let hex = &subject.hex()[..subject.hex().len().min(64)];
    Tag::parse(&format!("{}-{hex}", subject.algorithm().as_str()))
        .expect("an algorithm name, '-' and 64 hex digits form a valid tag")
}

/// Why bytes are not a referrers list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a referrers index: {0}")]
pub struct ReferrersError(String);

/// One referrer: a descriptor of a manifest that names the subject. Fields other than those
/// read here (annotations, platform, …) are kept as they came.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Referrer {
    /// The referring manifest's media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Its digest (checked to be a valid digest when parsed).
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// What kind of artifact it is (signature, SBOM …), when given.
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

/// A referrers list: the `manifests` of an OCI image index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Referrers {
    /// The referrers, in upstream's order.
    pub manifests: Vec<Referrer>,
}

#[derive(Deserialize)]
struct IndexIn {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<u32>,
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<Referrer>,
}

#[derive(Serialize)]
struct IndexOut<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    manifests: &'a [Referrer],
}

impl Referrers {
    /// Parses an image index (a referrers API page or the referrers tag's content).
    pub fn parse(bytes: &[u8]) -> Result<Self, ReferrersError> {
        if bytes.len() > MAX_REFERRERS_BYTES {
            return Err(ReferrersError(format!(
                "{} bytes, more than the {MAX_REFERRERS_BYTES} accepted",
                bytes.len()
            )));
        }
        let index: IndexIn =
            serde_json::from_slice(bytes).map_err(|e| ReferrersError(e.to_string()))?;
        if index.schema_version != Some(2) {
            return Err(ReferrersError("schemaVersion is not 2".into()));
        }
        if let Some(mt) = index.media_type.as_deref().filter(|mt| *mt != OCI_INDEX) {
            return Err(ReferrersError(format!(
                "media type {mt:?} is not {OCI_INDEX}"
            )));
        }
        for r in &index.manifests {
            Digest::parse(&r.digest).map_err(|e| ReferrersError(e.to_string()))?;
        }
        Ok(Referrers {
            manifests: index.manifests,
        })
    }

    /// Appends the next page of a paged answer.
    pub fn extend(&mut self, page: Referrers) {
        self.manifests.extend(page.manifests);
    }

    /// Only the referrers of `artifact_type`.
    pub fn filtered(&self, artifact_type: &str) -> Referrers {
        Referrers {
            manifests: self
                .manifests
                .iter()
                .filter(|r| r.artifact_type.as_deref() == Some(artifact_type))
                .cloned()
                .collect(),
        }
    }

    /// The answer's bytes: an OCI image index of the referrers.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&IndexOut {
            schema_version: 2,
            media_type: OCI_INDEX,
            manifests: &self.manifests,
        })
        .expect("descriptors serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIG: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
    const SBOM: &str = "application/spdx+json";

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn index(entries: &[(&str, Option<&str>)]) -> Vec<u8> {
        let manifests: Vec<serde_json::Value> = entries
            .iter()
            .map(|(d, at)| {
                let mut v = serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": d,
                    "size": 123,
                    "annotations": {"org.example": "kept"}
                });
                if let Some(at) = at {
                    v["artifactType"] = serde_json::json!(at);
                }
                v
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests
        }))
        .unwrap()
    }

    #[test]
    fn tag_for_a_digest() {
        let d = Digest::parse(&digest('a')).unwrap();
        assert_eq!(
            referrers_tag(&d).as_str(),
            format!("sha256-{}", "a".repeat(64))
        );
        let long = Digest::parse(&format!("sha512:{}", "b".repeat(128))).unwrap();
        assert_eq!(
            referrers_tag(&long).as_str(),
            format!("sha512-{}", "b".repeat(64))
        );
    }

    #[test]
    fn parse_filter_and_serialise_keep_descriptors() {
        let (a, b) = (digest('a'), digest('b'));
        let r = Referrers::parse(&index(&[(&a, Some(SIG)), (&b, Some(SBOM))])).unwrap();
        assert_eq!(r.manifests.len(), 2);
        let sigs = r.filtered(SIG);
        assert_eq!(sigs.manifests.len(), 1);
        assert_eq!(sigs.manifests[0].digest, a);
        let out: serde_json::Value = serde_json::from_slice(&sigs.to_bytes()).unwrap();
        assert_eq!(out["mediaType"], OCI_INDEX);
        assert_eq!(out["schemaVersion"], 2);
        assert_eq!(out["manifests"][0]["artifactType"], SIG);
        assert_eq!(out["manifests"][0]["annotations"]["org.example"], "kept");
        assert!(r.filtered("application/none").manifests.is_empty());
        // Round trip: what is stored parses back to the same list.
        assert_eq!(Referrers::parse(&r.to_bytes()).unwrap(), r);
    }

    #[test]
    fn paged_answers_merge_in_order() {
        let (a, b) = (digest('a'), digest('b'));
        let mut r = Referrers::parse(&index(&[(&a, None)])).unwrap();
        r.extend(Referrers::parse(&index(&[(&b, Some(SBOM))])).unwrap());
        let ds: Vec<&str> = r.manifests.iter().map(|m| m.digest.as_str()).collect();
        assert_eq!(ds, [a.as_str(), b.as_str()]);
        assert_eq!(r.manifests[0].artifact_type, None);
    }

    #[test]
    fn rejects_what_is_not_a_referrers_index() {
        for bad in [
            &b"<html>"[..],
            br#"{"schemaVersion":1,"manifests":[]}"#,
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#,
            br#"{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"sha256:zz","size":1}]}"#,
            br#"{"schemaVersion":2,"manifests":[{"mediaType":"x","size":1}]}"#,
        ] {
            assert!(
                Referrers::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let empty = Referrers::parse(br#"{"schemaVersion":2,"manifests":[]}"#).unwrap();
        assert!(empty.manifests.is_empty());
        let too_big = vec![b' '; MAX_REFERRERS_BYTES + 1];
        assert!(Referrers::parse(&too_big).is_err());
    }
}
