//! `affected[]` entries compiled for matching: event versions parsed once,
//! events sorted, and the OSV range semantics evaluated against one version.

use std::cmp::Ordering;

use super::ecosystem::{Family, OsvEcosystem};
use super::model::{Affected, RangeKind};
use crate::catalog::PackageKind;
use crate::version::{Ecosystem as Scheme, Version};

/// A range event bound: `introduced: "0"` is below everything, `limit: "*"` above.
#[derive(Debug, Clone)]
enum Bound {
    Zero,
    At(Version),
    Infinity,
}

impl Bound {
    /// Orders the bound against an installed version of the same scheme.
    fn cmp_version(&self, v: &Version) -> Ordering {
        match self {
            Bound::Zero => Ordering::Less,
            Bound::Infinity => Ordering::Greater,
            // Same scheme by construction; treat a mismatch as "not below".
            Bound::At(b) => b.partial_cmp(v).unwrap_or(Ordering::Greater),
        }
    }

    fn cmp_bound(&self, other: &Bound) -> Ordering {
        match (self, other) {
            (Bound::Zero, Bound::Zero) | (Bound::Infinity, Bound::Infinity) => Ordering::Equal,
            (Bound::Zero, _) | (_, Bound::Infinity) => Ordering::Less,
            (_, Bound::Zero) | (Bound::Infinity, _) => Ordering::Greater,
            (Bound::At(a), Bound::At(b)) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Introduced,
    Fixed,
    LastAffected,
    Limit,
}

#[derive(Debug, Clone)]
struct CompiledEvent {
    kind: Kind,
    bound: Bound,
    raw: String,
}

/// One ECOSYSTEM or SEMVER range with parsed, version-sorted events.
#[derive(Debug, Clone)]
struct CompiledRange {
    scheme: Scheme,
    events: Vec<CompiledEvent>,
}

/// Result of matching one affected entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hit {
    /// The next fixed version above the installed one, if the range has one.
    pub fixed: Option<String>,
}

/// An `affected[]` entry ready for matching.
#[derive(Debug, Clone)]
pub(crate) struct CompiledAffected {
    ranges: Vec<CompiledRange>,
    /// Enumerated versions as written, sorted for binary search.
    listed_raw: Vec<String>,
    /// The enumerated versions that parse in the ecosystem's scheme, sorted.
    listed: Vec<Version>,
    scheme: Option<Scheme>,
}

/// Counts of what could not be compiled, for the load report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CompileIssues {
    /// Ranges dropped because an event version did not parse or the ecosystem has no ordering.
    pub unusable_ranges: usize,
}

impl CompiledAffected {
    /// Compiles `affected` for ecosystem `eco`; GIT ranges are skipped.
    pub fn compile(eco: &OsvEcosystem, affected: &Affected, issues: &mut CompileIssues) -> Self {
        let scheme = eco.scheme();
        let mut ranges = Vec::new();
        for range in &affected.ranges {
            let range_scheme = match range.kind {
                RangeKind::Git => continue,
                // SEMVER ranges are SemVer whatever the ecosystem; Go's own
                // scheme is SemVer plus the `v` prefix, so keep it there.
                RangeKind::Semver if eco.family() == Family::Language(PackageKind::Go) => {
                    Some(Scheme::Go)
                }
                RangeKind::Semver => Some(Scheme::Semver),
                RangeKind::Ecosystem => scheme,
                RangeKind::Unknown => None,
            };
            match range_scheme.and_then(|s| compile_range(s, &range.events)) {
                Some(r) => ranges.push(r),
                None => issues.unusable_ranges += 1,
            }
        }
        // PyPI lists hundreds of versions per record: sort once, search per query.
        let mut listed_raw = affected.versions.clone();
        listed_raw.sort();
        let mut listed: Vec<Version> = match scheme {
            Some(sc) => listed_raw
                .iter()
                .filter_map(|s| Version::parse(sc, s).ok())
                .collect(),
            None => Vec::new(),
        };
        listed.sort_by(cmp_same_scheme);
        CompiledAffected {
            ranges,
            listed_raw,
            listed,
            scheme,
        }
    }

    /// Whether the installed version is affected, and by which fix it is cured.
    pub fn matches(&self, installed: &mut Installed<'_>) -> Option<Hit> {
        let mut hit: Option<Hit> = None;
        for range in &self.ranges {
            let Some(v) = installed.get(range.scheme) else {
                continue;
            };
            if let Some(fixed) = range.affects(v) {
                // Prefer a range that names a fix over one that does not.
                if hit.as_ref().is_none_or(|h| h.fixed.is_none()) {
                    hit = Some(Hit { fixed });
                }
            }
        }
        if hit.is_some() {
            return hit;
        }
        self.is_listed(installed).then_some(Hit { fixed: None })
    }

