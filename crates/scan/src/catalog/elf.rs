//! Just enough ELF to find a named section and map virtual addresses to file offsets;
//! a full ELF crate would be far more than these two lookups need.

/// The ELF magic that starts every ELF file.
pub const MAGIC: &[u8; 4] = b"\x7fELF";

/// A parsed ELF file: byte order, word size, PT_LOAD segments and named sections.
#[derive(Debug)]
pub struct Elf<'a> {
    data: &'a [u8],
    /// True for 64-bit files.
    pub is64: bool,
    /// True for little-endian files.
    pub le: bool,
    loads: Vec<Segment>,
    sections: Vec<(String, u64, u64)>,
}

#[derive(Debug)]
struct Segment {
    vaddr: u64,
    offset: u64,
    filesz: u64,
}

const PT_LOAD: u32 = 1;
const SHT_NOBITS: u32 = 8;

impl<'a> Elf<'a> {
    /// Parses the headers; `None` if this is not a well-formed ELF file.
    pub fn parse(data: &'a [u8]) -> Option<Elf<'a>> {
        if data.get(..4)? != MAGIC {
            return None;
        }
        let is64 = match data.get(4)? {
            1 => false,
            2 => true,
            _ => return None,
        };
        let le = match data.get(5)? {
            1 => true,
            2 => false,
            _ => return None,
        };
        let mut elf = Elf {
            data,
            is64,
            le,
            loads: Vec::new(),
            sections: Vec::new(),
        };
        let (phoff, shoff, rest) = if is64 {
            (elf.u64(32)?, elf.u64(40)?, 52)
        } else {
            (elf.u32(28)? as u64, elf.u32(32)? as u64, 40)
        };
        let phentsize = elf.u16(rest + 2)? as u64;
        let phnum = elf.u16(rest + 4)? as u64;
        let shentsize = elf.u16(rest + 6)? as u64;
        let shnum = elf.u16(rest + 8)? as u64;
        let shstrndx = elf.u16(rest + 10)? as u64;
        // Entries smaller than the format's own are malformed; an entry size of 0 would also
        // make every index entry the same bytes, 65,536 times over a tiny file.
        let (ph_min, sh_min) = if is64 { (56, 64) } else { (32, 40) };
        let phnum = if phentsize < ph_min { 0 } else { phnum };
        let shnum = if shentsize < sh_min { 0 } else { shnum };
        for i in 0..phnum.min(4096) {
            let at = usize::try_from(phoff.checked_add(i.checked_mul(phentsize)?)?).ok()?;
            // Checked here so the fixed field offsets below cannot overflow.
            if at >= data.len() || elf.u32(at)? != PT_LOAD {
                continue;
            }
            let seg = if is64 {
                Segment {
                    offset: elf.u64(at + 8)?,
                    vaddr: elf.u64(at + 16)?,
                    filesz: elf.u64(at + 32)?,
                }
            } else {
                Segment {
                    offset: elf.u32(at + 4)? as u64,
                    vaddr: elf.u32(at + 8)? as u64,
                    filesz: elf.u32(at + 16)? as u64,
                }
            };
            elf.loads.push(seg);
        }
        // Sections are optional (stripped or truncated files still have segments).
        let mut raw = Vec::new();
        for i in 0..shnum.min(65536) {
            let Some(at) = shoff
                .checked_add(i * shentsize)
                .and_then(|a| usize::try_from(a).ok())
                .filter(|&a| a < data.len())
            else {
                break;
            };
            let parsed = if is64 {
                (|| {
                    Some((
                        elf.u32(at)?,
                        elf.u32(at + 4)?,
                        elf.u64(at + 24)?,
                        elf.u64(at + 32)?,
                    ))
                })()
            } else {
                (|| {
                    Some((
                        elf.u32(at)?,
                        elf.u32(at + 4)?,
                        elf.u32(at + 16)? as u64,
                        elf.u32(at + 20)? as u64,
                    ))
                })()
            };
            match parsed {
                Some(s) => raw.push(s),
                None => break,
            }
        }
        if let Some(&(_, _, str_off, str_size)) = raw.get(shstrndx as usize) {
            let names = elf.range(str_off, str_size).unwrap_or(&[]);
            for &(name_off, ty, off, size) in &raw {
                if ty == SHT_NOBITS {
                    continue;
                }
                let name = names
                    .get(name_off as usize..)
                    .and_then(|n| n.split(|&b| b == 0).next())
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .unwrap_or_default();
                elf.sections.push((name, off, size));
            }
        }
        Some(elf)
    }

    /// The file contents of the section called `name`, if present and inside the file.
    pub fn section(&self, name: &str) -> Option<&'a [u8]> {
        let (_, off, size) = self.sections.iter().find(|(n, _, _)| n == name)?;
        self.range(*off, *size)
    }

    /// Maps a virtual address to a file offset through the PT_LOAD segments.
    pub fn vaddr_to_offset(&self, addr: u64) -> Option<usize> {
        let seg = self
            .loads
            .iter()
            .find(|s| addr >= s.vaddr && addr - s.vaddr < s.filesz)?;
        usize::try_from(seg.offset.checked_add(addr - seg.vaddr)?).ok()
    }

