//! The admin API's token: read once at start from a file or an environment variable.

use super::ConfigError;
use std::path::PathBuf;

/// The admin API's shared secret. Never logged: `Debug` hides it.
#[derive(Clone)]
pub struct AdminToken(String);

impl AdminToken {
    /// A token from its text (surrounding whitespace, e.g. a file's newline, is not part of it).
    pub fn new(text: &str) -> Option<Self> {
        let t = text.trim();
        (!t.is_empty()).then(|| AdminToken(t.to_string()))
    }

    /// The token, to send as `Authorization: Bearer <token>`.
    pub fn secret(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is the token, in time independent of where they differ.
    pub fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<hidden>)")
    }
}

/// Reads the admin token from `server.admin_token_file` or `server.admin_token_env`.
pub(super) fn admin_token(
    file: Option<PathBuf>,
    env: Option<String>,
) -> Result<Option<AdminToken>, ConfigError> {
    Ok(read_secret(file, env, "server.admin_token")?.and_then(|t| AdminToken::new(&t)))
}

/// Reads a secret from `<what>_file` or `<what>_env` (one of them, or neither): trimmed, and
/// never empty.
pub(super) fn read_secret(
    file: Option<PathBuf>,
    env: Option<String>,
    what: &str,
) -> Result<Option<String>, ConfigError> {
    let (text, source) = match (file, env) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(ConfigError::Invalid(format!(
                "{what}_file and {what}_env are alternatives: set one"
            )))
        }
        (Some(path), None) => (
            std::fs::read_to_string(&path).map_err(|e| {
                ConfigError::Invalid(format!("{what}_file: cannot read {}: {e}", path.display()))
            })?,
            format!("{what}_file {}", path.display()),
        ),
        (None, Some(var)) => (
            std::env::var(&var).map_err(|_| {
                ConfigError::Invalid(format!("{what}_env: environment variable {var} is not set"))
            })?,
            format!("{what}_env {var}"),
        ),
    };
    let t = text.trim();
    if t.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "{source} holds an empty token"
        )));
    }
    Ok(Some(t.to_string()))
}
