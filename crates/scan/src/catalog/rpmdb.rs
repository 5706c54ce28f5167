//! rpm's older database formats: BerkeleyDB hash `Packages` and NDB `Packages.db`.
//! Both store the same header blobs as the SQLite format; only the container differs.

use super::rpm::{headers_to_packages, parse_header, RpmHeader};
use super::{CatalogError, Package};

const BDB: &str = "rpm BerkeleyDB database";
const NDB: &str = "rpm NDB database";

const BDB_HASH_MAGIC: u32 = 0x0006_1561;
const PAGE_HEADER: usize = 26;
const P_HASH_UNSORTED: u8 = 2;
const P_OVERFLOW: u8 = 7;
const P_HASH: u8 = 13;
const H_KEYDATA: u8 = 1;
const H_OFFPAGE: u8 = 3;

/// Parses a BerkeleyDB hash database of rpm headers (`/var/lib/rpm/Packages`).
pub fn parse_bdb(path: &str, data: &[u8]) -> Result<Vec<Package>, CatalogError> {
    Ok(headers_to_packages(path, bdb_headers(path, data)?))
}

/// Reads every header blob stored as a value in a BerkeleyDB hash database.
pub fn bdb_headers(path: &str, data: &[u8]) -> Result<Vec<RpmHeader>, CatalogError> {
    let magic_at = |off| {
        data.get(off..off + 4)
            .map(|b: &[u8]| [b[0], b[1], b[2], b[3]])
    };
    let raw = magic_at(12)
        .ok_or_else(|| CatalogError::not_format(path, BDB, "shorter than a metadata page"))?;
    // BerkeleyDB writes in the creating host's byte order; the magic tells which.
    let le = if u32::from_le_bytes(raw) == BDB_HASH_MAGIC {
        true
    } else if u32::from_be_bytes(raw) == BDB_HASH_MAGIC {
        false
    } else {
        return Err(CatalogError::not_format(
            path,
            BDB,
            "no BerkeleyDB hash magic",
        ));
    };
    let rd = Reader { data, le };
    let page_size = rd.u32(20).unwrap_or(0) as usize;
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(CatalogError::malformed(
            path,
            BDB,
            format!("page size {page_size}"),
        ));
    }
    let pages = data.len() / page_size;
    let mut out = Vec::new();
    for pgno in 1..pages {
        let page = &data[pgno * page_size..(pgno + 1) * page_size];
        if page[25] != P_HASH && page[25] != P_HASH_UNSORTED {
            continue;
        }
        let prd = Reader { data: page, le };
        let entries = prd.u16(20).unwrap_or(0) as usize;
        // Items alternate key, value; only values hold headers.
        for i in (1..entries).step_by(2) {
            let Some(off) = prd.u16(PAGE_HEADER + 2 * i).map(usize::from) else {
                break;
            };
            let Some(&ty) = page.get(off) else { continue };
            let blob = match ty {
                H_OFFPAGE => {
                    let start = prd.u32(off + 4).unwrap_or(0) as usize;
                    let len = prd.u32(off + 8).unwrap_or(0) as usize;
                    read_overflow(&rd, page_size, start, len).map_err(|e| {
                        CatalogError::malformed(path, BDB, format!("page {pgno} item {i}: {e}"))
                    })?
                }
                H_KEYDATA => {
                    let end = if i == 0 {
                        page_size
                    } else {
                        prd.u16(PAGE_HEADER + 2 * (i - 1)).unwrap_or(0) as usize
                    };
                    match page.get(off + 1..end) {
                        Some(b) => b.to_vec(),
                        None => continue,
                    }
                }
                _ => continue,
            };
            // Small on-page values are rpm's own bookkeeping, not headers; skip what does not parse.
            match parse_header(&blob) {
                Ok(h) => out.push(h),
                Err(e) if ty == H_OFFPAGE => {
                    return Err(CatalogError::malformed(
                        path,
                        BDB,
                        format!("page {pgno} item {i}: {e}"),
                    ))
                }
                Err(_) => {}
            }
        }
    }
    Ok(out)
}

