//! `GET /api/v1/cluster/status` and `breakwater cluster status [--json]`: the replicas
//! registered in the shared database (alive or dead by heartbeat age), the live fill leases
//! with their holders, and the job leases.

use super::cli::{connect, Conn};
use super::http::{self as api, ApiError};
use crate::cluster::Cluster;
use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;
use std::fmt::Write as _;
use std::sync::Arc;

/// The admin API path.
pub const STATUS_PATH: &str = "/api/v1/cluster/status";

/// Answers the status request (404 when this replica is not in a cluster).
pub async fn status(cluster: Option<&Arc<Cluster>>) -> ::http::Response<Vec<u8>> {
    let Some(c) = cluster else {
        return api::error(&ApiError::new(
            404,
            "this breakwater is not in a cluster (no [cluster] section)",
        ));
    };
    match c.status().await {
        Ok(s) => api::json(200, &s),
        Err(e) => api::error(&ApiError::new(
            503,
            format!("cannot read cluster state: {e}"),
        )),
    }
}

/// `POST /api/v1/gc` in a cluster: runs only while holding the `gc` job lease; 409 when
/// another replica's GC (scheduled or asked for) is running.
pub async fn gc(
    cluster: &Arc<Cluster>,
    lifecycle: &Arc<crate::lifecycle::Lifecycle>,
    req: api::Request,
) -> ::http::Response<Vec<u8>> {
    let run = super::api::handle(lifecycle, req);
    match cluster
        .exclusive_within("gc", std::time::Duration::ZERO, run)
        .await
    {
        Ok(resp) => resp,
        Err(why) => api::error(&ApiError::new(409, format!("GC not started: {why}"))),
    }
}

/// Cluster commands.
#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Members (alive or dead by heartbeat), fill leases with their holders, and job leases.
    Status {
        #[command(flatten)]
        conn: Conn,
    },
}

/// Runs a cluster command.
pub fn run(cmd: ClusterCommand) -> Result<(), String> {
    let ClusterCommand::Status { conn } = cmd;
    let v = connect(&conn)?.call(Method::GET, "/cluster/status", &[], None)?;
    if conn.json {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print!("{}", status_text(&v));
    }
    Ok(())
}

fn status_text(v: &Value) -> String {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let mut out = String::new();
    let empty = Vec::new();
    let _ = writeln!(out, "answered by {}\n\nMEMBERS", s(&v["node"]));
    for m in v["members"].as_array().unwrap_or(&empty) {
        let state = if m["alive"].as_bool() == Some(true) {
            "alive"
        } else {
            "dead"
        };
        let me = if m["this_node"].as_bool() == Some(true) {
            " (this)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  {}{me}  {state}  heartbeat {} ms ago  {}",
            s(&m["node"]),
            m["heartbeat_age_ms"],
            s(&m["peer_url"])
        );
    }
    let _ = writeln!(out, "\nFILL LEASES");
    for l in v["fill_leases"].as_array().unwrap_or(&empty) {
        let _ = writeln!(
            out,
            "  {}  held by {}  expires in {} ms",
            s(&l["digest"]),
            s(&l["owner"]),
            l["expires_in_ms"]
        );
    }
    let _ = writeln!(out, "\nJOB LEASES");
    for j in v["job_leases"].as_array().unwrap_or(&empty) {
        let _ = writeln!(
            out,
            "  {}  held by {}  expires in {} ms",
            s(&j["name"]),
            s(&j["owner"]),
            j["expires_in_ms"]
        );
    }
    out
}
