//! Test helpers that load the version vectors in `testdata/` and report every disagreement.

use std::cmp::Ordering;
use std::path::PathBuf;

use super::VersionError;

/// The checkout's `testdata/vulndb` (see `testdata/README.md` for each set's origin).
pub(crate) fn vulndb_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/vulndb"
    ))
}

/// Reads one file of `testdata/vulndb/version-vectors/`.
pub(crate) fn read(name: &str) -> String {
    let path = vulndb_dir().join("version-vectors").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// One comparison vector: 1-based line number, a, b, expected ordering.
pub(crate) type Row = (usize, String, String, Ordering);

/// Parses a `a<TAB>b<TAB>cmp` file, skipping the header comment.
pub(crate) fn tsv_rows(name: &str) -> Vec<Row> {
    read(name)
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.starts_with('#') && !l.trim().is_empty())
        .map(|(i, l)| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 3, "{name}:{}: malformed line {l:?}", i + 1);
            let c: i32 = f[2].trim().parse().expect("cmp column is an integer");
            (i + 1, f[0].to_string(), f[1].to_string(), c.cmp(&0))
        })
        .collect()
}

/// The non-comment lines of a one-string-per-line file.
pub(crate) fn list(name: &str) -> Vec<String> {
    read(name)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Asserts `cmp` agrees with every row, listing all failing lines if not.
pub(crate) fn check_rows(
    name: &str,
    rows: &[Row],
    cmp: impl Fn(&str, &str) -> Result<Ordering, VersionError>,
) {
    assert!(!rows.is_empty(), "{name}: no vectors loaded");
    let failures: Vec<String> = rows
        .iter()
        .filter_map(|(line, a, b, want)| match cmp(a, b) {
            Ok(got) if got == *want => None,
            got => Some(format!(
                "{name}:{line}: {a:?} vs {b:?}: want {want:?}, got {got:?}"
            )),
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} vectors disagree:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
    eprintln!("{name}: {} vectors agree", rows.len());
}
