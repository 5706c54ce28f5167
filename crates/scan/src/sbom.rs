//! CycloneDX 1.5 JSON software bill of materials for one image: the image as the BOM's
//! subject (`pkg:oci` purl), its operating system, and every inventoried package with its
//! package URL, cataloger and the file it was found in.

use crate::catalog::purl;
use crate::clock::rfc3339;
use crate::record::ImageScan;
use serde_json::{json, Value};
use std::collections::HashSet;

/// The BOM of a scanned image of `repository` (`<upstream>/<name>`).
pub fn cyclonedx(repository: &str, scan: &ImageScan) -> Value {
    let short = repository.rsplit('/').next().unwrap_or(repository);
    let image_purl = purl::build(
        "oci",
        None,
        short,
        &scan.digest.to_string(),
        &[("repository_url", Some(repository))],
    );
    let mut components = Vec::new();
    if let Some(os) = &scan.inventory.os {
        components.push(json!({
            "type": "operating-system",
            "bom-ref": "os",
            "name": os.id,
            "version": os.version_id,
            "description": os.pretty_name,
        }));
    }
    let mut refs = HashSet::new();
    for p in &scan.inventory.packages {
        // bom-refs must be unique; the same purl can be found at two paths.
        let mut bom_ref = p.purl.clone();
        let mut n = 1;
        while !refs.insert(bom_ref.clone()) {
            n += 1;
            bom_ref = format!("{}#{n}", p.purl);
        }
        let kind = serde_json::to_value(p.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let mut props = vec![
            json!({"name": "breakwater:package:type", "value": kind}),
            json!({"name": "breakwater:location:path", "value": p.path}),
        ];
        if let Some(s) = &p.source_name {
            props.push(json!({"name": "breakwater:source:name", "value": s}));
        }
        if let Some(s) = &p.source_version {
            props.push(json!({"name": "breakwater:source:version", "value": s}));
        }
        if let Some(a) = &p.arch {
            props.push(json!({"name": "breakwater:arch", "value": a}));
        }
        components.push(json!({
            "type": "library",
            "bom-ref": bom_ref,
            "name": p.name,
            "version": p.version,
            "purl": p.purl,
            "properties": props,
        }));
    }
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": format!("urn:uuid:{}", uuid_v4()),
        "version": 1,
        "metadata": {
            "timestamp": rfc3339(scan.scanned_at_ms),
            "tools": {"components": [{
                "type": "application",
                "name": "breakwater",
                "version": env!("CARGO_PKG_VERSION"),
            }]},
            "component": {
                "type": "container",
                "bom-ref": image_purl,
                "name": repository,
                "version": scan.digest,
                "purl": image_purl,
            },
        },
        "components": components,
    })
}

/// A random (version 4) UUID, as CycloneDX wants for `serialNumber`.
fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{OsRelease, Package, PackageKind};
    use crate::inventory::Inventory;
    use crate::record::ScanStatus;

    #[test]
    fn bom_lists_packages_with_purls_and_unique_refs() {
        let pkg = |path: &str| Package {
            kind: PackageKind::Python,
            ecosystem: "PyPI".into(),
            name: "requests".into(),
            version: "2.0.0".into(),
            arch: None,
            source_name: None,
            source_version: None,
            path: path.into(),
            purl: "pkg:pypi/requests@2.0.0".into(),
        };
        let scan = ImageScan {
            digest: breakwater_oci::Digest::sha256_of(b"ab"),
            upstream: "local".into(),
            repository: "team/app".into(),
            status: ScanStatus::Complete,
            description: String::new(),
            layers: vec![],
            inventory: Inventory {
                os: Some(OsRelease {
                    id: "debian".into(),
                    version_id: Some("12".into()),
                    ..OsRelease::default()
                }),
                packages: vec![pkg("/a/METADATA"), pkg("/b/METADATA")],
                ..Inventory::default()
            },
            findings: vec![],
            scanned_at_ms: 0,
            matched_at_ms: 0,
            db_hash: None,
            db_updated_at_ms: None,
        };
        let bom = cyclonedx("local/team/app", &scan);
        assert_eq!(bom["specVersion"], "1.5");
        assert_eq!(
            bom["metadata"]["component"]["purl"],
            format!(
                "pkg:oci/app@sha256%3A{}?repository_url=local%2Fteam%2Fapp",
                scan.digest.hex()
            )
        );
        let c = bom["components"].as_array().unwrap();
        assert_eq!(c[0]["type"], "operating-system");
        assert_eq!(c[1]["purl"], "pkg:pypi/requests@2.0.0");
        assert_ne!(c[1]["bom-ref"], c[2]["bom-ref"]);
        let serial = bom["serialNumber"].as_str().unwrap();
        assert_eq!(serial.len(), "urn:uuid:".len() + 36);
        assert_eq!(&serial[9 + 14..9 + 15], "4");
    }
}
