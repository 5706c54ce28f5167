//! `breakwater readiness` and `breakwater prefetch`: clients of the readiness admin API.
//! Exit status 0 when every image is ready (or was filled), 2 when something would fail (or
//! could not be filled), 1 when the command itself failed.

use super::cli::{connect, Conn};
use super::client::Body;
use super::table;
use crate::ready::prefetch::{Outcome, PrefetchReport};
use crate::ready::{ImageReadiness, ReadinessReport, TagOutage};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Outage readiness commands.
#[derive(Subcommand, Debug)]
pub enum ReadyCommand {
    /// Whether every image pulled within the window would still pull with its upstream down:
    /// per image, what the store lacks. Exits 2 when something would fail.
    Readiness {
        #[command(flatten)]
        conn: Conn,
        /// The window, e.g. 30d, 12h.
        #[arg(long, default_value = "30d")]
        since: String,
    },
    /// Fill images into the cache ahead of need (through the same path as a client pull) and
    /// report what was fetched. Exits 2 when an image could not be filled.
    Prefetch(PrefetchArgs),
}

/// `breakwater prefetch` arguments.
#[derive(Args, Debug)]
pub struct PrefetchArgs {
    #[command(flatten)]
    conn: Conn,
    /// Images: `<upstream>/<name>:<tag>` or `<upstream>/<name>@<digest>`.
    #[arg(required_unless_present = "file")]
    images: Vec<String>,
    /// A file of images, one per line (`#` starts a comment; "-": stdin).
    #[arg(long)]
    file: Option<PathBuf>,
    /// Platforms of a multi-arch image to fill (repeatable), e.g. linux/amd64, or `all`.
    /// Default: the upstream's prefetch_platforms, or all when it names none.
    #[arg(long = "platform")]
    platforms: Vec<String>,
}

/// Runs a readiness command.
pub fn run(cmd: ReadyCommand) -> Result<ExitCode, String> {
    match cmd {
        ReadyCommand::Readiness { conn, since } => {
            let v = connect(&conn)?.call(Method::GET, "/readiness", &[("since", since)], None)?;
            let report: ReadinessReport = serde_json::from_value(v.clone())
                .map_err(|e| format!("unexpected answer from the API: {e}"))?;
            if conn.json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print!("{}", readiness_text(&report));
            }
            Ok(exit(report.not_ready == 0))
        }
        ReadyCommand::Prefetch(args) => prefetch(args),
    }
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

/// Image names from a list file: one a line, blank lines and `#` comments skipped.
pub fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn prefetch(args: PrefetchArgs) -> Result<ExitCode, String> {
    let mut images = args.images;
    if let Some(f) = &args.file {
        let text = if f.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin())
                .map_err(|e| format!("cannot read stdin: {e}"))?
        } else {
            std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?
        };
        images.extend(parse_list(&text));
    }
    if images.is_empty() {
        return Err("no images to prefetch (give IMAGE... or --file LIST)".into());
    }
    let c = connect(&args.conn)?;
    // Drawn on stderr, and only when it is a terminal.
    let bar = ProgressBar::new(images.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} images, {msg} ({elapsed})")
            .map_err(|e| format!("progress bar: {e}"))?
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let mut reports = Vec::new();
    let mut fetched_bytes = 0u64;
    for image in &images {
        bar.set_message(format!(
            "{} fetched, now {image}",
            table::bytes(fetched_bytes)
        ));
        let body = match args.platforms.is_empty() {
            true => json!({ "image": image }),
            false => json!({ "image": image, "platforms": args.platforms }),
        };
        let report = match c.call(Method::POST, "/prefetch", &[], Some(Body::Json(body))) {
            Ok(v) => serde_json::from_value::<PrefetchReport>(v)
                .map_err(|e| format!("unexpected answer from the API: {e}"))?,
            // A request the API refused (bad name, unknown upstream) fails this image only.
            Err(e) => failed(image, e),
        };
        fetched_bytes += report.fetched_bytes;
        reports.push(report);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let ok = reports.iter().all(|r| r.ok);
    if args.conn.json {
        let v: Value = json!({ "images": reports, "ok": ok });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print!("{}", prefetch_text(&reports));
    }
    Ok(exit(ok))
}

fn failed(image: &str, error: String) -> PrefetchReport {
    let mut r = PrefetchReport::nothing_yet(image);
    r.errors.push(error);
    r
}

