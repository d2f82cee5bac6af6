//! Multiboot 1 and 2 information structures.

use crate::{BootInfo, Error, MAX_MODULES, MAX_REGIONS, MAX_RESERVED, MAX_STRING, MemRegion, Module, PhysMemory, Protocol, RegionKind};
use arrayvec::{ArrayString, ArrayVec};

/// `eax` on entry from a multiboot1 loader.
pub const MB1_MAGIC: u32 = 0x2BAD_B002;
/// `eax` on entry from a multiboot2 loader.
pub const MB2_MAGIC: u32 = 0x36D7_6289;

/// Largest multiboot2 info block accepted; GRUB's are a few KiB.
const MB2_MAX_TOTAL: u64 = 1 << 20;
/// Longest scan for a NUL-terminated multiboot1 string.
const MB1_MAX_STRING: u64 = MAX_STRING as u64;

/// Parses the boot information at physical address `info` handed over with `magic`.
pub fn parse(magic: u32, info: u64, mem: &impl PhysMemory) -> Result<BootInfo, Error> {
    let mut out = BootInfo {
        protocol: Protocol::Multiboot1,
        memory: ArrayVec::new(),
        modules: ArrayVec::new(),
        cmdline: ArrayString::new(),
        reserved: ArrayVec::new(),
    };
    match magic {
        MB1_MAGIC => parse_mb1(info, mem, &mut out)?,
        MB2_MAGIC => {
            out.protocol = Protocol::Multiboot2;
            parse_mb2(info, mem, &mut out)?
        }
        other => return Err(Error::BadMagic(other)),
    }
    Ok(out)
}

fn read<'m>(mem: &'m impl PhysMemory, what: &'static str, addr: u64, len: u64) -> Result<&'m [u8], Error> {
    mem.bytes(addr, len).filter(|b| b.len() as u64 == len).ok_or(Error::Unreadable { what, addr, len })
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    // Callers index only within slices whose length they checked.
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from(u32_at(b, off)) | (u64::from(u32_at(b, off + 4)) << 32)
}

fn reserve(out: &mut BootInfo, start: u64, len: u64) -> Result<(), Error> {
    let end = start.checked_add(len).ok_or(Error::Malformed { what: "reserved range", detail: "wraps" })?;
    out.reserved.try_push((start, end)).map_err(|_| Error::TooMany { what: "reserved ranges", max: MAX_RESERVED })
}

fn push_region(out: &mut BootInfo, base: u64, len: u64, ty: u32) -> Result<(), Error> {
    let end = base.saturating_add(len);
    let kind = if ty == 1 { RegionKind::Available } else { RegionKind::Reserved };
    out.memory.try_push(MemRegion { start: base, end, kind }).map_err(|_| Error::TooMany { what: "memory regions", max: MAX_REGIONS })
}

fn to_string(bytes: &[u8], what: &'static str) -> Result<ArrayString<MAX_STRING>, Error> {
    let bytes = bytes.split(|&b| b == 0).next().unwrap_or(&[]);
    let s = core::str::from_utf8(bytes).map_err(|_| Error::BadString { what })?;
    ArrayString::from(s).map_err(|_| Error::BadString { what })
}

/// Reads a NUL-terminated multiboot1 string, which has no length field.
fn mb1_string(mem: &impl PhysMemory, addr: u64, what: &'static str) -> Result<(ArrayString<MAX_STRING>, u64), Error> {
    // Read byte by byte so that a string ending just before unreadable memory still works.
    let mut len = 0u64;
    loop {
        if len >= MB1_MAX_STRING {
            return Err(Error::BadString { what });
        }
        let b = read(mem, what, addr + len, 1)?;
        if b[0] == 0 {
            break;
        }
        len += 1;
    }
    let bytes = read(mem, what, addr, len)?;
    Ok((to_string(bytes, what)?, len + 1))
}