/// Follows a chain of overflow pages, each holding `hf_offset` bytes after its header.
fn read_overflow(
    rd: &Reader,
    page_size: usize,
    mut pgno: usize,
    len: usize,
) -> Result<Vec<u8>, String> {
    if len > rd.data.len() {
        return Err(format!("overflow length {len} exceeds file"));
    }
    let mut out = Vec::with_capacity(len);
    let mut hops = 0usize;
    while out.len() < len {
        hops += 1;
        if pgno == 0 || hops > rd.data.len() / page_size {
            return Err("overflow chain ends early or loops".to_string());
        }
        let base = pgno * page_size;
        let page = rd
            .data
            .get(base..base + page_size)
            .ok_or_else(|| format!("overflow page {pgno} past end"))?;
        if page[25] != P_OVERFLOW {
            return Err(format!("page {pgno} is not an overflow page"));
        }
        let prd = Reader {
            data: page,
            le: rd.le,
        };
        let used = prd.u16(22).unwrap_or(0) as usize;
        let chunk = page
            .get(PAGE_HEADER..PAGE_HEADER + used)
            .ok_or("overflow page overfull")?;
        out.extend_from_slice(&chunk[..chunk.len().min(len - out.len())]);
        pgno = prd.u32(16).unwrap_or(0) as usize;
    }
    Ok(out)
}

const NDB_MAGIC: &[u8; 4] = b"RpmP";
const NDB_SLOT_MAGIC: &[u8; 4] = b"Slot";
const NDB_BLOB_MAGIC: &[u8; 4] = b"BlbS";
const NDB_PAGE: usize = 4096;
const NDB_BLOCK: usize = 16;

/// Parses an rpm NDB database (`/usr/lib/sysimage/rpm/Packages.db`, SUSE).
pub fn parse_ndb(path: &str, data: &[u8]) -> Result<Vec<Package>, CatalogError> {
    Ok(headers_to_packages(path, ndb_headers(path, data)?))
}

/// Reads every header blob referenced from the slot pages of an NDB database.
pub fn ndb_headers(path: &str, data: &[u8]) -> Result<Vec<RpmHeader>, CatalogError> {
    if data.get(..4) != Some(NDB_MAGIC) {
        return Err(CatalogError::not_format(path, NDB, "no RpmP magic"));
    }
    let rd = Reader { data, le: true };
    let slot_pages = rd.u32(12).unwrap_or(0) as usize;
    if slot_pages == 0 || slot_pages * NDB_PAGE > data.len() {
        return Err(CatalogError::malformed(
            path,
            NDB,
            format!("{slot_pages} slot pages"),
        ));
    }
    let mut out = Vec::new();
    // The 32-byte file header takes the place of the first two 16-byte slots.
    for off in (32..slot_pages * NDB_PAGE).step_by(16) {
        if data.get(off..off + 4) != Some(NDB_SLOT_MAGIC) {
            return Err(CatalogError::malformed(
                path,
                NDB,
                format!("bad slot at {off}"),
            ));
        }
        let pkg_idx = rd.u32(off + 4).unwrap_or(0);
        if pkg_idx == 0 {
            continue; // free slot
        }
        let blk = rd.u32(off + 8).unwrap_or(0) as usize * NDB_BLOCK;
        let err = |m: String| CatalogError::malformed(path, NDB, format!("package {pkg_idx}: {m}"));
        if data.get(blk..blk + 4) != Some(NDB_BLOB_MAGIC) || rd.u32(blk + 4) != Some(pkg_idx) {
            return Err(err(format!("no blob header at {blk}")));
        }
        let len = rd.u32(blk + 12).unwrap_or(0) as usize;
        let blob = data
            .get(blk + 16..blk + 16 + len)
            .ok_or_else(|| err(format!("blob of {len} bytes past end")))?;
        out.push(parse_header(blob).map_err(err)?);
    }
    Ok(out)
}

/// Bounds-checked integer reads in the file's byte order.
struct Reader<'a> {
    data: &'a [u8],
    le: bool,
}

impl Reader<'_> {
    fn u16(&self, off: usize) -> Option<u16> {
        let b = self.data.get(off..off + 2)?;
        Some(if self.le {
            u16::from_le_bytes([b[0], b[1]])
        } else {
            u16::from_be_bytes([b[0], b[1]])
        })
    }

    fn u32(&self, off: usize) -> Option<u32> {
        let b = self.data.get(off..off + 4)?;
        let a = [b[0], b[1], b[2], b[3]];
        Some(if self.le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        })
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn rejects_junk() {
        assert!(bdb_headers("/var/lib/rpm/Packages", b"short").is_err());
        assert!(bdb_headers("/var/lib/rpm/Packages", &[0u8; 8192]).is_err());
        assert!(ndb_headers("/usr/lib/sysimage/rpm/Packages.db", b"RpmP").is_err());
        let mut ndb = b"RpmP\0\0\0\0\0\0\0\0\x01\0\0\0".to_vec();
        ndb.resize(4096, 0);
        assert!(ndb_headers("/usr/lib/sysimage/rpm/Packages.db", &ndb).is_err());
    }
}
