//! What a loaded crate and its sections look like once linked.

use crate::elf::SectionKind;
use crate::ids::{CrateId, NamespaceId, SectionId};
use crate::memory::{Perms, Region};
use alloc::string::String;
use alloc::vec::Vec;

/// A symbol inside a loaded section (local or global), for naming addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionSymbol {
    /// Offset from the section start.
    pub offset: u64,
    /// Size (0 if unknown).
    pub size: u64,
    /// Raw (mangled) name; demangled when shown.
    pub raw: String,
    /// Whether it is exported to the namespace.
    pub global: bool,
    /// The demangled (hash-agnostic) name, computed on first use: backtraces name the same
    /// functions again and again, and demangling is their main cost.
    pub(crate) demangled: core::cell::OnceCell<String>,
}

impl SectionSymbol {
    /// A symbol at `offset`.
    pub fn new(offset: u64, size: u64, raw: String, global: bool) -> SectionSymbol {
        SectionSymbol { offset, size, raw, global, demangled: core::cell::OnceCell::new() }
    }

    /// The demangled name without crate hashes (cached).
    pub fn demangled(&self) -> &str {
        self.demangled.get_or_init(|| alloc::format!("{:#}", rustc_demangle::demangle(&self.raw)))
    }
}

/// A section placed in memory (or, for TLS sections, in the TLS image).
#[derive(Debug, Clone)]
pub struct LoadedSection {
    /// Its id.
    pub id: SectionId,
    /// The crate it belongs to.
    pub krate: CrateId,
    /// Section name from the object (`.ltext._RNv...`).
    pub name: String,
    /// What it holds.
    pub kind: SectionKind,
    /// Start address; for TLS sections the thread-pointer offset as two's complement.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// Symbols defined in it, sorted by offset.
    pub symbols: Vec<SectionSymbol>,
}

impl LoadedSection {
    /// The symbol covering `offset` (the last one starting at or before it), with the offset
    /// into that symbol.
    pub fn symbol_at(&self, offset: u64) -> Option<(&SectionSymbol, u64)> {
        let i = self.symbols.partition_point(|s| s.offset <= offset);
        let s = self.symbols.get(i.checked_sub(1)?)?;
        Some((s, offset - s.offset))
    }

    /// The thread-pointer offset of a TLS section.
    pub fn tls_offset(&self) -> Option<i64> {
        self.kind.is_tls().then_some(self.addr as i64)
    }
}

/// A crate linked into a namespace.
#[derive(Debug)]
pub struct LoadedCrate {
    /// Its id.
    pub id: CrateId,
    /// Crate name (file name without `-<hash>.o`).
    pub name: String,
    /// Object file name it came from (or a label for prelinked crates).
    pub file: String,
    /// Namespace it lives in.
    pub namespace: NamespaceId,
    /// Its sections.
    pub sections: Vec<SectionId>,
    /// Memory the loader owns for it. `None` for prelinked crates (nano_core, JIT code
    /// registered from outside), whose memory belongs to someone else.
    pub(crate) memory: Option<Region>,
    /// The page-aligned parts of `memory` with their final permissions: (address, size, perms).
    pub(crate) parts: Vec<(u64, u64, Perms)>,
    /// Exact keys this crate put into the namespace's symbol map.
    pub exported: Vec<String>,
    /// Global symbols that were already defined in the namespace (first definition wins).
    pub shadowed: usize,
    /// `.eh_frame` sections, for the unwinder.
    pub eh_frame: Vec<SectionId>,
    /// `.gcc_except_table*` sections (language-specific data areas), for the unwinder.
    pub gcc_except_table: Vec<SectionId>,
    /// Relocations applied when it was linked.
    pub relocations: usize,
    /// Microseconds its own load+link took (excluding crates loaded on demand for it); 0 if the
    /// loader has no clock.
    pub load_us: u64,
    /// Whether it was registered rather than loaded (nano_core, host, JIT).
    pub prelinked: bool,
}

impl LoadedCrate {
    /// A crate record with nothing placed yet.
    pub(crate) fn empty(id: CrateId, name: &str, file: &str, namespace: NamespaceId, prelinked: bool) -> LoadedCrate {
        LoadedCrate {
            id,
            name: String::from(name),
            file: String::from(file),
            namespace,
            sections: Vec::new(),
            memory: None,
            parts: Vec::new(),
            exported: Vec::new(),
            shadowed: 0,
            eh_frame: Vec::new(),
            gcc_except_table: Vec::new(),
            relocations: 0,
            load_us: 0,
            prelinked,
        }
    }

    /// The memory regions with their permissions, as (address, size, perms).
    pub fn regions(&self) -> impl Iterator<Item = (u64, usize, Perms)> + '_ {
        self.parts.iter().map(|&(a, s, p)| (a, s as usize, p))
    }

    /// Bytes of memory owned.
    pub fn memory_size(&self) -> usize {
        self.memory.as_ref().map_or(0, |r| r.size())
    }
}

/// Sections by id. A B-tree: O(log n) access, and memory that follows the number of live
/// sections exactly — a hash table's tombstones made its memory grow once after a few hundred
/// swap cycles, which the leak check (1,000 swap/swap-back cycles end with the heap usage of the
/// first) must not see.
#[derive(Debug, Default)]
pub(crate) struct SectionTable {
    map: alloc::collections::BTreeMap<SectionId, LoadedSection>,
}

impl SectionTable {
    pub(crate) fn get(&self, id: &SectionId) -> Option<&LoadedSection> {
        self.map.get(id)
    }

    pub(crate) fn insert(&mut self, id: SectionId, s: LoadedSection) {
        self.map.insert(id, s);
    }

    pub(crate) fn remove(&mut self, id: &SectionId) -> Option<LoadedSection> {
        self.map.remove(id)
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}