fn parse_mb1(info: u64, mem: &impl PhysMemory, out: &mut BootInfo) -> Result<(), Error> {
    const INFO_LEN: u64 = 88;
    let b = read(mem, "multiboot1 info", info, INFO_LEN)?;
    reserve(out, info, INFO_LEN)?;
    let flags = u32_at(b, 0);
    if flags & (1 << 2) != 0 {
        let addr = u64::from(u32_at(b, 16));
        let (s, len) = mb1_string(mem, addr, "command line")?;
        out.cmdline = s;
        reserve(out, addr, len)?;
    }
    if flags & (1 << 3) != 0 {
        let count = u64::from(u32_at(b, 20));
        let addr = u64::from(u32_at(b, 24));
        if count > MAX_MODULES as u64 {
            return Err(Error::TooMany { what: "modules", max: MAX_MODULES });
        }
        let list = read(mem, "module list", addr, count * 16)?;
        reserve(out, addr, count * 16)?;
        for i in 0..count as usize {
            let e = &list[i * 16..i * 16 + 16];
            let (start, end) = (u64::from(u32_at(e, 0)), u64::from(u32_at(e, 4)));
            if end < start {
                return Err(Error::Malformed { what: "module", detail: "ends before it starts" });
            }
            let straddr = u64::from(u32_at(e, 8));
            let (name, len) = if straddr == 0 { (ArrayString::new(), 0) } else { mb1_string(mem, straddr, "module name")? };
            if len > 0 {
                reserve(out, straddr, len)?;
            }
            out.modules.try_push(Module { start, end, name }).map_err(|_| Error::TooMany { what: "modules", max: MAX_MODULES })?;
        }
    }
    if flags & (1 << 6) != 0 {
        let len = u64::from(u32_at(b, 44));
        let addr = u64::from(u32_at(b, 48));
        let map = read(mem, "memory map", addr, len)?;
        reserve(out, addr, len)?;
        let mut off = 0usize;
        while off + 24 <= map.len() {
            let size = u32_at(map, off) as usize;
            if size < 20 {
                return Err(Error::Malformed { what: "memory map", detail: "entry smaller than 20 bytes" });
            }
            push_region(out, u64_at(map, off + 4), u64_at(map, off + 12), u32_at(map, off + 20))?;
            off = off.checked_add(size + 4).ok_or(Error::Malformed { what: "memory map", detail: "wraps" })?;
        }
    } else if flags & 1 != 0 {
        // Only the basic lower/upper sizes: RAM at 0 and from 1 MiB up.
        push_region(out, 0, u64::from(u32_at(b, 4)) * 1024, 1)?;
        push_region(out, 0x10_0000, u64::from(u32_at(b, 8)) * 1024, 1)?;
    } else {
        return Err(Error::Malformed { what: "multiboot1 info", detail: "no memory information" });
    }
    Ok(())
}