    /// Whether the installed version is in the explicit `versions` list
    /// (same text, or equal in the ecosystem's ordering, e.g. PyPI 1.0 == 1.0.0).
    fn is_listed(&self, installed: &mut Installed<'_>) -> bool {
        if self
            .listed_raw
            .binary_search_by(|s| s.as_str().cmp(installed.raw))
            .is_ok()
        {
            return true;
        }
        match self.scheme.and_then(|s| installed.get(s)) {
            Some(v) => self
                .listed
                .binary_search_by(|x| cmp_same_scheme(x, v))
                .is_ok(),
            None => false,
        }
    }
}

/// An installed version string, parsed lazily once per scheme it is compared in.
#[derive(Debug)]
pub(crate) struct Installed<'a> {
    raw: &'a str,
    parsed: Vec<(Scheme, Option<Version>)>,
}

impl<'a> Installed<'a> {
    /// Wraps a raw version string.
    pub fn new(raw: &'a str) -> Self {
        Installed {
            raw,
            parsed: Vec::new(),
        }
    }

    /// The version parsed with `scheme`, or `None` if it is not valid there.
    fn get(&mut self, scheme: Scheme) -> Option<&Version> {
        let i = match self.parsed.iter().position(|(s, _)| *s == scheme) {
            Some(i) => i,
            None => {
                self.parsed
                    .push((scheme, Version::parse(scheme, self.raw).ok()));
                self.parsed.len() - 1
            }
        };
        self.parsed[i].1.as_ref()
    }
}

/// Orders two versions known to share a scheme.
fn cmp_same_scheme(a: &Version, b: &Version) -> Ordering {
    a.partial_cmp(b).unwrap_or(Ordering::Equal)
}

/// Parses and sorts the events of one range; `None` if any version is unparsable.
fn compile_range(scheme: Scheme, events: &[super::model::Event]) -> Option<CompiledRange> {
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        let (kind, raw) = match (&e.introduced, &e.fixed, &e.last_affected, &e.limit) {
            (Some(v), None, None, None) => (Kind::Introduced, v),
            (None, Some(v), None, None) => (Kind::Fixed, v),
            (None, None, Some(v), None) => (Kind::LastAffected, v),
            (None, None, None, Some(v)) => (Kind::Limit, v),
            _ => return None,
        };
        let bound = match (kind, raw.as_str()) {
            (Kind::Introduced, "0") => Bound::Zero,
            (Kind::Limit, "*") => Bound::Infinity,
            _ => Bound::At(Version::parse(scheme, raw).ok()?),
        };
        out.push(CompiledEvent {
            kind,
            bound,
            raw: raw.clone(),
        });
    }
    if out.is_empty() {
        return None;
    }
    // Stable sort: events at the same version keep the record's order.
    out.sort_by(|a, b| a.bound.cmp_bound(&b.bound));
    Some(CompiledRange {
        scheme,
        events: out,
    })
}

impl CompiledRange {
    /// OSV evaluation: walking the sorted events, `introduced` ≤ v opens the
    /// range, `fixed` ≤ v or `last_affected` < v closes it; any `limit`s must
    /// include one above v. Returns the next fix above v when affected.
    fn affects(&self, v: &Version) -> Option<Option<String>> {
        let mut limits = self
            .events
            .iter()
            .filter(|e| e.kind == Kind::Limit)
            .peekable();
        if limits.peek().is_some() && !limits.any(|e| e.bound.cmp_version(v) == Ordering::Greater) {
            return None;
        }
        let mut vulnerable = false;
        for e in &self.events {
            let ord = e.bound.cmp_version(v);
            match e.kind {
                Kind::Introduced if ord != Ordering::Greater => vulnerable = true,
                Kind::Fixed if ord != Ordering::Greater => vulnerable = false,
                Kind::LastAffected if ord == Ordering::Less => vulnerable = false,
                _ => {}
            }
        }
        if !vulnerable {
            return None;
        }
        let fixed = self
            .events
            .iter()
            .find(|e| e.kind == Kind::Fixed && e.bound.cmp_version(v) == Ordering::Greater)
            .map(|e| e.raw.clone());
        Some(fixed)
    }
}
