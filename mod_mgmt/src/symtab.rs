//! nano_core's symbol table, prepared at image build time and used where it lies.
//!
//! Every crate the kernel loads links against nano_core's ~3,000 symbols. Reading them from the
//! text symbol file ([`crate::symfile`]) at boot meant hashing it against the signed manifest,
//! parsing every line, allocating a `String` per name and key and building two trees: 35 ms of
//! every boot on TCG. `imgtool` now does all of that once: it builds this table with [`build`]
//! and writes it into nano_core's own image (a reserved read-only array), and the kernel
//! registers nano_core with [`crate::Loader::add_prelinked_table`], which answers symbol lookups
//! by binary search in the table itself. Being part of the kernel image, the table is trusted as
//! the kernel's code is; nothing is hashed at boot.
//!
//! The table holds exactly what [`crate::Loader::add_prelinked`] would make of the same input:
//! symbols outside every section get sections of their own (`<symbol>`), each section's
//! symbols are sorted by offset (larger first at one offset), and of several exports with one
//! key the first in address order wins (the others are counted as shadowed).
//!
//! Format (little-endian):
//!
//! ```text
//! header   "DLKS" version=2 sections symbols exports agnostic shadowed strings_len  (8 × u32)
//! sections × (addr u64, size u64, name_off u32, name_len u32, first_symbol u32,
//!             symbol_count u32, kind u32, 0 u32)                                     40 bytes
//! symbols  × (addr u64, size u64, raw_off u32, raw_len u32, section u32, flags u32)  32 bytes
//!            grouped by section in section order; flags bit 0: global
//! exports  × (hash u64, key_off u32, key_len u32, symbol u32)   sorted by (hash, key), unique
//!                                                                   exact keys; 20 bytes
//! buckets  × u32 (2^b + 1 of them, 2^b ≥ exports): bucket t's exports are those whose hash's
//!            top b bits are t, exports[buckets[t] .. buckets[t + 1]]
//! agnostic × (key_off u32, key_len u32, export u32)       sorted by (agnostic key, exact key)
//! strings  (UTF-8, checked once when the table is opened)
//! ```
//!
//! The hash is [`key_hash`] of the exact key: an exact lookup hashes the key once, reads one
//! bucket (about one entry) and compares one string. (A binary search over the keys was slower
//! than the loader's trees; so was FNV-1a, whose byte-at-a-time multiply chain costs more than
//! the comparisons it saves on keys of 60 bytes.)
//!
//! String offsets count from the start of the string area. Every access is bounds-checked: a
//! damaged entry reads as missing instead of reading outside the table.

use crate::elf::SectionKind;
use crate::error::LoadError;
use crate::loader::{PrelinkedSection, PrelinkedSymbol};
use crate::symbols::{agnostic_of_exact, exact_key};
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

const MAGIC: &[u8; 4] = b"DLKS";
const VERSION: u32 = 2;
const HEADER: usize = 32;
const SECTION: usize = 40;
const SYMBOL: usize = 32;
const ENTRY: usize = 12;
const EXPORT: usize = 20;

fn kind_code(k: SectionKind) -> u32 {
    match k {
        SectionKind::Text => 0,
        SectionKind::Rodata => 1,
        SectionKind::Data => 2,
        SectionKind::Bss => 3,
        SectionKind::TlsData => 4,
        SectionKind::TlsBss => 5,
    }
}

fn kind_of(code: u32) -> Option<SectionKind> {
    Some(match code {
        0 => SectionKind::Text,
        1 => SectionKind::Rodata,
        2 => SectionKind::Data,
        3 => SectionKind::Bss,
        4 => SectionKind::TlsData,
        5 => SectionKind::TlsBss,
        _ => return None,
    })
}

/// The string area being written: each distinct string once.
#[derive(Default)]
struct Strings {
    bytes: Vec<u8>,
    seen: BTreeMap<String, u32>,
}

impl Strings {
    fn add(&mut self, s: &str) -> (u32, u32) {
        let at = *self.seen.entry(s.to_string()).or_insert_with(|| {
            let at = self.bytes.len() as u32;
            self.bytes.extend_from_slice(s.as_bytes());
            at
        });
        (at, s.len() as u32)
    }
}

