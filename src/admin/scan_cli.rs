//! `breakwater scan findings|run|status|reload` and `breakwater sbom`: clients of the scan
//! admin API. Images are `<upstream>/<name>:<tag>` or `<upstream>/<name>@<digest>`.

use super::cli::{connect, encode, Conn};
use super::table;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::Value;
use std::path::PathBuf;

/// Scan commands.
#[derive(Subcommand, Debug)]
pub enum ScanCommand {
    /// Vulnerability scanning: findings, scan now, data status.
    Scan {
        #[command(subcommand)]
        command: ScanSub,
    },
    /// CycloneDX 1.5 SBOM (JSON) of a cached image, scanning it first if needed.
    Sbom {
        #[command(flatten)]
        image: ImageArgs,
        /// Write it to this file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

/// An image and where the admin API is.
#[derive(Args, Debug)]
pub struct ImageArgs {
    #[command(flatten)]
    conn: Conn,
    /// `<upstream>/<name>:<tag>` or `<upstream>/<name>@<digest>`, e.g. docker.io/library/nginx:1.27.
    image: String,
}

/// `breakwater scan ...`.
#[derive(Subcommand, Debug)]
pub enum ScanSub {
    /// The stored findings of an image (ECR's shape with --json).
    Findings {
        #[command(flatten)]
        image: ImageArgs,
    },
    /// Scan an image now (pulling what is not cached) and print its findings.
    Run {
        #[command(flatten)]
        image: ImageArgs,
    },
    /// The vulnerability data in use, scan settings and finding totals.
    Status {
        #[command(flatten)]
        conn: Conn,
    },
    /// Check the vulnerability data sources now; rematch every image if they changed.
    Reload {
        #[command(flatten)]
        conn: Conn,
    },
    /// Download osv.dev's all.zip per ecosystem into an osv_paths folder (offline command:
    /// each archive is verified, then swapped in atomically).
    Update(crate::scan::update::UpdateArgs),
}

/// Runs a scan command.
pub fn run(cmd: ScanCommand) -> Result<(), String> {
    match cmd {
        ScanCommand::Scan { command } => {
            match command {
                ScanSub::Findings { image } => findings(&image, Method::GET),
                ScanSub::Run { image } => findings(&image, Method::POST),
                ScanSub::Status { conn } => {
                    let v = connect(&conn)?.call(Method::GET, "/scan/status", &[], None)?;
                    print_json_or(&conn, &v, status_text)
                }
                ScanSub::Update(args) => crate::scan::update::run(args),
                ScanSub::Reload { conn } => {
                    let v = connect(&conn)?.call(Method::POST, "/scan/reload", &[], None)?;
                    print_json_or(&conn, &v, |v| {
                        format!(
                        "data changed: {}; images rematched: {}, new findings: {}, resolved: {}\n",
                        v["changed"], v["rematch"]["images"], v["rematch"]["new_findings"],
                        v["rematch"]["resolved_findings"]
                    )
                    })
                }
            }
        }
        ScanCommand::Sbom { image, output } => {
            let c = connect(&image.conn)?;
            let path = format!("/sbom/{}", encode(&image.image));
            let bom = match c.call(Method::GET, &path, &[], None) {
                Err(e) if e.contains("has not been scanned") => {
                    c.call(
                        Method::POST,
                        &format!("/scans/{}", encode(&image.image)),
                        &[],
                        None,
                    )?;
                    c.call(Method::GET, &path, &[], None)?
                }
                other => other?,
            };
            let text = serde_json::to_string_pretty(&bom).unwrap_or_default() + "\n";
            match output {
                Some(p) => std::fs::write(&p, text)
                    .map_err(|e| format!("cannot write {}: {e}", p.display())),
                None => {
                    print!("{text}");
                    Ok(())
                }
            }
        }
    }
}

fn print_json_or(conn: &Conn, v: &Value, text: impl Fn(&Value) -> String) -> Result<(), String> {
    if conn.json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        print!("{}", text(v));
    }
    Ok(())
}

fn findings(image: &ImageArgs, method: Method) -> Result<(), String> {
    let path = format!("/scans/{}", encode(&image.image));
    let v = connect(&image.conn)?.call(method, &path, &[], None)?;
    print_json_or(&image.conn, &v, findings_text)
}

/// The findings report as a header and a table, worst first.
pub fn findings_text(v: &Value) -> String {
    let s = |x: &Value| x.as_str().unwrap_or("").to_string();
    let f = &v["imageScanFindings"];
    let mut out = format!(
        "{} {}\nstatus: {} — {}\nscanned: {}  data updated: {}\n",
        s(&v["repositoryName"]),
        s(&v["imageId"]["imageDigest"]),
        s(&v["imageScanStatus"]["status"]),
        s(&v["imageScanStatus"]["description"]),
        s(&f["imageScanCompletedAt"]),
        s(&f["vulnerabilitySourceUpdatedAt"]),
    );
    let counts: Vec<String> = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "UNDEFINED"]
        .iter()
        .filter_map(|k| {
            f["findingSeverityCounts"][k]
                .as_u64()
                .map(|n| format!("{k} {n}"))
        })
        .collect();
    out.push_str(&format!(
        "findings: {}\n",
        if counts.is_empty() {
            "none".to_string()
        } else {
            counts.join(", ")
        }
    ));
    if let Some(platforms) = v["platforms"].as_array() {
        for p in platforms {
            out.push_str(&format!(
                "  {} {} {}\n",
                s(&p["platform"]),
                table::short_digest(&s(&p["imageDigest"])),
                s(&p["imageScanStatus"]["status"])
            ));
        }
    }
    let rows: Vec<Vec<String>> = f["findings"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|x| {
            let attr = |k: &str| {
                x["attributes"]
                    .as_array()
                    .and_then(|a| a.iter().find(|e| e["key"] == k))
                    .map(|e| s(&e["value"]))
                    .unwrap_or_default()
            };
            vec![
                s(&x["severity"]),
                s(&x["name"]),
                attr("package_name"),
                attr("package_version"),
                attr("fixed_version"),
                attr("package_type"),
                attr("file_path"),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out.push('\n');
        out.push_str(&table::render(
            &[
                "SEVERITY", "NAME", "PACKAGE", "VERSION", "FIXED IN", "TYPE", "PATH",
            ],
            &rows,
        ));
    }
    out
}

fn status_text(v: &Value) -> String {
    let mut out = String::new();
    match &v["loaded"] {
        Value::Null if v["loading"] == true => out.push_str("vulnerability data: loading\n"),
        Value::Null => out.push_str("vulnerability data: none loaded\n"),
        d => out.push_str(&format!(
            "vulnerability data: {} records (updated {}, loaded {}), hash {}\n",
            d["records"],
            d["updatedAt"].as_str().unwrap_or(""),
            d["loadedAt"].as_str().unwrap_or(""),
            d["contentHash"].as_str().unwrap_or("")
        )),
    }
    if let Some(e) = v["error"].as_str() {
        out.push_str(&format!("last load error: {e}\n"));
    }
    out.push_str(&data_text(&v["loaded"]));
    out.push_str(&format!("sources: {}\n", v["sources"]));
    out.push_str(&format!("scan on cache: {}\n", v["onCache"]));
    out.push_str(&format!("gates: {}\n", v["gates"]));
    out.push_str(&format!("finding totals: {}\n", v["findingTotals"]));
    out
}

/// The loaded data's records per source and ecosystem, its unusable files with their reasons
/// (as many as the API lists, then a count) and its skipped records.
fn data_text(d: &Value) -> String {
    let mut out = String::new();
    let rows: Vec<Vec<String>> = d["recordsBySource"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let eco = r["ecosystem"].as_str().unwrap_or("");
            vec![
                r["source"].as_str().unwrap_or("").to_string(),
                if eco.is_empty() { "-" } else { eco }.to_string(),
                r["records"].to_string(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out.push_str(&table::render(&["SOURCE", "ECOSYSTEM", "RECORDS"], &rows));
    }
    let files = d["unusableFiles"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default();
    let count = d["unusableFileCount"].as_u64().unwrap_or(0);
    if count > 0 {
        out.push_str(&format!("unusable files: {count}\n"));
        for f in files {
            out.push_str(&format!(
                "  {}: {}\n",
                f["path"].as_str().unwrap_or(""),
                f["reason"].as_str().unwrap_or("")
            ));
        }
        if count > files.len() as u64 {
            out.push_str(&format!("  … and {} more\n", count - files.len() as u64));
        }
    }
    let records = d["skipped"].as_u64().unwrap_or(0).saturating_sub(count);
    if records > 0 {
        out.push_str(&format!(
            "skipped records: {records} (inside usable files; named in the log)\n"
        ));
    }
    out
}