/// The prefetch report as a table, errors below it.
pub fn prefetch_text(reports: &[PrefetchReport]) -> String {
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            let failed = r
                .items
                .iter()
                .filter(|i| i.outcome == Outcome::Failed)
                .count();
            vec![
                r.image.clone(),
                r.digest.as_ref().map_or("-".into(), table::short),
                if r.platforms.is_empty() {
                    "-".into()
                } else {
                    r.platforms.join(",")
                },
                format!("{} ({})", r.fetched, table::bytes(r.fetched_bytes)),
                format!("{} ({})", r.cached, table::bytes(r.cached_bytes)),
                if r.ok {
                    "ok".into()
                } else {
                    format!("FAILED ({failed} items)")
                },
            ]
        })
        .collect();
    let mut out = table::render(
        &[
            "IMAGE",
            "DIGEST",
            "PLATFORMS",
            "FETCHED",
            "ALREADY CACHED",
            "RESULT",
        ],
        &rows,
    );
    for r in reports.iter().filter(|r| !r.errors.is_empty()) {
        let _ = writeln!(out, "\n{}:", r.image);
        for e in &r.errors {
            let _ = writeln!(out, "  {e}");
        }
    }
    let fetched: u64 = reports.iter().map(|r| r.fetched_bytes).sum();
    let bad = reports.iter().filter(|r| !r.ok).count();
    let _ = writeln!(
        out,
        "\n{} prefetched, {} failed; {} fetched from upstream",
        table::count(reports.len() - bad, "image"),
        bad,
        table::bytes(fetched)
    );
    out
}

fn tags_text(i: &ImageReadiness) -> String {
    if i.tags.is_empty() {
        return "<untagged>".into();
    }
    i.tags
        .iter()
        .map(|t| match t.outage {
            TagOutage::Fresh => t.tag.clone(),
            TagOutage::Stale => format!("{} (stale)", t.tag),
            TagOutage::Refused => format!("{} (REFUSED)", t.tag),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The readiness report as a table, then what each failing image lacks.
pub fn readiness_text(r: &ReadinessReport) -> String {
    let rows: Vec<Vec<String>> = r
        .images
        .iter()
        .map(|i| {
            vec![
                i.repository.clone(),
                table::short(&i.digest),
                tags_text(i),
                if i.platforms.is_empty() {
                    "-".into()
                } else {
                    i.platforms.join(",")
                },
                format!("{} ({})", i.blobs, table::bytes(i.bytes)),
                table::time(Some(i.last_pulled_ms)),
                if i.ready {
                    "ready".into()
                } else {
                    format!("MISSING {}", i.missing.len())
                },
            ]
        })
        .collect();
    let mut out = table::render(
        &[
            "REPOSITORY",
            "DIGEST",
            "TAGS",
            "PLATFORMS",
            "BLOBS",
            "LAST PULLED",
            "STATE",
        ],
        &rows,
    );
    for i in r
        .images
        .iter()
        .filter(|i| !i.ready || !i.problems.is_empty())
    {
        let _ = writeln!(out, "\n{}@{}:", i.repository, i.digest);
        for m in &i.missing {
            let platform = m
                .platform
                .as_deref()
                .map(|p| format!(", {p}"))
                .unwrap_or_default();
            let size = m
                .size
                .map(|s| format!(", {}", table::bytes(s)))
                .unwrap_or_default();
            let _ = writeln!(out, "  missing {} {}{platform}{size}", m.kind, m.digest);
        }
        for p in &i.problems {
            let _ = writeln!(out, "  {p}");
        }
    }
    let window = compact(r.window_s);
    let _ = writeln!(
        out,
        "\n{} pulled within {window}: {} ready, {} would fail with the upstream down ({} missing)",
        table::count(r.images.len(), "image"),
        r.ready,
        r.not_ready,
        table::count(r.missing_blobs, "blob"),
    );
    out
}

/// `30d`, `12h`, `90m`, `45s`: the largest unit that divides the window.
fn compact(secs: u64) -> String {
    match secs {
        s if s > 0 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s > 0 && s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::{compact, parse_list};

    #[test]
    fn windows_print_as_given() {
        assert_eq!(compact(30 * 86_400), "30d");
        assert_eq!(compact(5_400), "90m");
        assert_eq!(compact(7_200), "2h");
        assert_eq!(compact(61), "61s");
    }

    #[test]
    fn list_files_skip_comments_and_blank_lines() {
        let text = "# fleet images\nlocal/a:1\n\n  local/b@sha256:00  # pinned\n#local/c:2\n";
        assert_eq!(parse_list(text), vec!["local/a:1", "local/b@sha256:00"]);
    }
}
