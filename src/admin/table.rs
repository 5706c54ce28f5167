//! Human-readable tables for the admin commands (`--json` prints the API's JSON instead).

use crate::cache::Event;
use crate::lifecycle::views::{
    GcReport, ImageView, LifecycleReport, PinView, PolicyView, RepositoryView,
};
use crate::oci::Digest;
use std::fmt::Write;

/// Aligns `rows` under `headers`, two spaces between columns; the last column is not padded.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, cell) in width.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let head: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for r in std::iter::once(&head).chain(rows) {
        let last = r.len().saturating_sub(1);
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i == last {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = width[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `1.5 MiB`-style sizes.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// UTC time to the second, or `-`.
pub fn time(ms: Option<i64>) -> String {
    match ms {
        Some(ms) if ms >= 0 => {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
            humantime::format_rfc3339_seconds(t)
                .to_string()
                .replace('T', " ")
                .trim_end_matches('Z')
                .to_string()
        }
        _ => "-".into(),
    }
}

/// `sha256:` and the first 12 hex digits.
pub fn short(d: &Digest) -> String {
    format!("{}:{}", d.algorithm().as_str(), &d.hex()[..12])
}

/// `sha256:` and the first 12 hex digits of a digest given as text.
pub fn short_digest(d: &str) -> String {
    match d.split_once(':') {
        Some((algo, hex)) => format!("{algo}:{}", &hex[..hex.len().min(12)]),
        None => d.to_string(),
    }
}

/// `1 image`, `2 images`, `3 repositories`.
pub fn count(n: usize, noun: &str) -> String {
    match (n, noun.strip_suffix('y')) {
        (1, _) => format!("1 {noun}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        _ => format!("{n} {noun}s"),
    }
}

/// Tags joined with commas, or `<untagged>`.
pub fn tags(t: &[String]) -> String {
    if t.is_empty() {
        "<untagged>".into()
    } else {
        t.join(",")
    }
}

/// The describe-images table.
pub fn images(list: &[ImageView]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|i| {
            vec![
                i.repository.clone(),
                tags(&i.tags),
                short(&i.digest),
                bytes(i.size_bytes),
                bytes(i.stored_bytes),
                time(Some(i.first_cached_ms)),
                time(i.last_pulled_ms),
                i.pull_count.to_string(),
                i.storage_class.clone(),
                if i.pinned { "yes" } else { "" }.into(),
            ]
        })
        .collect();
    let mut out = render(
        &[
            "REPOSITORY",
            "TAGS",
            "DIGEST",
            "SIZE",
            "STORED",
            "FIRST CACHED",
            "LAST PULLED",
            "PULLS",
            "CLASS",
            "PINNED",
        ],
        &rows,
    );
    let _ = writeln!(out, "{}", count(list.len(), "image"));
    out
}

/// The repositories table.
pub fn repositories(list: &[RepositoryView]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            vec![
                r.repository.clone(),
                r.images.to_string(),
                r.tags.to_string(),
                bytes(r.stored_bytes),
                r.policy
                    .as_ref()
                    .map(|p| format!("{} ({})", p.scope, p.source))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    render(&["REPOSITORY", "IMAGES", "TAGS", "STORED", "POLICY"], &rows)
}

/// A preview or apply report.
pub fn lifecycle(r: &LifecycleReport) -> String {
    let mut rows = Vec::new();
    for repo in &r.repositories {
        for x in &repo.results {
            rows.push(vec![
                repo.repository.clone(),
                short(&x.digest),
                tags(&x.tags),
                x.rule_priority.to_string(),
                match &x.target_storage_class {
                    Some(c) => format!("{} → {c}", x.action),
                    None => x.action.clone(),
                },
                bytes(x.stored_bytes),
                x.reason.clone(),
            ]);
        }
    }
    let mut out = render(
        &[
            "REPOSITORY",
            "DIGEST",
            "TAGS",
            "RULE",
            "ACTION",
            "STORED",
            "REASON",
        ],
        &rows,
    );
    let (verb_e, verb_t) = if r.applied {
        ("expired", "moved to archive")
    } else {
        ("would expire", "would move to archive")
    };
    let _ = writeln!(
        out,
        "{} {verb_e}, {} {verb_t} ({} with a policy); GC {} {}",
        count(r.expiring_images, "image"),
        r.transitioning_images,
        count(r.repositories.len(), "repository"),
        if r.applied {
            "can reclaim"
        } else {
            "would reclaim"
        },
        bytes(r.reclaimable_bytes)
    );
    out
}

/// A GC report.
pub fn gc(r: &GcReport) -> String {
    let mut out = String::new();
    if let Some(q) = &r.quota {
        let _ = writeln!(
            out,
            "quota: {} of {} (high water {}, low water {}); {} evicted{}",
            bytes(q.usage_bytes),
            bytes(q.max_bytes),
            bytes(q.high_water_bytes),
            bytes(q.low_water_bytes),
            count(q.evicted.len(), "image"),
            if q.low_water_reachable {
                String::new()
            } else {
                format!(
                    "; low water not reachable: pinned, recently used ({} images kept) and shared content exceed it",
                    q.kept_recent_images
                )
            }
        );
        for e in &q.evicted {
            let _ = writeln!(
                out,
                "  evicted {}@{} {} (last used {}, freed {})",
                e.repository,
                short(&e.digest),
                tags(&e.tags),
                time(Some(e.last_used_ms)),
                bytes(e.freed_bytes)
            );
        }
    }
    let _ = writeln!(
        out,
        "{}{} blobs deleted, {} freed; store {} in {} blobs → {} in {} blobs",
        if r.dry_run { "dry run: " } else { "" },
        r.deleted_blobs,
        bytes(r.freed_bytes),
        bytes(r.store_bytes_before),
        r.store_blobs_before,
        bytes(r.store_bytes_after),
        r.store_blobs_after
    );
    let _ = writeln!(
        out,
        "kept: {} live, {} in grace period, {} filling, {} served lately, {} referenced during GC, {} newly recorded; {} restored from archive; mark {} ms, total {} ms",
        r.live_blobs, r.kept_recent, r.kept_in_flight, r.kept_served, r.kept_referenced,
        r.adopted, r.restored_images, r.mark_ms, r.duration_ms
    );
    out
}

/// The pins table.
pub fn pins(list: &[PinView]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            vec![
                p.target.clone(),
                if p.digest.is_some() {
                    "image"
                } else {
                    "pattern"
                }
                .into(),
                time(Some(p.created_ms)),
                p.note.clone().unwrap_or_default(),
            ]
        })
        .collect();
    render(&["TARGET", "KIND", "PINNED", "NOTE"], &rows)
}

/// The policies table.
pub fn policies(list: &[PolicyView]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            let rules = p.policy["rules"].as_array().map_or(0, Vec::len);
            vec![
                p.scope.clone(),
                p.source.clone(),
                if p.effective { "yes" } else { "overridden" }.into(),
                rules.to_string(),
                time(p.updated_ms),
            ]
        })
        .collect();
    render(&["SCOPE", "SOURCE", "EFFECTIVE", "RULES", "UPDATED"], &rows)
}

