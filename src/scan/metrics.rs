//! The scanner's Prometheus metrics, registered in the cache's registry.

use crate::metrics::Metrics;
use crate::scan::vulndb::DbSnapshot;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
};

/// Scan metrics.
pub struct ScanMetrics {
    /// Layer blobs read and analysed (a rematch reads none).
    pub layer_reads: IntCounter,
    /// Image scans run, by trigger (on_cache, on_demand, gate, upgrade) and status.
    pub scans: IntCounterVec,
    /// Time to scan one image (layers analysed or reused, merged, matched).
    pub scan_seconds: Histogram,
    /// Stored images rematched because the vulnerability data changed.
    pub rematched: IntCounter,
    /// Findings over every scanned image, by severity.
    pub findings: IntGaugeVec,
    /// Findings that appeared or were resolved when the vulnerability data changed.
    pub finding_changes: IntCounterVec,
    /// New CRITICAL findings (first scans and data changes), one per `critical_finding` event.
    pub new_critical: IntCounter,
    /// Seconds since the newest advisory record's `modified` date (or since load).
    pub db_age: IntGauge,
    /// Advisory records loaded.
    pub db_records: IntGauge,
    /// Gate decisions by mode and result (allowed, warned, denied).
    pub gate: IntCounterVec,
    /// Files under `osv_paths` the last load could not use.
    pub db_unusable_files: IntGauge,
    /// Advisory records loaded per ecosystem (a record about several counts in each).
    pub db_ecosystem_records: IntGaugeVec,
}

fn reg<C: prometheus::core::Collector + Clone + 'static>(m: &Metrics, c: C) -> C {
    // Registration fails only for duplicate names, i.e. a second scanner on one registry
    // (tests); the metric still counts, it is just not exported twice.
    let _ = m.register(Box::new(c.clone()));
    c
}

impl ScanMetrics {
    /// Creates the metrics and registers them with `m`.
    pub fn new(m: &Metrics) -> Self {
        let counter =
            |name: &str, help: &str| reg(m, IntCounter::new(name, help).expect("valid metric"));
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            reg(
                m,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let gauge =
            |name: &str, help: &str| reg(m, IntGauge::new(name, help).expect("valid metric"));
        ScanMetrics {
            layer_reads: counter(
                "breakwater_scan_layer_reads_total",
                "Layer blobs read and analysed by the scanner",
            ),
            scans: counter_vec(
                "breakwater_scans_total",
                "Image scans by trigger and status",
                &["trigger", "status"],
            ),
            scan_seconds: reg(
                m,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "breakwater_scan_duration_seconds",
                        "Time to scan one image",
                    )
                    .buckets(vec![
                        0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    ]),
                )
                .expect("valid metric"),
            ),
            rematched: counter(
                "breakwater_scan_rematched_images_total",
                "Stored inventories matched again after the vulnerability data changed",
            ),
            findings: reg(
                m,
                IntGaugeVec::new(
                    Opts::new(
                        "breakwater_scan_findings",
                        "Findings over every scanned image, by severity",
                    ),
                    &["severity"],
                )
                .expect("valid metric"),
            ),
            finding_changes: counter_vec(
                "breakwater_scan_finding_changes_total",
                "Findings new or resolved after a vulnerability data change",
                &["change"],
            ),
            new_critical: counter(
                "breakwater_scan_new_critical_findings_total",
                "New CRITICAL findings in cached images, one per critical_finding event",
            ),
            db_age: gauge(
                "breakwater_scan_db_age_seconds",
                "Seconds since the newest advisory record was modified (or the data was loaded)",
            ),
            db_records: gauge(
                "breakwater_scan_db_records",
                "Advisory records in the loaded vulnerability data",
            ),
            gate: counter_vec(
                "breakwater_scan_gate_total",
                "Pull gate decisions on image manifests",
                &["mode", "result"],
            ),
            db_unusable_files: gauge(
                "breakwater_scan_db_unusable_files",
                "Files under scan.osv_paths the last load could not use (see breakwater scan status)",
            ),
            db_ecosystem_records: reg(
                m,
                IntGaugeVec::new(
                    Opts::new(
                        "breakwater_scan_db_ecosystem_records",
                        "Advisory records loaded per ecosystem",
                    ),
                    &["ecosystem"],
                )
                .expect("valid metric"),
            ),
        }
    }
}

impl ScanMetrics {
    /// Sets the gauges that describe the data in use: age, size, records per ecosystem and the
    /// files that could not be used.
    pub fn show_db(&self, s: &DbSnapshot, now_ms: i64) {
        let age = (now_ms - s.updated_at_ms()).max(0) / 1000;
        self.db_age.set(age);
        self.db_records.set(s.db.len() as i64);
        self.db_unusable_files.set(s.unusable_file_count as i64);
        // Ecosystems gone from the data must not linger with their old counts.
        self.db_ecosystem_records.reset();
        for (eco, n) in s.records_by_ecosystem() {
            let eco = if eco.is_empty() { "none" } else { eco };
            self.db_ecosystem_records
                .with_label_values(&[eco])
                .set(n as i64);
        }
    }
}
