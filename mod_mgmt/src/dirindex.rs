//! The load-on-demand index of a namespace's directory, prepared at image build time.
//!
//! Loading on demand asks "which object file of this directory defines the global `raw`?".
//! Answered at run time, that means parsing the symbol table of every object in the directory
//! and inserting each global into a map: for the kernel namespace, 5,000 globals of 70 objects,
//! two allocations each, before the first on-demand load can go on (15 ms of every boot on TCG).
//! `imgtool` answers it once with [`build`] and puts the table into the signed image; the kernel
//! uses it where it lies ([`PrebuiltIndex`]): a binary search over sorted names, no parsing, no
//! allocation.
//!
//! The table holds a 64-bit hash of each name, not the name: the kernel's index would otherwise
//! be 650 KiB of mangled names, and every byte of the image is hashed against the signed
//! manifest before use (about 10 ms per MiB on TCG). With 5,000 names a collision between two
//! 64-bit FNV-1a hashes has a chance of about 1 in 10^12; if one happened, the loader would load
//! the other file, find the symbol still missing and report it unresolved — nothing wrong gets
//! linked. The hash-agnostic fallback needs names, so it is built from the objects, as before.
//!
//! Format (little-endian):
//!
//! ```text
//! "DLIX" version=2 (u32) file_count (u32) symbol_count (u32)
//! file_count   × (offset u32, length u32)   file names in the string area
//! symbol_count × (hash u64, file u32)        sorted by hash
//! string area
//! ```
//!
//! Offsets count from the start of the string area. Every access is bounds-checked, so a
//! damaged table answers "not found" (and the load reports the missing symbol) instead of
//! reading outside its bytes.

use crate::error::LoadError;
use crate::namespace::ObjectBytes;
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

const MAGIC: &[u8; 4] = b"DLIX";
const VERSION: u32 = 2;
const SYMBOL: usize = 12;
const HEADER: usize = 16;

/// The hash of a symbol name in the index (FNV-1a, 64 bits).
pub fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Writes the index of a directory: `files` in the directory's order (by file name), each with
/// the globals it defines. The first file defining a name wins, as in the index built at run
/// time.
pub fn build<'a>(files: impl IntoIterator<Item = (&'a str, Vec<&'a str>)>) -> Vec<u8> {
    let mut names: Vec<&str> = Vec::new();
    let mut first: BTreeMap<&str, u32> = BTreeMap::new();
    for (i, (file, globals)) in files.into_iter().enumerate() {
        names.push(file);
        for g in globals {
            first.entry(g).or_insert(i as u32);
        }
    }
    let mut strings: Vec<u8> = Vec::new();
    let files: Vec<(u32, u32)> = names
        .iter()
        .map(|n| {
            let at = strings.len() as u32;
            strings.extend_from_slice(n.as_bytes());
            (at, n.len() as u32)
        })
        .collect();
    let mut symbols: Vec<(u64, u32)> = first.iter().map(|(g, f)| (name_hash(g), *f)).collect();
    symbols.sort_unstable();
    let mut out = Vec::with_capacity(HEADER + files.len() * 8 + symbols.len() * SYMBOL + strings.len());
    out.extend_from_slice(MAGIC);
    for v in [VERSION, files.len() as u32, symbols.len() as u32] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for (o, l) in files {
        out.extend_from_slice(&o.to_le_bytes());
        out.extend_from_slice(&l.to_le_bytes());
    }
    for (h, f) in symbols {
        out.extend_from_slice(&h.to_le_bytes());
        out.extend_from_slice(&f.to_le_bytes());
    }
    out.extend_from_slice(&strings);
    out
}

/// A directory index used in place (see the module docs).
#[derive(Debug, Clone)]
pub struct PrebuiltIndex {
    bytes: ObjectBytes,
    files: usize,
    symbols: usize,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

impl PrebuiltIndex {
    /// Checks the header and that the tables fit; the entries are checked as they are read.
    pub fn new(name: &str, bytes: ObjectBytes) -> Result<PrebuiltIndex, LoadError> {
        let bad = |detail: &str| LoadError::Malformed { file: name.to_string(), detail: detail.to_string() };
        if bytes.get(..4) != Some(MAGIC.as_slice()) || u32_at(&bytes, 4) != Some(VERSION) {
            return Err(bad("not a directory index (DLIX version 2)"));
        }
        let files = u32_at(&bytes, 8).ok_or_else(|| bad("truncated header"))? as usize;
        let symbols = u32_at(&bytes, 12).ok_or_else(|| bad("truncated header"))? as usize;
        let tables = files.checked_mul(8).and_then(|f| symbols.checked_mul(SYMBOL).and_then(|s| f.checked_add(s)));
        if tables.and_then(|t| t.checked_add(HEADER)).is_none_or(|end| end > bytes.len()) {
            return Err(bad("its tables run past its end"));
        }
        Ok(PrebuiltIndex { bytes, files, symbols })
    }

