//! The OCI error codes and the JSON body every failed registry request answers with.

use serde::Serialize;

/// An OCI distribution error code, with the HTTP status it travels with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The blob is not known (404).
    BlobUnknown,
    /// The manifest is not known (404).
    ManifestUnknown,
    /// The repository is not known (404).
    NameUnknown,
    /// The repository name is malformed (400).
    NameInvalid,
    /// The digest is malformed, or content did not match it (400).
    DigestInvalid,
    /// The manifest is malformed or too large (400).
    ManifestInvalid,
    /// The tag is malformed (400); distribution reports this as MANIFEST_INVALID's sibling.
    TagInvalid,
    /// Authentication required (401).
    Unauthorized,
    /// Access denied by policy (403).
    Denied,
    /// Upstream rate limit reached (429).
    TooManyRequests,
    /// The operation is not supported by a read-only cache (405).
    Unsupported,
    /// Upstream unreachable and nothing cached (503).
    Unavailable,
    /// A range the blob cannot satisfy (416).
    RangeInvalid,
}

impl ErrorCode {
    /// The code string in the error JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::TagInvalid => "TAG_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::RangeInvalid => "RANGE_INVALID",
        }
    }

    /// The HTTP status for this code.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BlobUnknown | ErrorCode::ManifestUnknown | ErrorCode::NameUnknown => 404,
            ErrorCode::NameInvalid
            | ErrorCode::DigestInvalid
            | ErrorCode::ManifestInvalid
            | ErrorCode::TagInvalid => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Denied => 403,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::Unsupported => 405,
            ErrorCode::Unavailable => 503,
            ErrorCode::RangeInvalid => 416,
        }
    }
}

/// A registry error as clients see it: a code and a message naming the cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct RegistryError {
    /// The OCI code.
    pub code: ErrorCode,
    /// What went wrong, for a human.
    pub message: String,
}

impl RegistryError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RegistryError {
            code,
            message: message.into(),
        }
    }

    /// The OCI error JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Body<'a> {
            errors: [Entry<'a>; 1],
        }
        #[derive(Serialize)]
        struct Entry<'a> {
            code: &'a str,
            message: &'a str,
        }
        serde_json::to_vec(&Body {
            errors: [Entry {
                code: self.code.as_str(),
                message: &self.message,
            }],
        })
        .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let e = RegistryError::new(ErrorCode::ManifestUnknown, "no \"x\"");
        let v: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(v["errors"][0]["code"], "MANIFEST_UNKNOWN");
        assert_eq!(v["errors"][0]["message"], "no \"x\"");
        assert_eq!(e.code.status(), 404);
    }
}