/// The events table.
pub fn events(list: &[Event]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|e| {
            let repo = match (&e.upstream, &e.repository) {
                (Some(u), Some(r)) => crate::cache::RepoKey::new(u, r).to_string(),
                (None, Some(r)) => r.clone(),
                _ => "-".into(),
            };
            vec![
                time(Some(e.at_ms)),
                e.kind.to_string(),
                repo,
                e.digest.as_deref().map(short_digest).unwrap_or_default(),
                bytes(e.bytes),
                e.reason.clone(),
            ]
        })
        .collect();
    render(
        &["TIME", "KIND", "REPOSITORY", "DIGEST", "BYTES", "REASON"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_sizes_read_well() {
        let t = render(
            &["A", "LONGER"],
            &[
                vec!["xyz".into(), "1".into()],
                vec!["q".into(), "22".into()],
            ],
        );
        assert_eq!(t, "A    LONGER\nxyz  1\nq    22\n");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(time(Some(0)), "1970-01-01 00:00:00");
        assert_eq!(time(None), "-");
        assert_eq!(count(1, "image"), "1 image");
        assert_eq!(count(0, "image"), "0 images");
        assert_eq!(count(3, "repository"), "3 repositories");
        assert_eq!(
            short_digest(&format!("sha256:{}", "ab".repeat(32))),
            "sha256:abababababab"
        );
    }
}