/// A section of a prelinked crate with the symbols that lie in it: indexes into the crate's
/// symbols, in input order.
pub(crate) struct Placed<'a> {
    pub(crate) name: &'a str,
    pub(crate) addr: u64,
    pub(crate) size: u64,
    pub(crate) kind: SectionKind,
    pub(crate) syms: Vec<usize>,
}

/// Places a prelinked crate's symbols in its sections, sorted by address. A symbol outside every
/// section gets a `<symbol>` section of its own, which aliases (several names at one address,
/// like memcpy/memmove) share. Both [`build`] and [`crate::Loader::add_prelinked`] register a
/// crate this way.
pub(crate) fn place<'a>(sections: &'a [PrelinkedSection], symbols: &[PrelinkedSymbol]) -> Vec<Placed<'a>> {
    let mut secs: Vec<Placed<'a>> =
        sections.iter().map(|s| Placed { name: &s.name, addr: s.addr, size: s.size, kind: s.kind, syms: Vec::new() }).collect();
    secs.sort_by_key(|s| s.addr);
    let mut extra = Vec::new();
    for (n, sym) in symbols.iter().enumerate() {
        let i = secs.partition_point(|s| s.addr <= sym.addr);
        match i.checked_sub(1).filter(|&j| sym.addr < secs[j].addr + secs[j].size.max(1)) {
            Some(j) => secs[j].syms.push(n),
            None => extra.push(n),
        }
    }
    let real = secs.len();
    for n in extra {
        let sym = &symbols[n];
        match secs[real..].iter_mut().find(|s| s.addr == sym.addr) {
            Some(s) => s.syms.push(n),
            None => {
                secs.push(Placed { name: "<symbol>", addr: sym.addr, size: sym.size.max(1), kind: SectionKind::Text, syms: alloc::vec![n] })
            }
        }
    }
    secs.sort_by_key(|s| s.addr);
    secs
}

