//! rpm: header blob parsing (shared by all three database formats) and the SQLite `rpmdb.sqlite`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OpenFlags};

use super::{CatalogError, Package, PackageKind};

const FORMAT: &str = "rpm sqlite database";

const TAG_NAME: u32 = 1000;
const TAG_VERSION: u32 = 1001;
const TAG_RELEASE: u32 = 1002;
const TAG_EPOCH: u32 = 1003;
const TAG_ARCH: u32 = 1022;
const TAG_SOURCERPM: u32 = 1044;

const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_I18NSTRING: u32 = 9;

/// The fields of one rpm header that identify an installed package.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RpmHeader {
    /// NAME.
    pub name: String,
    /// EPOCH, absent for most packages.
    pub epoch: Option<u32>,
    /// VERSION.
    pub version: String,
    /// RELEASE.
    pub release: String,
    /// ARCH (absent for `gpg-pubkey` pseudo-packages).
    pub arch: Option<String>,
    /// SOURCERPM file name, e.g. `bash-5.1.8-1.cm2.src.rpm`.
    pub source_rpm: Option<String>,
}

/// Parses an rpm header blob as stored in the databases: `il`, `dl`, `il` index entries, data.
pub fn parse_header(blob: &[u8]) -> Result<RpmHeader, String> {
    let be32 = |off: usize| -> Option<u32> {
        blob.get(off..off + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let il = be32(0).ok_or("blob shorter than 8 bytes")? as usize;
    let dl = be32(4).ok_or("blob shorter than 8 bytes")? as usize;
    // rpm itself refuses headers this large; the bound also keeps the arithmetic in range.
    if il > 0xffff || dl > 256 << 20 {
        return Err(format!("implausible header sizes il={il} dl={dl}"));
    }
    let data_start = 8 + il * 16;
    let data = blob.get(data_start..data_start + dl).ok_or_else(|| {
        format!(
            "header needs {} bytes, blob has {}",
            data_start + dl,
            blob.len()
        )
    })?;
    let mut h = RpmHeader::default();
    // Tags already read: rpm keeps each tag once, so a later copy is ignored. Reading every copy
    // would scan the data area once per index entry (65,535 × 256 MiB in the worst case).
    let mut seen = [false; 6];
    for i in 0..il {
        let e = 8 + i * 16;
        let (tag, ty, off, count) = (
            be32(e).unwrap_or(0),
            be32(e + 4).unwrap_or(0),
            be32(e + 8).unwrap_or(u32::MAX) as usize,
            be32(e + 12).unwrap_or(0),
        );
        let string = || -> Result<String, String> {
            if ty != TYPE_STRING && ty != TYPE_I18NSTRING {
                return Err(format!("tag {tag} has type {ty}, not a string"));
            }
            let rest = data
                .get(off..)
                .ok_or_else(|| format!("tag {tag} offset {off} past data"))?;
            let end = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(|| format!("tag {tag} string unterminated"))?;
            Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
        };
        let slot = match tag {
            TAG_NAME => 0,
            TAG_VERSION => 1,
            TAG_RELEASE => 2,
            TAG_ARCH => 3,
            TAG_SOURCERPM => 4,
            TAG_EPOCH => 5,
            _ => continue,
        };
        if std::mem::replace(&mut seen[slot], true) {
            continue;
        }
        match tag {
            TAG_NAME => h.name = string()?,
            TAG_VERSION => h.version = string()?,
            TAG_RELEASE => h.release = string()?,
            TAG_ARCH => h.arch = Some(string()?),
            TAG_SOURCERPM => h.source_rpm = Some(string()?),
            TAG_EPOCH => {
                if ty != TYPE_INT32 || count == 0 {
                    return Err(format!("EPOCH has type {ty} count {count}"));
                }
                let b = data.get(off..off + 4).ok_or("EPOCH offset past data")?;
                h.epoch = Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            }
            _ => {}
        }
    }
    if h.name.is_empty() || h.version.is_empty() {
        return Err("header has no NAME or VERSION".to_string());
    }
    Ok(h)
}

/// Splits `name-version-release.src.rpm` into source name and `version-release`.
pub fn split_source_rpm(srpm: &str) -> Option<(String, String)> {
    let base = srpm
        .strip_suffix(".src.rpm")
        .or_else(|| srpm.strip_suffix(".nosrc.rpm"))?;
    let (rest, release) = base.rsplit_once('-')?;
    let (name, version) = rest.rsplit_once('-')?;
    Some((name.to_string(), format!("{version}-{release}")))
}

/// Turns parsed headers into packages; `gpg-pubkey` entries are imported keys, not software.
pub fn headers_to_packages(path: &str, headers: Vec<RpmHeader>) -> Vec<Package> {
    headers
        .into_iter()
        .filter(|h| h.name != "gpg-pubkey")
        .map(|h| {
            let version = match h.epoch {
                Some(e) => format!("{e}:{}-{}", h.version, h.release),
                None => format!("{}-{}", h.version, h.release),
            };
            let (source_name, source_version) =
                match h.source_rpm.as_deref().and_then(split_source_rpm) {
                    Some((n, v)) => (Some(n), Some(v)),
                    None => (None, None),
                };
            let mut p = Package {
                kind: PackageKind::Rpm,
                ecosystem: String::new(),
                name: h.name,
                version,
                arch: h.arch,
                source_name,
                source_version,
                path: path.to_string(),
                purl: String::new(),
            };
            p.apply_os(None);
            p
        })
        .collect()
}

/// Parses the header blobs of an rpm SQLite database (`rpmdb.sqlite`).
pub fn parse_sqlite(path: &str, data: &[u8]) -> Result<Vec<Package>, CatalogError> {
    Ok(headers_to_packages(path, sqlite_headers(path, data)?))
}

/// Reads every header blob from the `Packages` table of an rpm SQLite database.
pub fn sqlite_headers(path: &str, data: &[u8]) -> Result<Vec<RpmHeader>, CatalogError> {
    if !data.starts_with(b"SQLite format 3\0") || data.len() < 100 {
        return Err(CatalogError::not_format(path, FORMAT, "no SQLite header"));
    }
    let tmp = TempDb::write(data).map_err(|source| CatalogError::Io {
        path: path.to_string(),
        source,
    })?;
    let sql = |source| CatalogError::Sqlite {
        path: path.to_string(),
        source,
    };
    // immutable=1: no locking, no -shm/-wal files next to the temp copy.
    let uri = format!("file:{}?immutable=1", uri_escape(&tmp.0.to_string_lossy()));
    let conn = Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql)?;
    let mut stmt = conn.prepare("SELECT blob FROM Packages").map_err(sql)?;
    let blobs = stmt
        .query_map([], |row| row.get::<_, Vec<u8>>(0))
        .map_err(sql)?;
    let mut out = Vec::new();
    for (i, blob) in blobs.enumerate() {
        let blob = blob.map_err(sql)?;
        let h = parse_header(&blob)
            .map_err(|e| CatalogError::malformed(path, FORMAT, format!("row {}: {e}", i + 1)))?;
        out.push(h);
    }
    Ok(out)
}

/// A private copy of the database bytes, deleted when dropped.
struct TempDb(PathBuf);

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl TempDb {
    fn write(data: &[u8]) -> std::io::Result<TempDb> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "breakwater-rpmdb-{}-{}-{nanos}.sqlite",
            std::process::id(),
            TEMP_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        let guard = TempDb(path);
        // A database written in WAL mode (header bytes 18/19 = 2) would make SQLite look for a
        // -wal file; the layer gives us only the main file, so read it as a rollback-journal DB.
        if data[18] == 2 && data[19] == 2 {
            f.write_all(&data[..18])?;
            f.write_all(&[1, 1])?;
            f.write_all(&data[20..])?;
        } else {
            f.write_all(data)?;
        }
        Ok(guard)
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Escapes the characters that would end the path part of an SQLite URI.
fn uri_escape(p: &str) -> String {
    p.replace('%', "%25")
        .replace('?', "%3f")
        .replace('#', "%23")
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn source_rpm_split() {
        assert_eq!(
            split_source_rpm("util-linux-2.32.1-42.el8_8.src.rpm"),
            Some(("util-linux".to_string(), "2.32.1-42.el8_8".to_string()))
        );
        assert_eq!(split_source_rpm("garbage"), None);
    }

    #[test]
    fn header_rejects_junk() {
        assert!(parse_header(b"").is_err());
        assert!(parse_header(&[0xff; 64]).is_err());
        assert!(parse_header(&[0, 0, 0, 1, 0, 0, 0, 0]).is_err());
    }

    /// A header blob from (tag, offset) entries, all strings, over `data`.
    fn header(entries: &[(u32, u32)], data: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend((entries.len() as u32).to_be_bytes());
        b.extend((data.len() as u32).to_be_bytes());
        for &(tag, off) in entries {
            for v in [tag, TYPE_STRING, off, 1] {
                b.extend(v.to_be_bytes());
            }
        }
        b.extend(data);
        b
    }

    #[test]
    fn a_repeated_tag_is_read_once_the_first_copy_wins() {
        let data = b"first\x00second\x001.0\x00";
        let h = parse_header(&header(
            &[(TAG_NAME, 0), (TAG_NAME, 6), (TAG_VERSION, 13)],
            data,
        ))
        .unwrap();
        assert_eq!((h.name.as_str(), h.version.as_str()), ("first", "1.0"));
        // 65,535 copies of NAME over a 1 MiB string: one scan, not one per copy.
        let mut long = vec![b'x'; 1 << 20];
        long.extend(b"\x001.0\x00");
        let mut entries = vec![(TAG_VERSION, (1u32 << 20) + 1)];
        entries.extend(std::iter::repeat_n((TAG_NAME, 0), 0xffff - 1));
        let h = parse_header(&header(&entries, &long)).unwrap();
        assert_eq!(h.name.len(), 1 << 20);
    }

    #[test]
    fn sqlite_rejects_non_sqlite() {
        assert!(sqlite_headers("/var/lib/rpm/rpmdb.sqlite", b"hello").is_err());
        let mut fake = b"SQLite format 3\0".to_vec();
        fake.resize(4096, 0xAB);
        assert!(sqlite_headers("/var/lib/rpm/rpmdb.sqlite", &fake).is_err());
    }
}
