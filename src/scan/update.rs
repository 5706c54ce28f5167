//! `breakwater scan update`: downloads osv.dev's `<Ecosystem>/all.zip` archives (or a mirror's
//! with the same layout) into an `osv_paths` folder. This module speaks HTTP and draws the
//! progress bar; `breakwater_scan::dbupdate` decides names, places, and whether a download may
//! replace the archive it would overwrite. A running breakwater picks the new files up at its
//! next data check (`scan.rescan_interval`), or at once with `breakwater scan reload`.

use base64::Engine;
use breakwater_scan::dbupdate::{self, EcosystemName, Staging, Verified};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use md5::{Digest, Md5};
use reqwest::header::{HeaderMap, ETAG, IF_NONE_MATCH};
use reqwest::{StatusCode, Url};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `breakwater scan update`'s arguments.
#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// Ecosystems to fetch, comma-separated as osv.dev names them (e.g. Debian,Alpine,PyPI).
    /// Default: every ecosystem the scanner matches.
    #[arg(long, value_delimiter = ',', value_parser = EcosystemName::parse)]
    pub ecosystems: Vec<EcosystemName>,
    /// Where the archives are: `<URL>/<Ecosystem>/all.zip` (a mirror of osv.dev's bucket).
    #[arg(long, value_name = "URL", default_value = dbupdate::OSV_BUCKET, value_parser = base_url)]
    pub from: Url,
    /// Folder to write `<Ecosystem>/all.zip` into. Default: the first folder in the config's
    /// scan.osv_paths.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Config file whose scan.osv_paths names the folder.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Download even when the archive's stored ETag says it has not changed.
    #[arg(long)]
    pub force: bool,
}

fn base_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.query().is_none() => Ok(url),
        _ => Err(format!("{s:?}: use an http(s) URL without a query")),
    }
}

/// What one ecosystem's download did.
enum Outcome {
    Updated(Verified),
    /// The server answered 304 to the stored ETag.
    Unchanged,
}

/// Runs the command: every ecosystem is tried; any failure makes the whole run fail (after the
/// others), and a failed one keeps its previous archive.
pub fn run(args: UpdateArgs) -> Result<(), String> {
    let dir = target_dir(&args)?;
    let mut ecosystems = if args.ecosystems.is_empty() {
        dbupdate::default_ecosystems()
    } else {
        args.ecosystems.clone()
    };
    let mut seen = std::collections::HashSet::new();
    ecosystems.retain(|e| seen.insert(e.clone()));
    // Files of runs killed mid-download; an hour-young one may be a run still going.
    let stale = dbupdate::remove_stale_partials(&dir, Duration::from_secs(3600));
    if stale > 0 {
        tracing::info!("removed {stale} unfinished downloads of earlier runs");
    }
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(120))
        .user_agent(concat!("breakwater/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let mut failed = Vec::new();
    let mut updated = 0;
    for eco in &ecosystems {
        let target = dbupdate::archive_path(&dir, eco);
        match rt.block_on(update_one(&http, &args, &target, eco)) {
            Ok(Outcome::Updated(v)) => {
                updated += 1;
                let mut line = format!(
                    "{eco}: updated {}: {} records, {} bytes",
                    target.display(),
                    v.records,
                    v.bytes
                );
                if let Some(first) = &v.first_bad {
                    let n = v.bad_records;
                    line.push_str(&format!(" ({n} unusable records skipped, first {first})"));
                }
                println!("{line}");
            }
            Ok(Outcome::Unchanged) => {
                println!("{eco}: unchanged since the last download (ETag)");
            }
            Err(e) => {
                let kept = if target.exists() {
                    "the previous archive is kept"
                } else {
                    "there is no previous archive"
                };
                eprintln!("breakwater: {eco}: not updated ({kept}): {e}");
                failed.push(eco.to_string());
            }
        }
    }
    if updated > 0 {
        println!(
            "a running breakwater loads the new data within scan.rescan_interval, or now with \
             `breakwater scan reload`"
        );
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} of {} ecosystems not updated: {}",
            failed.len(),
            ecosystems.len(),
            failed.join(", ")
        ))
    }
}

