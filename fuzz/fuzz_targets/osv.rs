//! One OSV advisory document (from osv.dev downloads or a configured directory): loading never
//! panics and accounts for the document exactly once; a loaded record serialises to JSON that
//! reads back to the same JSON; matching packages named by the record, at versions taken from
//! its own events and lists, never panics and yields findings that name this record, with a
//! fixed version from its events and a CVSS score in 0..=10.
#![no_main]

use breakwater_fuzz::{assert_alloc_within, reset_largest_alloc, PeakAlloc};
use breakwater_scan::osv::{Loader, Package, Record};
use libfuzzer_sys::fuzz_target;
use std::collections::HashSet;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

/// Versions tried per affected entry, so one input cannot make a run quadratic in its size.
const MAX_PROBES: usize = 24;

fuzz_target!(|data: &[u8]| {
    reset_largest_alloc();
    let mut loader = Loader::new();
    loader.add_json("fuzz.json", data);
    let (db, report) = loader.finish();
    assert_eq!(report.documents, 1);
    assert_eq!(report.records + report.skipped.len(), 1);
    assert_alloc_within(8 * data.len() + (64 << 10), "loading an OSV record");
    let Some(record) = db.records().next().cloned() else {
        assert_eq!(report.records, 0);
        return;
    };
    assert_eq!(db.len(), 1);
    assert!(!record.id.trim().is_empty());
    assert!(db.get(&record.id).is_some());

    let json = serde_json::to_string(&record).expect("a record serialises");
    let again: Record = serde_json::from_str(&json).expect("our own JSON reads back");
    assert_eq!(serde_json::to_string(&again).unwrap(), json);

    let fixed: HashSet<&str> = record
        .affected
        .iter()
        .flat_map(|a| &a.ranges)
        .flat_map(|r| &r.events)
        .filter_map(|e| e.fixed.as_deref())
        .collect();
    for affected in &record.affected {
        let Some(pkg) = &affected.package else {
            continue;
        };
        let events = affected.ranges.iter().flat_map(|r| &r.events);
        let probes = events
            .flat_map(|e| [&e.introduced, &e.fixed, &e.last_affected, &e.limit])
            .filter_map(|v| v.as_deref())
            .chain(affected.versions.iter().map(String::as_str))
            .chain([
                "0",
                "1.0",
                "",
                "1:2.3-4~rc1",
                "0.0.0-20200101000000-abcdef123456",
            ])
            .take(MAX_PROBES);
        for version in probes {
            let plain = Package::new(&pkg.ecosystem, &pkg.name, version);
            let with_source = plain.clone().with_source(&pkg.name, Some(version));
            for p in [plain, with_source] {
                for f in db.matches(&p) {
                    assert_eq!(f.id, record.id);
                    assert!(record.withdrawn.is_none(), "withdrawn record matched");
                    if let Some(v) = &f.fixed_version {
                        assert!(fixed.contains(v.as_str()), "fixed {v:?} is no event");
                    }
                    if let Some(score) = f.cvss_score {
                        assert!((0.0..=10.0).contains(&score), "CVSS score {score}");
                    }
                }
            }
        }
    }
});