/// The exports of placed sections in the order their keys are claimed — by section address,
/// then symbol address, then input order; the first of one key wins — as (section index in
/// `secs`, symbol index).
pub(crate) fn exports_in_claim_order(secs: &[Placed<'_>], symbols: &[PrelinkedSymbol]) -> Vec<(usize, usize)> {
    let mut exports: Vec<(usize, usize)> =
        secs.iter().enumerate().flat_map(|(j, s)| s.syms.iter().filter(|&&n| symbols[n].global).map(move |&n| (j, n))).collect();
    exports.sort_by_key(|&(j, n)| (secs[j].addr, symbols[n].addr));
    exports
}

/// A section's symbols in the order it lists them (what `symbol_at` relies on): by address, the
/// larger first at one address.
pub(crate) fn listing_order(syms: &mut [usize], symbols: &[PrelinkedSymbol]) {
    syms.sort_by(|&a, &b| symbols[a].addr.cmp(&symbols[b].addr).then(symbols[b].size.cmp(&symbols[a].size)));
}

/// Builds the table of a prelinked crate (nano_core) from its sections and symbols, as
/// [`crate::Loader::add_prelinked`] would register them (see the module docs).
pub fn build(sections: &[PrelinkedSection], symbols: &[PrelinkedSymbol]) -> Vec<u8> {
    let secs = place(sections, symbols);
    // Each symbol's index in the table, which lists each section's symbols in listing order.
    let mut index = alloc::vec![0u32; symbols.len()];
    let mut listed: Vec<Vec<usize>> = Vec::with_capacity(secs.len());
    let mut next = 0u32;
    for s in &secs {
        let mut syms = s.syms.clone();
        listing_order(&mut syms, symbols);
        for &n in &syms {
            index[n] = next;
            next += 1;
        }
        listed.push(syms);
    }

    let mut strings = Strings::default();
    let mut out_secs = Vec::with_capacity(secs.len() * SECTION);
    let mut out_syms = Vec::with_capacity(symbols.len() * SYMBOL);
    let mut first_symbol = 0u32;
    for (si, (s, syms)) in secs.iter().zip(&listed).enumerate() {
        let (no, nl) = strings.add(s.name);
        for v in [s.addr, s.size] {
            out_secs.extend_from_slice(&v.to_le_bytes());
        }
        for v in [no, nl, first_symbol, syms.len() as u32, kind_code(s.kind), 0] {
            out_secs.extend_from_slice(&v.to_le_bytes());
        }
        first_symbol += syms.len() as u32;
        for y in syms.iter().map(|&n| &symbols[n]) {
            let (ro, rl) = strings.add(&y.raw);
            for v in [y.addr, y.size] {
                out_syms.extend_from_slice(&v.to_le_bytes());
            }
            for v in [ro, rl, si as u32, u32::from(y.global)] {
                out_syms.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    // The first definition of a key wins; the others are counted as shadowed.
    let mut first: BTreeMap<String, u32> = BTreeMap::new();
    let mut shadowed = 0u32;
    for (_, n) in exports_in_claim_order(&secs, symbols) {
        let y = &symbols[n];
        match first.entry(y.key.clone().unwrap_or_else(|| exact_key(&y.raw))) {
            alloc::collections::btree_map::Entry::Vacant(v) => {
                v.insert(index[n]);
            }
            alloc::collections::btree_map::Entry::Occupied(_) => shadowed += 1,
        }
    }
    // Exports in (hash, key) order, each with its hash; the agnostic entries point at them.
    let mut hashed: Vec<(u64, &str, u32)> = first.iter().map(|(k, sym)| (key_hash(k), k.as_str(), *sym)).collect();
    hashed.sort();
    let bits = bucket_bits(hashed.len());
    let mut out_exports = Vec::with_capacity(hashed.len() * EXPORT);
    let mut out_buckets = Vec::with_capacity(((1usize << bits) + 1) * 4);
    let mut position: BTreeMap<&str, u32> = BTreeMap::new();
    let mut bucket = 0u64;
    for (i, (h, key, sym)) in hashed.iter().enumerate() {
        while bucket <= top_bits(*h, bits) {
            out_buckets.extend_from_slice(&(i as u32).to_le_bytes());
            bucket += 1;
        }
        let (ko, kl) = strings.add(key);
        out_exports.extend_from_slice(&h.to_le_bytes());
        for v in [ko, kl, *sym] {
            out_exports.extend_from_slice(&v.to_le_bytes());
        }
        position.insert(key, i as u32);
    }
    while bucket <= 1u64 << bits {
        out_buckets.extend_from_slice(&(hashed.len() as u32).to_le_bytes());
        bucket += 1;
    }
    let mut agnostic: Vec<(String, &str)> = first.keys().map(|k| (agnostic_of_exact(k), k.as_str())).collect();
    agnostic.sort();
    let mut out_agnostic = Vec::with_capacity(agnostic.len() * ENTRY);
    for (ag, key) in &agnostic {
        let (ao, al) = strings.add(ag);
        for v in [ao, al, position[key]] {
            out_agnostic.extend_from_slice(&v.to_le_bytes());
        }
    }

    let mut out = Vec::with_capacity(HEADER + out_secs.len() + out_syms.len() + out_exports.len() * 2 + strings.bytes.len());
    out.extend_from_slice(MAGIC);
    let counts = [VERSION, secs.len() as u32, next, first.len() as u32, agnostic.len() as u32, shadowed, strings.bytes.len() as u32];
    for v in counts {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for part in [&out_secs, &out_syms, &out_exports, &out_buckets, &out_agnostic, &strings.bytes] {
        out.extend_from_slice(part);
    }
    out
}

/// The hash of an exact key in the table: eight bytes per multiply, then a finalizer that
/// spreads every input bit into the top bits, which pick the bucket.
pub fn key_hash(key: &str) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = key.len() as u64;
    let mut chunks = key.as_bytes().chunks_exact(8);
    for c in &mut chunks {
        h = (h.rotate_left(23) ^ u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).wrapping_mul(K);
    }
    let mut last = [0u8; 8];
    last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h.rotate_left(23) ^ u64::from_le_bytes(last)).wrapping_mul(K);
    // splitmix64's finalizer.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// How many top bits of a hash pick its bucket: at least as many buckets as exports.
fn bucket_bits(exports: usize) -> u32 {
    exports.max(2).next_power_of_two().trailing_zeros()
}

fn top_bits(hash: u64, bits: u32) -> u64 {
    hash >> (64 - bits)
}

/// A section of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSection {
    /// Its name (`<symbol>` for a symbol outside every section).
    pub name: &'static str,
    /// Start address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// What it holds.
    pub kind: SectionKind,
    /// Its symbols: table symbols `first .. first + count`.
    pub first: u32,
    /// How many symbols it has.
    pub count: u32,
}

/// A symbol of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSymbol {
    /// Address.
    pub addr: u64,
    /// Size (0 if unknown).
    pub size: u64,
    /// Raw (mangled) name.
    pub raw: &'static str,
    /// Index of its section in the table.
    pub section: u32,
    /// Whether other crates may link to it.
    pub global: bool,
}

/// The table, used in place (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct SymbolTable {
    bytes: &'static [u8],
    strings: &'static str,
    sections: usize,
    symbols: usize,
    exports: usize,
    bits: u32,
    agnostic: usize,
    shadowed: usize,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at.checked_add(4)?).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at.checked_add(8)?).map(|s| u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]))
}