fn parse_mb2(info: u64, mem: &impl PhysMemory, out: &mut BootInfo) -> Result<(), Error> {
    let head = read(mem, "multiboot2 info", info, 8)?;
    let total = u64::from(u32_at(head, 0));
    if !(16..=MB2_MAX_TOTAL).contains(&total) {
        return Err(Error::Malformed { what: "multiboot2 info", detail: "total size out of range" });
    }
    let b = read(mem, "multiboot2 info", info, total)?;
    reserve(out, info, total)?;
    let mut off = 8usize;
    let mut saw_end = false;
    while off + 8 <= b.len() {
        let ty = u32_at(b, off);
        let size = u32_at(b, off + 4) as usize;
        if size < 8 || off + size > b.len() {
            return Err(Error::Malformed { what: "multiboot2 tag", detail: "size out of range" });
        }
        let tag = &b[off..off + size];
        match ty {
            0 => {
                saw_end = true;
                break;
            }
            1 => out.cmdline = to_string(&tag[8..], "command line")?,
            3 => {
                if size < 16 {
                    return Err(Error::Malformed { what: "module tag", detail: "too short" });
                }
                let (start, end) = (u64::from(u32_at(tag, 8)), u64::from(u32_at(tag, 12)));
                if end < start {
                    return Err(Error::Malformed { what: "module", detail: "ends before it starts" });
                }
                let name = to_string(&tag[16..], "module name")?;
                out.modules.try_push(Module { start, end, name }).map_err(|_| Error::TooMany { what: "modules", max: MAX_MODULES })?;
            }
            6 => {
                if size < 16 {
                    return Err(Error::Malformed { what: "memory map tag", detail: "too short" });
                }
                let esize = u32_at(tag, 8) as usize;
                if esize < 24 {
                    return Err(Error::Malformed { what: "memory map tag", detail: "entry smaller than 24 bytes" });
                }
                let mut e = 16;
                while e + esize <= size {
                    push_region(out, u64_at(tag, e), u64_at(tag, e + 8), u32_at(tag, e + 16))?;
                    e += esize;
                }
            }
            _ => {}
        }
        // Tags are 8-byte aligned.
        off = (off + size + 7) & !7;
    }
    if !saw_end {
        return Err(Error::Malformed { what: "multiboot2 info", detail: "no end tag" });
    }
    if out.memory.is_empty() {
        return Err(Error::Malformed { what: "multiboot2 info", detail: "no memory map" });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake physical memory: one buffer at a base address.
    struct Fake {
        base: u64,
        data: Vec<u8>,
    }

    impl PhysMemory for Fake {
        fn bytes(&self, addr: u64, len: u64) -> Option<&[u8]> {
            let start = usize::try_from(addr.checked_sub(self.base)?).ok()?;
            let end = start.checked_add(usize::try_from(len).ok()?)?;
            self.data.get(start..end)
        }
    }

    fn put32(d: &mut [u8], off: usize, v: u32) {
        d[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn put64(d: &mut [u8], off: usize, v: u64) {
        d[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }

    fn mb1_image() -> Fake {
        let base = 0x1000u64;
        let mut d = vec![0u8; 0x400];
        // info at 0x1000, cmdline at 0x1100, mods at 0x1200, mod string at 0x1240, mmap at 0x1300
        put32(&mut d, 0, (1 << 2) | (1 << 3) | (1 << 6));
        put32(&mut d, 16, 0x1100);
        d[0x100..0x100 + 9].copy_from_slice(b"test x=1\0");
        put32(&mut d, 20, 1);
        put32(&mut d, 24, 0x1200);
        put32(&mut d, 0x200, 0x20_0000);
        put32(&mut d, 0x204, 0x20_1000);
        put32(&mut d, 0x208, 0x1240);
        d[0x240..0x240 + 13].copy_from_slice(b"modules.tar\0\0");
        put32(&mut d, 44, 48);
        put32(&mut d, 48, 0x1300);
        for (i, (b, l, t)) in [(0u64, 0x9_F000u64, 1u32), (0x10_0000, 0x700_0000, 1)].iter().enumerate() {
            let o = 0x300 + i * 24;
            put32(&mut d, o, 20);
            put64(&mut d, o + 4, *b);
            put64(&mut d, o + 12, *l);
            put32(&mut d, o + 20, *t);
        }
        Fake { base, data: d }
    }

    #[test]
    fn multiboot1_full() {
        let m = mb1_image();
        let bi = parse(MB1_MAGIC, 0x1000, &m).unwrap();
        assert_eq!(bi.protocol, Protocol::Multiboot1);
        assert_eq!(bi.cmdline.as_str(), "test x=1");
        assert_eq!(bi.modules.len(), 1);
        assert_eq!(bi.modules[0].name.as_str(), "modules.tar");
        assert_eq!((bi.modules[0].start, bi.modules[0].end), (0x20_0000, 0x20_1000));
        assert_eq!(bi.memory.len(), 2);
        assert_eq!(bi.memory[1], MemRegion { start: 0x10_0000, end: 0x710_0000, kind: RegionKind::Available });
        assert!(bi.reserved.contains(&(0x1000, 0x1000 + 88)));
    }

    #[test]
    fn multiboot1_errors() {
        let mut m = mb1_image();
        put32(&mut m.data, 24, 0xdead_0000);
        assert!(matches!(parse(MB1_MAGIC, 0x1000, &m), Err(Error::Unreadable { what: "module list", .. })));
        let mut m = mb1_image();
        put32(&mut m.data, 20, 1000);
        assert_eq!(parse(MB1_MAGIC, 0x1000, &m).unwrap_err(), Error::TooMany { what: "modules", max: MAX_MODULES });
        let mut m = mb1_image();
        put32(&mut m.data, 0x300, 3);
        assert!(matches!(parse(MB1_MAGIC, 0x1000, &m), Err(Error::Malformed { what: "memory map", .. })));
        let mut m = mb1_image();
        m.data[0x100..0x400].fill(b'a');
        assert!(parse(MB1_MAGIC, 0x1000, &m).is_err());
        assert_eq!(parse(0x1234, 0x1000, &mb1_image()).unwrap_err(), Error::BadMagic(0x1234));
    }

    fn mb2_image() -> Fake {
        let mut d = vec![0u8; 0x200];
        let mut off = 8;
        // cmdline tag
        put32(&mut d, off, 1);
        put32(&mut d, off + 4, 8 + 5);
        d[off + 8..off + 13].copy_from_slice(b"test\0");
        off = (off + 13 + 7) & !7;
        // module tag
        put32(&mut d, off, 3);
        put32(&mut d, off + 4, 16 + 8);
        put32(&mut d, off + 8, 0x30_0000);
        put32(&mut d, off + 12, 0x30_2000);
        d[off + 16..off + 24].copy_from_slice(b"modules\0");
        off += 24;
        // mmap tag with 2 entries
        put32(&mut d, off, 6);
        put32(&mut d, off + 4, 16 + 48);
        put32(&mut d, off + 8, 24);
        put64(&mut d, off + 16, 0x10_0000);
        put64(&mut d, off + 24, 0x100_0000);
        put32(&mut d, off + 32, 1);
        put64(&mut d, off + 40, 0xfec0_0000);
        put64(&mut d, off + 48, 0x1000);
        put32(&mut d, off + 56, 2);
        off += 64;
        // end tag
        put32(&mut d, off, 0);
        put32(&mut d, off + 4, 8);
        off += 8;
        put32(&mut d, 0, off as u32);
        Fake { base: 0x8000, data: d }
    }

    #[test]
    fn multiboot2_full() {
        let bi = parse(MB2_MAGIC, 0x8000, &mb2_image()).unwrap();
        assert_eq!(bi.protocol, Protocol::Multiboot2);
        assert_eq!(bi.cmdline.as_str(), "test");
        assert_eq!(bi.modules[0].name.as_str(), "modules");
        assert_eq!(bi.memory.len(), 2);
        assert_eq!(bi.memory[1].kind, RegionKind::Reserved);
    }

    #[test]
    fn multiboot2_errors() {
        let mut m = mb2_image();
        put32(&mut m.data, 0, 4);
        assert!(matches!(parse(MB2_MAGIC, 0x8000, &m), Err(Error::Malformed { .. })));
        let mut m = mb2_image();
        put32(&mut m.data, 12, 0xffff);
        assert!(matches!(parse(MB2_MAGIC, 0x8000, &m), Err(Error::Malformed { what: "multiboot2 tag", .. })));
        let mut m = mb2_image();
        put32(&mut m.data, 0, 0x1000);
        assert!(matches!(parse(MB2_MAGIC, 0x8000, &m), Err(Error::Unreadable { .. })));
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic mutation loop over both formats.
        let mut seed = 0x1234_5678_9abc_def0u64;
        for (magic, img, at) in [(MB1_MAGIC, mb1_image(), 0x1000), (MB2_MAGIC, mb2_image(), 0x8000)] {
            for _ in 0..5000 {
                let mut m = Fake { base: img.base, data: img.data.clone() };
                for _ in 0..4 {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let i = (seed as usize) % m.data.len();
                    m.data[i] = (seed >> 32) as u8;
                }
                let _ = parse(magic, at, &m);
            }
        }
    }
}
