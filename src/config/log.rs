//! The `[log]` section: the diagnostic log's level and the access log (one line per request).

use super::ConfigError;
use serde::Deserialize;
use std::path::PathBuf;

/// Logging settings.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// The diagnostic log's filter (`info`, `debug`, `breakwater=debug`, …); `BREAKWATER_LOG` or
    /// `RUST_LOG` in the environment win over it.
    pub level: String,
    /// Where access log lines go.
    pub access: AccessLogTarget,
    /// Their format.
    pub format: AccessLogFormat,
    /// Size at which the access log file is rotated (renamed to `<file>.1`); `None`: never, and
    /// rotation is left to logrotate with SIGHUP.
    pub max_bytes: Option<u64>,
}

/// Where the access log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// No access log.
    Off,
    /// Standard output.
    Stdout,
    /// A file, reopened on SIGHUP (logrotate's `postrotate`) and rotated by size if configured.
    File(PathBuf),
}

/// Access log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// Space-separated fields, readable and grep-friendly.
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: "info".into(),
            access: AccessLogTarget::Stdout,
            format: AccessLogFormat::Text,
            max_bytes: None,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    level: Option<String>,
    access: Option<String>,
    format: Option<String>,
    max_bytes: Option<breakwater_lifecycle::settings::ByteSize>,
}

impl RawLog {
    /// The settings; errors name the key.
    pub(super) fn resolve(self) -> Result<LogSettings, ConfigError> {
        let invalid = |m: String| ConfigError::Invalid(format!("log.{m}"));
        let d = LogSettings::default();
        let level = self.level.unwrap_or(d.level);
        if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
            return Err(invalid(format!(
                "level = {level:?} is not a log filter (e.g. \"info\", \"breakwater=debug\")"
            )));
        }
        let access = match self.access.as_deref() {
            None | Some("stdout") => AccessLogTarget::Stdout,
            Some("off") => AccessLogTarget::Off,
            Some("") => {
                return Err(invalid(
                    "access is empty: \"stdout\", \"off\" or a file path".into(),
                ))
            }
            Some(path) => AccessLogTarget::File(PathBuf::from(path)),
        };
        let format = match self.format.as_deref() {
            None | Some("text") => AccessLogFormat::Text,
            Some("json") => AccessLogFormat::Json,
            Some(other) => {
                return Err(invalid(format!(
                    "format = {other:?}: expected \"text\" or \"json\""
                )))
            }
        };
        let max_bytes = self.max_bytes.map(|b| b.0);
        if max_bytes.is_some() && !matches!(access, AccessLogTarget::File(_)) {
            return Err(invalid(
                "max_bytes rotates an access log file: set access to a path".into(),
            ));
        }
        Ok(LogSettings {
            level,
            access,
            format,
            max_bytes,
        })
    }
}