impl SymbolTable {
    /// Checks the header, that the tables fit and that the strings are UTF-8; the entries are
    /// checked as they are read. Bytes after the string area (the rest of a reserved array) are
    /// ignored.
    pub fn new(name: &str, bytes: &'static [u8]) -> Result<SymbolTable, LoadError> {
        let bad = |detail: &str| LoadError::Malformed { file: name.to_string(), detail: detail.to_string() };
        if bytes.get(..4) != Some(MAGIC.as_slice()) || u32_at(bytes, 4) != Some(VERSION) {
            return Err(bad("not a kernel symbol table (DLKS version 2)"));
        }
        let field = |i: usize| u32_at(bytes, 8 + 4 * i).map(|v| v as usize).ok_or_else(|| bad("truncated header"));
        let (sections, symbols, exports, agnostic, shadowed, strings_len) =
            (field(0)?, field(1)?, field(2)?, field(3)?, field(4)?, field(5)?);
        let bits = bucket_bits(exports);
        let buckets = (1usize << bits) + 1;
        let tables = [(sections, SECTION), (symbols, SYMBOL), (exports, EXPORT), (buckets, 4), (agnostic, ENTRY), (strings_len, 1)]
            .iter()
            .try_fold(HEADER, |acc, (n, size)| n.checked_mul(*size).and_then(|b| acc.checked_add(b)));
        let end = tables.filter(|&end| end <= bytes.len()).ok_or_else(|| bad("its tables run past its end"))?;
        let strings = core::str::from_utf8(&bytes[end - strings_len..end]).map_err(|_| bad("its strings are not UTF-8"))?;
        Ok(SymbolTable { bytes, strings, sections, symbols, exports, bits, agnostic, shadowed })
    }