    /// `len` bytes at virtual address `addr`, if they are backed by the file.
    pub fn read_vaddr(&self, addr: u64, len: u64) -> Option<&'a [u8]> {
        let off = self.vaddr_to_offset(addr)?;
        self.range(off as u64, len)
    }

    fn range(&self, off: u64, len: u64) -> Option<&'a [u8]> {
        let start = usize::try_from(off).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        self.data.get(start..end)
    }

    fn u16(&self, at: usize) -> Option<u16> {
        let b = self.data.get(at..at + 2)?;
        Some(if self.le {
            u16::from_le_bytes([b[0], b[1]])
        } else {
            u16::from_be_bytes([b[0], b[1]])
        })
    }

    fn u32(&self, at: usize) -> Option<u32> {
        let b: [u8; 4] = self.data.get(at..at + 4)?.try_into().ok()?;
        Some(if self.le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }

    fn u64(&self, at: usize) -> Option<u64> {
        let b: [u8; 8] = self.data.get(at..at + 8)?.try_into().ok()?;
        Some(if self.le {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        })
    }
}

/// Test helper: a minimal ELF64 little-endian file with one PT_LOAD segment covering the
/// whole file at `vaddr` and the given named sections (placed after the headers).
#[cfg(test)]
pub(crate) fn build_test_elf(vaddr: u64, sections: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = vec![0u8; 64 + 56];
    out[..4].copy_from_slice(MAGIC);
    out[4] = 2;
    out[5] = 1;
    out[6] = 1;
    let mut shstr = vec![0u8];
    let mut shdrs: Vec<(u32, u64, u64)> = vec![(0, 0, 0)];
    for (name, body) in sections {
        out.resize(out.len().next_multiple_of(16), 0);
        let name_off = shstr.len() as u32;
        shstr.extend_from_slice(name.as_bytes());
        shstr.push(0);
        shdrs.push((name_off, out.len() as u64, body.len() as u64));
        out.extend_from_slice(body);
    }
    let shstr_name = shstr.len() as u32;
    shstr.extend_from_slice(b".shstrtab\0");
    shdrs.push((shstr_name, out.len() as u64, shstr.len() as u64));
    out.extend_from_slice(&shstr);
    out.resize(out.len().next_multiple_of(8), 0);
    let shoff = out.len() as u64;
    for (name, off, size) in &shdrs {
        let mut sh = [0u8; 64];
        sh[..4].copy_from_slice(&name.to_le_bytes());
        sh[4..8].copy_from_slice(&1u32.to_le_bytes());
        sh[24..32].copy_from_slice(&off.to_le_bytes());
        sh[32..40].copy_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&sh);
    }
    let total = out.len() as u64;
    out[32..40].copy_from_slice(&64u64.to_le_bytes());
    out[40..48].copy_from_slice(&shoff.to_le_bytes());
    out[54..56].copy_from_slice(&56u16.to_le_bytes());
    out[56..58].copy_from_slice(&1u16.to_le_bytes());
    out[58..60].copy_from_slice(&64u16.to_le_bytes());
    out[60..62].copy_from_slice(&(shdrs.len() as u16).to_le_bytes());
    out[62..64].copy_from_slice(&((shdrs.len() - 1) as u16).to_le_bytes());
    let ph = &mut out[64..120];
    ph[..4].copy_from_slice(&PT_LOAD.to_le_bytes());
    ph[16..24].copy_from_slice(&vaddr.to_le_bytes());
    ph[32..40].copy_from_slice(&total.to_le_bytes());
    out
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn finds_sections_and_maps_addresses() {
        let bytes = build_test_elf(0x40_0000, &[(".dep-v0", b"hello")]);
        let elf = Elf::parse(&bytes).unwrap();
        assert_eq!(elf.section(".dep-v0"), Some(&b"hello"[..]));
        assert_eq!(elf.vaddr_to_offset(0x40_0010), Some(0x10));
        assert_eq!(elf.vaddr_to_offset(0x10), None);
        assert!(Elf::parse(b"\x7fELF\x02\x01").is_none());
        assert!(Elf::parse(&bytes[..70]).is_none());
    }

    /// Found by the `catalog_files` fuzz target: a 92-byte file whose section entry size is 0
    /// made 65,536 copies of one entry (a 2.5 MiB table).
    #[test]
    fn entry_sizes_below_the_format_read_no_table() {
        let mut f = build_test_elf(0x40_0000, &[(".dep-v0", b"hello")]);
        assert_eq!(Elf::parse(&f).unwrap().sections.len(), 3);
        f[58..60].copy_from_slice(&0u16.to_le_bytes()); // e_shentsize
        f[60..62].copy_from_slice(&u16::MAX.to_le_bytes()); // e_shnum
        let elf = Elf::parse(&f).unwrap();
        assert!(elf.sections.is_empty());
        f[54..56].copy_from_slice(&0u16.to_le_bytes()); // e_phentsize
        assert!(Elf::parse(&f).unwrap().loads.is_empty());
    }

    #[test]
    fn corrupted_headers_never_panic() {
        let good = build_test_elf(
            0x40_0000,
            &[
                (".dep-v0", b"hello"),
                (".go.buildinfo", b"\xff Go buildinf:\x08\x00"),
            ],
        );
        for at in 0..good.len() {
            for v in [0x00, 0x7f, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[at] = v;
                if let Some(elf) = Elf::parse(&bad) {
                    let _ = elf.section(".dep-v0");
                    let _ = elf.read_vaddr(u64::MAX - 3, 16);
                }
                let _ = super::super::golang::parse_binary("/x", &bad);
                let _ = super::super::rust::parse_auditable_binary("/x", &bad);
            }
        }
    }
}
