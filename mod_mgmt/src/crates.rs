//! What a loaded crate and its sections look like once linked.

use crate::elf::SectionKind;
use crate::ids::{CrateId, NamespaceId, SectionId};
use crate::memory::Perms;
use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;

/// A symbol inside a loaded section (local or global), for naming addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionSymbol {
    /// Offset from the section start.
    pub offset: u64,
    /// Size (0 if unknown).
    pub size: u64,
    /// Raw (mangled) name; demangled when shown. Borrowed for nano_core's symbols, whose names
    /// lie in its prepared table ([`crate::symtab`]).
    pub raw: Cow<'static, str>,
    /// Whether it is exported to the namespace.
    pub global: bool,
    /// The demangled (hash-agnostic) name, computed on first use: backtraces name the same
    /// functions again and again, and demangling is their main cost.
    pub(crate) demangled: DemangleCache,
}

/// A lazily computed demangled name. A `spin::Once` rather than a `OnceCell` so that the loader
/// is `Sync`: read-only queries share it (nano_core's `with_loader_ref`), and one of them may
/// fill the cache. Ignored by comparisons (it is derived from `raw`).
#[derive(Debug, Default)]
pub struct DemangleCache(spin::Once<String>);

impl Clone for DemangleCache {
    fn clone(&self) -> Self {
        let c = spin::Once::new();
        if let Some(v) = self.0.get() {
            c.call_once(|| v.clone());
        }
        DemangleCache(c)
    }
}

impl PartialEq for DemangleCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for DemangleCache {}

impl SectionSymbol {
    /// A symbol at `offset`.
    pub fn new(offset: u64, size: u64, raw: impl Into<Cow<'static, str>>, global: bool) -> SectionSymbol {
        SectionSymbol { offset, size, raw: raw.into(), global, demangled: DemangleCache::default() }
    }

    /// The demangled name without crate hashes (cached).
    pub fn demangled(&self) -> &str {
        self.demangled.0.call_once(|| alloc::format!("{:#}", rustc_demangle::demangle(&self.raw)))
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

/// One permission part of a region a crate holds: `[addr, addr+size)` with `perms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// Start (page aligned).
    pub addr: u64,
    /// Size (a multiple of the page size).
    pub size: u64,
    /// Final permissions.
    pub perms: Perms,
}

/// Why a crate is no longer live: it was replaced by a swap, and its code and read-only data
/// stay mapped until nothing refers to them any more (see [`crate::swap`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retirement {
    /// The crate that replaced it.
    pub replaced_by: CrateId,
    /// The loader's generation when it was retired (orders retirements).
    pub generation: u64,
}

/// A pointer field in a section that a new version adopted from the old one (see
/// [`crate::swap`]): the old version's relocation put `old_value` there, the new version's puts
/// `new_value`. At commit the field is switched only if it still holds `old_value` (it is an
/// initializer nobody changed), because the section's memory is live state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FieldFixup {
    /// Address of the 8-byte field.
    pub place: u64,
    /// What the old version's initializer holds there.
    pub old_value: u64,
    /// What the new version's initializer holds there.
    pub new_value: u64,
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
    /// Start addresses of the loader-owned regions this crate holds (keys of the loader's
    /// region table): its own code+rodata and data regions, plus data regions adopted from the
    /// version it replaced. Empty for prelinked crates (nano_core, JIT code registered from
    /// outside), whose memory belongs to someone else.
    pub(crate) memory: Vec<u64>,
    /// The permission parts of every region it holds.
    pub(crate) parts: Vec<Part>,
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
    /// Where `load_us` went, phase by phase (all 0 without a clock).
    pub phases: LoadPhases,
    /// Whether it was registered rather than loaded (nano_core, host, JIT).
    pub prelinked: bool,
    /// Set once a swap replaced it; a retired crate is in no namespace map, but its sections
    /// stay in the address index (running code, backtraces) until it is reclaimed.
    pub retired: Option<Retirement>,
    /// Sections of this crate that live in another (older) crate's memory: (this crate's
    /// section, the section it adopted). Set by a load for a swap; consumed at commit.
    pub(crate) adopted: Vec<(SectionId, SectionId)>,
    /// Pointer fields of adopted sections to switch at commit.
    pub(crate) fixups: Vec<FieldFixup>,
    /// Hash of its code and read-only data as placed and relocated (see [`crate::integrity`]);
    /// `None` for prelinked crates.
    pub integrity: Option<u64>,
    /// A copy of its code and read-only data as sealed (see [`crate::integrity`]): what
    /// [`crate::loader::Loader::restore_code`] writes back over corrupted bytes.
    pub(crate) sealed: Option<crate::integrity::Sealed>,
}

/// Microseconds of each phase of one crate's load+link, in order; their sum is
/// [`LoadedCrate::load_us`] up to the clock's rounding. Crates loaded on demand while resolving
/// count for themselves, not in `resolve_us`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadPhases {
    /// The object check (the kernel: its SHA-512 against the signed manifest).
    pub check_us: u64,
    /// ELF parsing and validation.
    pub parse_us: u64,
    /// The layout, the allocation and copying the sections in.
    pub place_us: u64,
    /// Recording the crate, its sections and symbols (the symbol map, the address index).
    pub register_us: u64,
    /// Looking up its undefined symbols.
    pub resolve_us: u64,
    /// Applying relocations, recording dependencies, setting permissions and sealing the code.
    pub relocate_us: u64,
}

impl LoadedCrate {
    /// Notes section `id` named `name` if the unwinder needs it (`.eh_frame` for CFI,
    /// `.gcc_except_table*` for landing pads).
    pub(crate) fn note_unwind_section(&mut self, name: &str, id: SectionId) {
        if name == ".eh_frame" {
            self.eh_frame.push(id);
        } else if name.starts_with(".gcc_except_table") {
            self.gcc_except_table.push(id);
        }
    }

    /// A crate record with nothing placed yet.
    pub(crate) fn empty(id: CrateId, name: &str, file: &str, namespace: NamespaceId, prelinked: bool) -> LoadedCrate {
        LoadedCrate {
            id,
            name: String::from(name),
            file: String::from(file),
            namespace,
            sections: Vec::new(),
            memory: Vec::new(),
            parts: Vec::new(),
            exported: Vec::new(),
            shadowed: 0,
            eh_frame: Vec::new(),
            gcc_except_table: Vec::new(),
            relocations: 0,
            load_us: 0,
            phases: LoadPhases::default(),
            prelinked,
            retired: None,
            adopted: Vec::new(),
            fixups: Vec::new(),
            integrity: None,
            sealed: None,
        }
    }

    /// The memory regions with their permissions, as (address, size, perms).
    pub fn regions(&self) -> impl Iterator<Item = (u64, usize, Perms)> + '_ {
        self.parts.iter().map(|p| (p.addr, p.size as usize, p.perms))
    }

    /// Bytes of memory held (shared data regions count for every holder).
    pub fn memory_size(&self) -> usize {
        self.parts.iter().map(|p| p.size as usize).sum()
    }

    /// Whether a swap replaced it (its memory stays until nothing refers to it).
    pub fn is_retired(&self) -> bool {
        self.retired.is_some()
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
