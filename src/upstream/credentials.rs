//! Which credentials a request uses upstream: the configured ones, or on a
//! `credentials = "client"` upstream the client's own (tokens cached per credentials).

use super::Upstream;
use crate::config::Credentials;

impl Upstream {
    /// The credentials used upstream: the client's own on a `credentials = "client"` upstream
    /// (none for an anonymous client), else the configured ones.
    pub(super) fn credentials<'a>(
        &'a self,
        client: Option<&'a Credentials>,
    ) -> Option<&'a Credentials> {
        if self.settings.client_credentials {
            client
        } else {
            self.settings.credentials.as_ref()
        }
    }

    /// The token cache key: the scope, and on a client-credentials upstream whose credentials
    /// (a hash of them, so one client's token never serves another).
    pub(super) fn token_key(&self, scope: &str, client: Option<&Credentials>) -> String {
        match (self.settings.client_credentials, client) {
            (false, _) => scope.to_string(),
            (true, None) => format!("anonymous {scope}"),
            (true, Some(c)) => format!("{} {scope}", c.fingerprint()),
        }
    }
}
