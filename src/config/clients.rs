//! Limits on what one client connection, and one client address, may hold on the registry port
//! (`[server]` keys): how long a request head may take, how long an idle keep-alive connection
//! stays open, how many connections the listener keeps, how many requests one address runs.

use super::ConfigError;
use std::time::Duration;

/// Client limits of the registry listener (not of the admin or peer listeners).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientLimits {
    /// A new connection must deliver a whole request head within this; else it is closed.
    pub header_timeout: Duration,
    /// An idle keep-alive connection is closed after this.
    pub keepalive_timeout: Duration,
    /// A client that takes longer than this to accept one body write (at most
    /// [`SEND_PIECE`] bytes) is disconnected, freeing its connection and request slot.
    pub send_timeout: Duration,
    /// Open registry connections beyond this are closed as soon as they are accepted (lowered at
    /// start to what the open-file limit allows, keeping a reserve).
    pub max_connections: usize,
    /// Requests one client address may have running at once; beyond: 429. `None`: no limit.
    pub max_requests_per_client: Option<usize>,
}

/// The largest body write the registry makes at once, so `send_timeout` bounds the time a
/// client may take per this many bytes (a minimum rate of `SEND_PIECE / send_timeout`).
pub const SEND_PIECE: usize = 1 << 20;

/// Default `max_connections`: far above what a fleet of nodes holds, far below what a process
/// with a raised open-file limit can hold.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Default `max_requests_per_client`. Generous on purpose: a node pulls with a handful of
/// parallel layer downloads (containerd and docker: 3 per image, a few images at once), and
/// hundreds of nodes may share one NAT address; 1,000 running requests from one address is
/// beyond any such fleet and still stops one host from taking every worker and connection.
pub const DEFAULT_MAX_REQUESTS_PER_CLIENT: usize = 1_000;

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            header_timeout: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(60),
            // As nginx's send_timeout: a minute without taking 1 MiB (about 17 KB/s) is a client
            // that stopped reading, not a slow link.
            send_timeout: Duration::from_secs(60),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_requests_per_client: Some(DEFAULT_MAX_REQUESTS_PER_CLIENT),
        }
    }
}

/// The raw `[server]` keys, as the file has them.
#[derive(Default)]
pub(super) struct RawClientLimits {
    pub header_timeout: Option<Duration>,
    pub keepalive_timeout: Option<Duration>,
    pub send_timeout: Option<Duration>,
    pub max_connections: Option<usize>,
    pub max_requests_per_client: Option<usize>,
}

/// Validates the keys: timeouts of at least a second (Pingora counts keep-alive in whole
/// seconds) and at most a day, a cap of at least one connection; 0 requests per client means
/// no limit.
pub(super) fn client_limits(raw: RawClientLimits) -> Result<ClientLimits, ConfigError> {
    let d = ClientLimits::default();
    let timeout = |key: &str, v: Option<Duration>, default: Duration| match v {
        None => Ok(default),
        Some(t) if t < Duration::from_secs(1) || t > Duration::from_secs(86_400) => {
            Err(ConfigError::Invalid(format!(
                "server.{key} must be between 1s and 24h (got {})",
                humantime::format_duration(t)
            )))
        }
        Some(t) => Ok(t),
    };
    let max_connections = match raw.max_connections {
        Some(0) => {
            return Err(ConfigError::Invalid(
                "server.max_connections must be at least 1".into(),
            ))
        }
        Some(n) => n,
        None => d.max_connections,
    };
    Ok(ClientLimits {
        header_timeout: timeout("header_timeout", raw.header_timeout, d.header_timeout)?,
        keepalive_timeout: timeout(
            "keepalive_timeout",
            raw.keepalive_timeout,
            d.keepalive_timeout,
        )?,
        send_timeout: timeout("send_timeout", raw.send_timeout, d.send_timeout)?,
        max_connections,
        max_requests_per_client: match raw.max_requests_per_client {
            Some(0) => None,
            Some(n) => Some(n),
            None => d.max_requests_per_client,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::super::Settings;
    use super::*;

    #[test]
    fn defaults_when_unset() {
        let s = Settings::parse("[server]\n").unwrap();
        assert_eq!(s.server.clients, ClientLimits::default());
        assert_eq!(s.server.clients.header_timeout, Duration::from_secs(30));
        assert_eq!(
            s.server.clients.max_requests_per_client,
            Some(DEFAULT_MAX_REQUESTS_PER_CLIENT)
        );
        assert_eq!(
            Settings::embedded_default().server.clients,
            ClientLimits::default()
        );
    }

    #[test]
    fn keys_are_read() {
        let s = Settings::parse(
            "[server]\nheader_timeout = \"2s\"\nkeepalive_timeout = \"5m\"\nsend_timeout = \"3s\"\nmax_connections = 50\nmax_requests_per_client = 4\n",
        )
        .unwrap();
        let c = &s.server.clients;
        assert_eq!(c.header_timeout, Duration::from_secs(2));
        assert_eq!(c.keepalive_timeout, Duration::from_secs(300));
        assert_eq!(c.send_timeout, Duration::from_secs(3));
        assert_eq!(c.max_connections, 50);
        assert_eq!(c.max_requests_per_client, Some(4));
        let off = Settings::parse("[server]\nmax_requests_per_client = 0\n").unwrap();
        assert_eq!(off.server.clients.max_requests_per_client, None);
    }

    #[test]
    fn bad_values_are_refused_with_the_key() {
        for (text, needle) in [
            (
                "header_timeout = \"500ms\"",
                "server.header_timeout must be between",
            ),
            (
                "keepalive_timeout = \"2d\"",
                "server.keepalive_timeout must be between",
            ),
            (
                "max_connections = 0",
                "server.max_connections must be at least 1",
            ),
            ("max_connections = -1", "max_connections"),
            ("header_timeout = \"soon\"", "header_timeout"),
        ] {
            let e = Settings::parse(&format!("[server]\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
