//! `[storage] backend` and `[storage.s3]`: which blob store breakwater opens, and how it reaches
//! an S3 or S3-compatible bucket.

use super::ConfigError;
use breakwater_store::store::object::{S3Config, Secret, Sse};
use serde::Deserialize;
use std::time::Duration;

/// Where verified blobs live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageBackend {
    /// Files under `[storage] root` (the default).
    Filesystem,
    /// Objects in a bucket; the index and fill staging stay under `root`.
    S3(Box<S3Config>),
}

/// `[storage.s3]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawS3 {
    endpoint: Option<String>,
    region: Option<String>,
    bucket: Option<String>,
    prefix: Option<String>,
    access_key_id: Option<String>,
    access_key_id_env: Option<String>,
    secret_access_key: Option<String>,
    secret_access_key_env: Option<String>,
    virtual_hosted_style: Option<bool>,
    sse: Option<String>,
    kms_key_id: Option<String>,
    redirect: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    redirect_ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    local_cache_bytes: Option<breakwater_lifecycle::settings::ByteSize>,
}

/// Resolves `backend` and `[storage.s3]`; `env` reads the environment (a parameter so tests
/// need not set process variables).
pub(super) fn backend(
    name: Option<&str>,
    s3: Option<RawS3>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<StorageBackend, ConfigError> {
    let invalid = |m: String| Err(ConfigError::Invalid(m));
    match name.unwrap_or("filesystem") {
        "filesystem" => {
            if s3.is_some() {
                return invalid(
                    "[storage.s3] is set but storage.backend is not \"s3\"".to_string(),
                );
            }
            Ok(StorageBackend::Filesystem)
        }
        "s3" => {
            let Some(raw) = s3 else {
                return invalid("storage.backend = \"s3\" needs a [storage.s3] section".into());
            };
            raw.resolve(env).map(|c| StorageBackend::S3(Box::new(c)))
        }
        other => invalid(format!(
            "storage.backend = {other:?}: expected \"filesystem\" or \"s3\""
        )),
    }
}

impl RawS3 {
    fn resolve(self, env: impl Fn(&str) -> Option<String>) -> Result<S3Config, ConfigError> {
        let invalid = |m: &str| ConfigError::Invalid(format!("storage.s3: {m}"));
        let bucket = self
            .bucket
            .filter(|b| !b.is_empty())
            .ok_or_else(|| invalid("bucket is required"))?;
        let prefix = self.prefix.unwrap_or_default();
        let prefix = prefix.trim_matches('/');
        if !prefix.split('/').all(|seg| {
            seg.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        }) || prefix
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
            && !prefix.is_empty()
        {
            return Err(invalid(
                "prefix may hold only letters, digits, '.', '_', '-' and '/' between segments",
            ));
        }
        if let Some(e) = &self.endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(invalid("endpoint must be an http:// or https:// URL"));
            }
        }
        let from_env = |name: Option<String>, what: &str| -> Result<Option<String>, ConfigError> {
            match name {
                None => Ok(None),
                Some(var) => env(&var).map(Some).ok_or_else(|| {
                    invalid(&format!(
                        "{what} names the environment variable {var}, which is not set"
                    ))
                }),
            }
        };
        let key_id = match (
            self.access_key_id,
            from_env(self.access_key_id_env, "access_key_id_env")?,
        ) {
            (Some(_), Some(_)) => {
                return Err(invalid("set access_key_id or access_key_id_env, not both"))
            }
            (a, b) => a.or(b),
        };
        let secret = match (
            self.secret_access_key,
            from_env(self.secret_access_key_env, "secret_access_key_env")?,
        ) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "set secret_access_key or secret_access_key_env, not both",
                ))
            }
            (a, b) => a.or(b),
        };
        if key_id.is_some() != secret.is_some() {
            return Err(invalid(
                "an access key id and a secret access key go together (or set neither to use the AWS environment)",
            ));
        }
        let sse = match (self.sse.as_deref(), self.kms_key_id) {
            (None, None) => None,
            (None, Some(_)) => return Err(invalid("kms_key_id needs sse = \"kms\"")),
            (Some("aes256"), None) => Some(Sse::Aes256),
            (Some("aes256"), Some(_)) => return Err(invalid("kms_key_id needs sse = \"kms\"")),
            (Some("kms"), key_id) => Some(Sse::Kms { key_id }),
            (Some(other), _) => {
                return Err(invalid(&format!(
                    "sse = {other:?}: expected \"aes256\" or \"kms\""
                )))
            }
        };
        let redirect_ttl = match (self.redirect.unwrap_or(false), self.redirect_ttl) {
            (true, ttl) => {
                let ttl = ttl.unwrap_or(Duration::from_secs(300));
                // SigV4 presigned URLs are valid for at most 7 days.
                if ttl.is_zero() || ttl > Duration::from_secs(7 * 24 * 3600) {
                    return Err(invalid("redirect_ttl must be between 1s and 7 days"));
                }
                Some(ttl)
            }
            (false, Some(_)) => return Err(invalid("redirect_ttl needs redirect = true")),
            (false, None) => None,
        };
        Ok(S3Config {
            endpoint: self.endpoint.map(|e| e.trim_end_matches('/').to_string()),
            region: self.region,
            bucket,
            prefix: prefix.to_string(),
            access_key_id: key_id,
            secret_access_key: secret.map(Secret::new),
            virtual_hosted_style: self.virtual_hosted_style.unwrap_or(false),
            sse,
            redirect_ttl,
            timeout: self.timeout.unwrap_or(Duration::from_secs(60)),
            local_cache_bytes: match self.local_cache_bytes {
                Some(b) if b.0 == 0 => return Err(invalid("local_cache_bytes must be above 0")),
                b => b.map(|b| b.0),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str, env: &[(&str, &str)]) -> Result<StorageBackend, ConfigError> {
        #[derive(Deserialize)]
        struct T {
            backend: Option<String>,
            s3: Option<RawS3>,
        }
        let t: T = toml::from_str(toml_text).expect("valid toml");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        backend(t.backend.as_deref(), t.s3, |k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }

    fn err(toml_text: &str) -> String {
        parse(toml_text, &[]).unwrap_err().to_string()
    }

    #[test]
    fn filesystem_is_the_default() {
        assert_eq!(parse("", &[]).unwrap(), StorageBackend::Filesystem);
        assert!(err("[s3]\nbucket = \"b\"").contains("not \"s3\""));
        assert!(err("backend = \"gcs\"").contains("expected \"filesystem\" or \"s3\""));
    }

    #[test]
    fn s3_settings_resolve_with_credentials_from_the_environment() {
        let b = parse(
            "backend = \"s3\"\n[s3]\nendpoint = \"http://127.0.0.1:3900/\"\nregion = \"garage\"\n\
             bucket = \"cache\"\nprefix = \"/bw/one/\"\naccess_key_id_env = \"K\"\n\
             secret_access_key_env = \"S\"\nsse = \"kms\"\nkms_key_id = \"key-1\"\nredirect = true\n\
             local_cache_bytes = \"2GiB\"\n",
            &[("K", "GK123"), ("S", "very-secret")],
        )
        .unwrap();
        let StorageBackend::S3(c) = b else {
            panic!("s3 expected")
        };
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        assert_eq!(c.prefix, "bw/one");
        assert_eq!(c.access_key_id.as_deref(), Some("GK123"));
        assert_eq!(
            c.secret_access_key.as_ref().unwrap().expose(),
            "very-secret"
        );
        assert_eq!(
            c.sse,
            Some(Sse::Kms {
                key_id: Some("key-1".into())
            })
        );
        assert_eq!(c.redirect_ttl, Some(Duration::from_secs(300)));
        assert!(!c.virtual_hosted_style);
        assert_eq!(c.local_cache_bytes, Some(2 << 30));
        // The secret never reaches a Debug rendering (and so no log line).
        let shown = format!("{c:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("GK123"));
    }

    #[test]
    fn bad_s3_settings_are_refused_with_a_reason() {
        let base = "backend = \"s3\"\n[s3]\nbucket = \"b\"\n";
        assert!(err("backend = \"s3\"").contains("needs a [storage.s3]"));
        assert!(err("backend = \"s3\"\n[s3]\nregion = \"x\"").contains("bucket is required"));
        assert!(err(&format!("{base}access_key_id = \"a\"")).contains("go together"));
        assert!(err(&format!("{base}secret_access_key_env = \"NOPE_UNSET\"")).contains("not set"));
        assert!(err(&format!("{base}sse = \"des\"")).contains("expected \"aes256\" or \"kms\""));
        assert!(err(&format!("{base}sse = \"aes256\"\nkms_key_id = \"k\"")).contains("needs sse"));
        assert!(err(&format!("{base}redirect_ttl = \"5m\"")).contains("needs redirect"));
        assert!(err(&format!("{base}redirect = true\nredirect_ttl = \"30d\"")).contains("7 days"));
        assert!(err(&format!("{base}prefix = \"a//b\"")).contains("prefix"));
        assert!(err(&format!("{base}prefix = \"a/../b\"")).contains("prefix"));
        assert!(err(&format!("{base}endpoint = \"127.0.0.1:3900\"")).contains("http://"));
        let StorageBackend::S3(c) = parse(&format!("{base}sse = \"aes256\""), &[]).unwrap() else {
            panic!("s3 expected")
        };
        assert_eq!(c.sse, Some(Sse::Aes256));
        assert_eq!(c.prefix, "");
        assert_eq!(c.redirect_ttl, None);
        assert_eq!(c.local_cache_bytes, None);
        assert!(err(&format!("{base}local_cache_bytes = 0")).contains("above 0"));
    }
}