/// `--dir`, else the first `osv_paths` entry that is (or, missing, would be) a folder.
fn target_dir(args: &UpdateArgs) -> Result<PathBuf, String> {
    if let Some(d) = &args.dir {
        return Ok(d.clone());
    }
    let settings = crate::config::Settings::load_or_default(args.config.as_deref())?;
    let is_file = |p: &Path| {
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        p.is_file() || ext.eq_ignore_ascii_case("zip") || ext.eq_ignore_ascii_case("json")
    };
    settings
        .scan
        .osv_paths
        .iter()
        .find(|p| !is_file(p))
        .cloned()
        .ok_or_else(|| {
            "no folder to write to: scan.osv_paths names none (archives go to \
             <folder>/<Ecosystem>/all.zip); add one, or pass --dir"
                .to_string()
        })
}

async fn update_one(
    http: &reqwest::Client,
    args: &UpdateArgs,
    target: &Path,
    eco: &EcosystemName,
) -> Result<Outcome, String> {
    let url = dbupdate::archive_url(args.from.as_str(), eco);
    let etag = (!args.force)
        .then(|| dbupdate::stored_etag(target))
        .flatten();
    let mut req = http.get(&url);
    if let Some(tag) = &etag {
        req = req.header(IF_NONE_MATCH, tag);
    }
    let mut resp = req
        .send()
        .await
        .map_err(|e| format!("cannot fetch {url}: {}", causes(&e)))?;
    match resp.status() {
        StatusCode::OK => {}
        StatusCode::NOT_MODIFIED if etag.is_some() => return Ok(Outcome::Unchanged),
        s => return Err(format!("{url} answered {s}")),
    }
    let length = resp.content_length();
    let md5 = goog_md5(resp.headers());
    let new_etag = resp
        .headers()
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut staging = Staging::new(target)?;
    let bar = progress_bar(eco, length);
    let mut hasher = Md5::new();
    let mut got = 0u64;
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                bar.abandon();
                return Err(format!(
                    "the download from {url} broke off after {got} bytes: {}",
                    causes(&e)
                ));
            }
        };
        staging
            .file()
            .write_all(&chunk)
            .map_err(|e| format!("cannot write the download: {e}"))?;
        hasher.update(&chunk);
        got += chunk.len() as u64;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    if let Some(n) = length.filter(|n| *n != got) {
        return Err(format!(
            "the download from {url} ended after {got} of {n} bytes"
        ));
    }
    if let Some(want) = md5 {
        let have = hasher.finalize();
        if have.as_slice() != want.as_slice() {
            let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
            return Err(format!(
                "the download from {url} hashes to MD5 {}, the server's x-goog-hash says {}",
                b64(&have),
                b64(&want)
            ));
        }
    }
    Ok(Outcome::Updated(staging.commit(eco, new_etag.as_deref())?))
}

/// The MD5 in Google Cloud Storage's `x-goog-hash: crc32c=…, md5=<base64>` (one header or
/// several), if the server sent one (composite objects have none).
fn goog_md5(headers: &HeaderMap) -> Option<Vec<u8>> {
    headers
        .get_all("x-goog-hash")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|part| part.trim().strip_prefix("md5="))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .filter(|d| d.len() == 16)
}

/// A bar on stderr (indicatif draws nothing when stderr is not a terminal).
fn progress_bar(eco: &EcosystemName, length: Option<u64>) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(length, ProgressDrawTarget::stderr());
    let template = if length.is_some() {
        "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    } else {
        "{prefix:>12} {spinner} {bytes} {bytes_per_sec}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(eco.to_string());
    bar
}

/// An error with its causes (reqwest's own message is only "error sending request").
fn causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_is_read_from_any_x_goog_hash_form() {
        let mut h = HeaderMap::new();
        assert_eq!(goog_md5(&h), None);
        h.append("x-goog-hash", "crc32c=n03x6A==".parse().unwrap());
        assert_eq!(goog_md5(&h), None, "composite objects carry no md5");
        h.append(
            "x-goog-hash",
            "md5=Ojk9c3dhfxgoKVVHYwFbHQ==".parse().unwrap(),
        );
        assert_eq!(goog_md5(&h).map(|d| d.len()), Some(16));
        let mut one = HeaderMap::new();
        one.insert(
            "x-goog-hash",
            "crc32c=n03x6A==, md5=Ojk9c3dhfxgoKVVHYwFbHQ=="
                .parse()
                .unwrap(),
        );
        assert_eq!(goog_md5(&one), goog_md5(&h));
        one.insert("x-goog-hash", "md5=bm90LW1kNQ==".parse().unwrap());
        assert_eq!(goog_md5(&one), None, "not 16 bytes: ignored, not trusted");
        assert!(base_url("ftp://x/").is_err() && base_url("http://x/?a=b").is_err());
        assert!(base_url("http://127.0.0.1:1/osv").is_ok());
    }
}