    fn strings(&self) -> &[u8] {
        &self.bytes[HEADER + self.files * 8 + self.symbols * SYMBOL..]
    }

    fn string(&self, offset: u32, len: u32) -> Option<&str> {
        let s = self.strings().get(offset as usize..(offset as usize).checked_add(len as usize)?)?;
        core::str::from_utf8(s).ok()
    }

    /// File `i` of the directory (in the directory's order), if there is one.
    pub fn file_name(&self, i: usize) -> Option<&str> {
        u32::try_from(i).ok().and_then(|i| self.file(i))
    }

    fn file(&self, i: u32) -> Option<&str> {
        if i as usize >= self.files {
            return None;
        }
        let at = HEADER + i as usize * 8;
        self.string(u32_at(&self.bytes, at)?, u32_at(&self.bytes, at + 4)?)
    }

    /// Entry `i` in hash order: (hash, file index).
    fn symbol(&self, i: usize) -> Option<(u64, u32)> {
        let at = HEADER + self.files * 8 + i * SYMBOL;
        let h = self.bytes.get(at..at + 8)?;
        Some((u64::from_le_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]), u32_at(&self.bytes, at + 8)?))
    }

    /// The file defining global `raw`, if any.
    pub fn lookup(&self, raw: &str) -> Option<&str> {
        let want = name_hash(raw);
        let (mut lo, mut hi) = (0, self.symbols);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (h, file) = self.symbol(mid)?;
            match h.cmp(&want) {
                core::cmp::Ordering::Less => lo = mid + 1,
                core::cmp::Ordering::Greater => hi = mid,
                core::cmp::Ordering::Equal => return self.file(file),
            }
        }
        None
    }

    /// Number of globals indexed.
    pub fn len(&self) -> usize {
        self.symbols
    }

    /// Whether it indexes nothing.
    pub fn is_empty(&self) -> bool {
        self.symbols == 0
    }
}

/// The raw-name half of a directory index: prepared at build time, or built from the objects.
#[derive(Debug)]
pub(crate) enum RawIndex {
    /// Built at run time from the directory's objects.
    Built(BTreeMap<String, String>),
    /// Prepared by `imgtool`, used in place.
    Prebuilt(PrebuiltIndex),
}

impl RawIndex {
    pub(crate) fn get(&self, raw: &str) -> Option<String> {
        match self {
            RawIndex::Built(m) => m.get(raw).cloned(),
            RawIndex::Prebuilt(p) => p.lookup(raw).map(str::to_string),
        }
    }

    /// Every (global, file), for the hash-agnostic fallback: from the names a built index
    /// holds, or else from the directory's objects (a prebuilt index holds hashes only).
    pub(crate) fn for_each(&self, dir: &BTreeMap<String, ObjectBytes>, f: &mut dyn FnMut(&str, &str)) {
        match self {
            RawIndex::Built(m) => m.iter().for_each(|(g, file)| f(g, file)),
            RawIndex::Prebuilt(_) => {
                for (file, bytes) in dir {
                    for g in crate::elf::defined_globals(file, bytes).unwrap_or_default() {
                        f(g, file);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn index(bytes: Vec<u8>) -> Result<PrebuiltIndex, LoadError> {
        PrebuiltIndex::new("test", ObjectBytes::from(bytes))
    }

    #[test]
    fn first_file_wins_and_lookups_find_every_name() {
        let b = build(vec![("a.o", vec!["x", "shared", "_ZN4core3fmt5write17h0123E"]), ("b.o", vec!["shared", "y", "z"])]);
        let ix = index(b).unwrap();
        assert_eq!(ix.len(), 5);
        assert_eq!(ix.lookup("shared"), Some("a.o"));
        assert_eq!(ix.lookup("y"), Some("b.o"));
        assert_eq!(ix.lookup("_ZN4core3fmt5write17h0123E"), Some("a.o"));
        assert_eq!(ix.lookup("nope"), None);
        assert_eq!(ix.lookup(""), None);
    }

    #[test]
    fn empty_and_malformed() {
        assert!(index(build(vec![])).unwrap().is_empty());
        assert!(index(b"DLIY\x01\0\0\0\0\0\0\0\0\0\0\0".to_vec()).is_err());
        assert!(index(b"DLIX\x01\0\0\0".to_vec()).is_err());
        // Says it has 1,000 symbols but has none: refused, not read past its end.
        let mut b = build(vec![("a.o", vec!["x"])]);
        b[12..16].copy_from_slice(&1000u32.to_le_bytes());
        assert!(index(b).is_err());
        // A damaged entry (a file number past the files) reads as "not there".
        let mut b = build(vec![("a.o", vec!["x"])]);
        let file = HEADER + 8 + 8;
        b[file..file + 4].copy_from_slice(&9999u32.to_le_bytes());
        let ix = index(b).unwrap();
        assert_eq!(ix.lookup("x"), None);
    }
}
