//! Java archives: `META-INF/maven/<group>/<artifact>/pom.properties` in jars, wars and ears,
//! including jars nested one or two levels deep (`WEB-INF/lib`, Spring Boot `BOOT-INF/lib`).

use std::io::{Cursor, Read};

use super::{purl, CatalogError, Package, PackageKind};

const FORMAT: &str = "Java archive";
/// Largest nested jar read into memory.
const MAX_NESTED: u64 = 32 << 20;
/// Largest pom.properties read.
const MAX_PROPERTIES: u64 = 1 << 20;
/// How deep to look into jars inside jars.
const MAX_DEPTH: usize = 2;
/// Total bytes decompressed per top-level archive, so a zip bomb costs bounded work.
const BUDGET: u64 = 512 << 20;

/// Parses a jar/war/ear held in memory and returns the Maven artifacts it records.
pub fn parse_archive(path: &str, data: &[u8]) -> Result<Vec<Package>, CatalogError> {
    let mut out = Vec::new();
    let mut budget = BUDGET;
    walk(path, data, 0, &mut budget, &mut out)?;
    Ok(out)
}

fn walk(
    path: &str,
    data: &[u8],
    depth: usize,
    budget: &mut u64,
    out: &mut Vec<Package>,
) -> Result<(), CatalogError> {
    let mut zip = zip::ZipArchive::new(Cursor::new(data))
        .map_err(|e| CatalogError::not_format(path, FORMAT, format!("not a zip: {e}")))?;
    for i in 0..zip.len() {
        let Ok(mut entry) = zip.by_index(i) else {
            continue;
        };
        // Names that are not valid UTF-8 cannot be Maven metadata or a jar we would name.
        let Ok(name) = entry.name().map(|n| n.into_owned()) else {
            continue;
        };
        let is_pom = is_pom_properties(&name);
        let is_jar = depth < MAX_DEPTH && name.to_ascii_lowercase().ends_with(".jar");
        if !entry.is_file() || !(is_pom || is_jar) {
            continue;
        }
        let cap = if is_pom { MAX_PROPERTIES } else { MAX_NESTED };
        if entry.size() > cap || entry.size() > *budget {
            continue;
        }
        let mut buf = Vec::with_capacity(entry.size() as usize);
        // A damaged member loses only itself, not the rest of the archive.
        if (&mut entry)
            .take(cap.min(*budget))
            .read_to_end(&mut buf)
            .is_err()
        {
            continue;
        }
        *budget = budget.saturating_sub(buf.len() as u64);
        if is_pom {
            if let Some(p) = pom_package(path, &buf) {
                out.push(p);
            }
        } else {
            let inner = format!("{path}!/{name}");
            // A nested file that merely ends in .jar but is no zip is not worth failing over.
            let _ = walk(&inner, &buf, depth + 1, budget, out);
        }
    }
    Ok(())
}

/// `META-INF/maven/<groupId>/<artifactId>/pom.properties`.
fn is_pom_properties(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    parts.len() == 5
        && parts[0] == "META-INF"
        && parts[1] == "maven"
        && parts[4] == "pom.properties"
}

fn pom_package(path: &str, data: &[u8]) -> Option<Package> {
    let text = String::from_utf8_lossy(data);
    let (mut g, mut a, mut v) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', '!']) {
            continue;
        }
        let Some((k, val)) = line.split_once(['=', ':']) else {
            continue;
        };
        let val = val.trim().to_string();
        match k.trim() {
            "groupId" => g = Some(val),
            "artifactId" => a = Some(val),
            "version" => v = Some(val),
            _ => {}
        }
    }
    let (g, a, v) = (g?, a?, v?);
    if g.is_empty() || a.is_empty() || v.is_empty() {
        return None;
    }
    Some(purl::language_package(
        PackageKind::Maven,
        &format!("{g}:{a}"),
        &v,
        path,
    ))
}

/// Test helper: writes a zip with the given members.
#[cfg(test)]
pub(crate) fn build_zip(members: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, body) in members {
        w.start_file(*name, opts).unwrap();
        w.write_all(body).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn jar_with_nested_jar() {
        let inner = build_zip(&[(
            "META-INF/maven/org.yaml/snakeyaml/pom.properties",
            b"#Generated\nversion=1.33\ngroupId=org.yaml\nartifactId=snakeyaml\n",
        )]);
        let outer = build_zip(&[
            ("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\n"),
            (
                "META-INF/maven/com.example/app/pom.properties",
                b"groupId=com.example\nartifactId=app\nversion=2.0.0\n",
            ),
            ("BOOT-INF/lib/snakeyaml-1.33.jar", &inner),
        ]);
        let pkgs = parse_archive("/app/app.jar", &outer).unwrap();
        assert_eq!(pkgs.len(), 2);
        assert_eq!(pkgs[0].purl, "pkg:maven/com.example/app@2.0.0");
        assert_eq!(pkgs[1].name, "org.yaml:snakeyaml");
        assert_eq!(
            pkgs[1].path,
            "/app/app.jar!/BOOT-INF/lib/snakeyaml-1.33.jar"
        );
        assert!(parse_archive("/x.jar", b"PK\x03\x04 truncated").is_err());
    }
}
