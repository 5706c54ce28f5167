//! Command line: `breakwater serve [--config FILE]` and the offline maintenance commands.

use crate::config::Settings;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// breakwater: a verifying pull-through cache for container registries.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the cache.
    Serve {
        /// Config file (TOML). Without it: the embedded default (./data, public upstreams).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Re-hash every stored blob, quarantine mismatches, repair the index, and report.
    /// Exits 2 when bad blobs were found (and moved aside).
    Scrub {
        /// Config file (TOML), for the store location.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Admin(crate::admin::cli::AdminCommand),
    #[command(flatten)]
    Scan(crate::admin::scan_cli::ScanCommand),
    #[command(flatten)]
    Ready(crate::admin::ready_cli::ReadyCommand),
    /// Several replicas: members, fill leases and job leases (`cluster status`).
    #[command(subcommand)]
    Cluster(crate::admin::cluster::ClusterCommand),
    /// Write the client set-up (containerd hosts.toml, dockerd daemon.json, podman/CRI-O
    /// registries.conf, k3s registries.yaml) for every configured upstream, mirrored at --url.
    ClientConfig {
        /// The client to configure.
        #[arg(value_enum)]
        client: crate::clientconfig::Client,
        /// breakwater's registry URL as clients reach it, e.g. http://breakwater.internal:5000.
        #[arg(long)]
        url: String,
        /// Config file (TOML) naming the upstreams. Without it: the embedded default's.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Write the files under this directory (created) instead of printing them.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check a config file and print the resulting upstreams.
    CheckConfig {
        /// Config file (TOML).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// Loads the file if given, else the embedded default.
pub fn load_settings(path: Option<&PathBuf>) -> Result<Settings, String> {
    Settings::load_or_default(path.map(PathBuf::as_path))
}