    fn string(&self, at: usize) -> Option<&'static str> {
        let (off, len) = (u32_at(self.bytes, at)? as usize, u32_at(self.bytes, at + 4)? as usize);
        self.strings.get(off..off.checked_add(len)?)
    }

    fn symbols_at(&self) -> usize {
        HEADER + self.sections * SECTION
    }

    fn exports_at(&self) -> usize {
        self.symbols_at() + self.symbols * SYMBOL
    }

    fn buckets_at(&self) -> usize {
        self.exports_at() + self.exports * EXPORT
    }

    fn agnostic_at(&self) -> usize {
        self.buckets_at() + ((1usize << self.bits) + 1) * 4
    }

    /// Number of sections.
    pub fn section_count(&self) -> usize {
        self.sections
    }

    /// Number of symbols (local and global).
    pub fn symbol_count(&self) -> usize {
        self.symbols
    }

    /// Number of exported keys.
    pub fn export_count(&self) -> usize {
        self.exports
    }

    /// Exports left out because an earlier symbol had the same key.
    pub fn shadowed(&self) -> usize {
        self.shadowed
    }

    /// Section `i`.
    pub fn section(&self, i: usize) -> Option<TableSection> {
        if i >= self.sections {
            return None;
        }
        let at = HEADER + i * SECTION;
        Some(TableSection {
            addr: u64_at(self.bytes, at)?,
            size: u64_at(self.bytes, at + 8)?,
            name: self.string(at + 16)?,
            first: u32_at(self.bytes, at + 24)?,
            count: u32_at(self.bytes, at + 28)?,
            kind: kind_of(u32_at(self.bytes, at + 32)?)?,
        })
    }

    /// Symbol `i`.
    pub fn symbol(&self, i: usize) -> Option<TableSymbol> {
        if i >= self.symbols {
            return None;
        }
        let at = self.symbols_at() + i * SYMBOL;
        Some(TableSymbol {
            addr: u64_at(self.bytes, at)?,
            size: u64_at(self.bytes, at + 8)?,
            raw: self.string(at + 16)?,
            section: u32_at(self.bytes, at + 24)?,
            global: u32_at(self.bytes, at + 28)? & 1 != 0,
        })
    }

    /// Export `i` (in hash order): (exact key, symbol index).
    pub fn export(&self, i: usize) -> Option<(&'static str, u32)> {
        if i >= self.exports {
            return None;
        }
        let at = self.exports_at() + i * EXPORT;
        Some((self.string(at + 8)?, u32_at(self.bytes, at + 16)?))
    }

    /// Agnostic entry `i` in (agnostic key, exact key) order: (agnostic key, export index).
    fn agnostic_entry(&self, i: usize) -> Option<(&'static str, u32)> {
        if i >= self.agnostic {
            return None;
        }
        let at = self.agnostic_at() + i * ENTRY;
        Some((self.string(at)?, u32_at(self.bytes, at + 8)?))
    }

    /// The first index in `0..n` for which `before(i)` is false (a damaged entry counts as
    /// "not before", which keeps the search inside the table).
    fn lower_bound(n: usize, before: impl Fn(usize) -> bool) -> usize {
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if before(mid) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The exported symbol with exact key `key`.
    pub fn find_export(&self, key: &str) -> Option<TableSymbol> {
        let h = key_hash(key);
        let bucket = self.buckets_at() + top_bits(h, self.bits) as usize * 4;
        let (start, end) = (u32_at(self.bytes, bucket)? as usize, u32_at(self.bytes, bucket + 4)? as usize);
        for i in start..end.min(self.exports) {
            let at = self.exports_at() + i * EXPORT;
            if u64_at(self.bytes, at) == Some(h) && self.string(at + 8) == Some(key) {
                return self.symbol(u32_at(self.bytes, at + 16)? as usize);
            }
        }
        None
    }

    /// The exports whose hash-agnostic key is `agnostic` (exact keys in order) or, with
    /// `prefix`, starts with it (in agnostic key order).
    pub fn agnostic_matches(self, agnostic: &str, prefix: bool) -> impl Iterator<Item = (&'static str, TableSymbol)> + '_ {
        let start = Self::lower_bound(self.agnostic, |i| self.agnostic_entry(i).is_some_and(|(a, _)| a < agnostic));
        (start..self.agnostic)
            .map_while(move |i| {
                let (a, export) = self.agnostic_entry(i)?;
                let hit = if prefix { a.starts_with(agnostic) } else { a == agnostic };
                hit.then_some(export)
            })
            .filter_map(move |export| {
                let (key, sym) = self.export(export as usize)?;
                Some((key, self.symbol(sym as usize)?))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn sym(raw: &str, addr: u64, size: u64, global: bool, key: Option<&str>) -> PrelinkedSymbol {
        PrelinkedSymbol { raw: raw.into(), addr, size, global, key: key.map(Into::into) }
    }

    fn table(bytes: Vec<u8>) -> Result<SymbolTable, LoadError> {
        SymbolTable::new("test", Vec::leak(bytes))
    }

    fn sample() -> Vec<u8> {
        let sections = vec![
            PrelinkedSection { name: ".data".into(), addr: 0x3000, size: 0x100, kind: SectionKind::Data },
            PrelinkedSection { name: ".text".into(), addr: 0x1000, size: 0x1000, kind: SectionKind::Text },
        ];
        let symbols = vec![
            sym("_RNvCs1234_1a1f", 0x1010, 0x10, true, Some("a[1234]::f")),
            sym("_RNvCs5678_1a1f", 0x1020, 0x10, true, Some("a[5678]::f")),
            sym("local_fn", 0x1000, 0x10, false, None),
            sym("memcpy", 0x9000, 0x40, true, None),
            sym("memmove", 0x9000, 0x40, true, None),
            sym("COUNTER", 0x3008, 8, true, None),
            // A second definition of a key: the one at the lower address wins.
            sym("COUNTER", 0x3010, 8, true, None),
            sym("big", 0x1000, 0x20, false, None),
        ];
        build(&sections, &symbols)
    }

    #[test]
    fn lookups_answer_what_the_loader_would() {
        let t = table(sample()).unwrap();
        // .text, .data, and one `<symbol>` section shared by the aliases memcpy/memmove.
        assert_eq!(t.section_count(), 3);
        let names: Vec<&str> = (0..3).map(|i| t.section(i).unwrap().name).collect();
        assert_eq!(names, [".text", ".data", "<symbol>"]);
        let text = t.section(0).unwrap();
        assert_eq!((text.first, text.count), (0, 4));
        // At one offset the larger symbol comes first.
        assert_eq!(t.symbol(0).unwrap().raw, "big");
        assert_eq!(t.symbol(1).unwrap().raw, "local_fn");
        assert_eq!(t.find_export("a[1234]::f").unwrap().addr, 0x1010);
        assert_eq!(t.find_export("COUNTER").unwrap().addr, 0x3008);
        assert_eq!(t.shadowed(), 1);
        assert_eq!(t.find_export("local_fn"), None);
        assert_eq!(t.find_export("memmove").unwrap().section, 2);
        assert_eq!(t.find_export("zzz"), None);
        let both: Vec<&str> = t.agnostic_matches("a::f", false).map(|(k, _)| k).collect();
        assert_eq!(both, ["a[1234]::f", "a[5678]::f"]);
        let mem: Vec<&str> = t.agnostic_matches("mem", true).map(|(k, _)| k).collect();
        assert_eq!(mem, ["memcpy", "memmove"]);
        assert_eq!(t.agnostic_matches("mem", false).count(), 0);
        assert_eq!(t.export_count(), 5);
    }

    #[test]
    fn empty_truncated_and_damaged() {
        let t = table(build(&[], &[])).unwrap();
        assert_eq!((t.section_count(), t.export_count()), (0, 0));
        assert_eq!(t.find_export(""), None);
        assert!(table(b"DLKX\x01\0\0\0".to_vec()).is_err());
        let whole = sample();
        // Every truncation is refused, never read past.
        for n in 0..whole.len() {
            assert!(table(whole[..n].to_vec()).is_err(), "truncated to {n} bytes");
        }
        // Counts that run past the end are refused.
        let mut b = whole.clone();
        b[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(table(b).is_err());
        // A damaged string reference or symbol index reads as missing.
        let t0 = table(whole.clone()).unwrap();
        let mut b = whole.clone();
        let exports = t0.exports_at();
        for i in 0..t0.export_count() {
            b[exports + i * EXPORT + 16..exports + i * EXPORT + 20].copy_from_slice(&999u32.to_le_bytes());
        }
        let t = table(b).unwrap();
        assert_eq!(t.find_export("COUNTER"), None);
        let mut b = whole;
        b[HEADER + 16..HEADER + 20].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        assert_eq!(table(b).unwrap().section(0), None);
    }

    #[test]
    fn mutated_tables_never_panic() {
        let whole = sample();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..3000 {
            let mut b = whole.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() % b.len() as u64) as usize;
                b[at] = next() as u8;
            }
            let Ok(t) = table(b) else { continue };
            for i in 0..t.section_count() + 1 {
                let _ = t.section(i);
            }
            for i in 0..t.symbol_count() + 1 {
                let _ = t.symbol(i);
            }
            for i in 0..t.export_count() + 1 {
                if let Some((k, _)) = t.export(i) {
                    let _ = t.find_export(k);
                }
            }
            let _ = t.agnostic_matches("", true).count();
            let _ = t.agnostic_matches("a::f", false).count();
        }
    }
}
