//! The linker: loading an object into a namespace, resolving its symbols, relocating it, and
//! unloading it again.
//!
//! A load is a transaction. The crate's sections are placed and its symbols registered
//! *before* its relocations are resolved, so that crates loaded on demand while resolving can
//! refer back to it (core and compiler_builtins need each other). Every crate loaded during one
//! top-level [`Loader::load`] is recorded; if anything fails, all of them are unloaded again in
//! reverse order and their memory is freed, so a failed load leaves the namespaces exactly as
//! they were.

use crate::crates::{LoadedCrate, LoadedSection, SectionSymbol, SectionTable};
use crate::deps::{DepGraph, RelocRecord};
use crate::elf::{self, ObjectFile, SectionKind, SymDef, SymKind};
use crate::error::LoadError;
use crate::ids::{CrateId, NamespaceId, SectionId};
use crate::index::AddressIndex;
use crate::memory::{MemoryProvider, Perms, Region};
use crate::namespace::{CrateNamespace, DirIndex, ObjectBytes, crate_name_of};
use crate::reloc::{self, RelocKind, WriteError};
use crate::symbols::{Lookup, SymbolRef, agnostic_key, agnostic_of_exact, exact_key};
use crate::tls::TlsImage;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// Largest total memory one crate may ask for.
pub const MAX_CRATE_MEMORY: u64 = 1 << 30;
/// Most unresolved symbols listed in one error.
const MAX_LISTED: usize = 32;

/// Counters for one load (including crates loaded on demand for it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadStats {
    /// Crates loaded.
    pub crates: usize,
    /// Sections placed.
    pub sections: usize,
    /// Symbols exported to namespaces.
    pub symbols: usize,
    /// Relocations applied.
    pub relocations: usize,
    /// Bytes of memory mapped.
    pub bytes: usize,
}

/// A section of a crate whose memory the loader does not own (nano_core, JIT code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrelinkedSection {
    /// Name.
    pub name: String,
    /// Start address.
    pub addr: u64,
    /// Size.
    pub size: u64,
    /// Kind.
    pub kind: SectionKind,
}

/// A symbol of a prelinked crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrelinkedSymbol {
    /// Raw name (mangled, or a plain name).
    pub raw: String,
    /// Address.
    pub addr: u64,
    /// Size.
    pub size: u64,
    /// Whether other crates may link to it.
    pub global: bool,
    /// Its symbol map key if already known (`exact_key(raw)`; the build computes it for
    /// nano_core's symbols). `None`: the loader demangles `raw`.
    pub key: Option<String>,
}

/// All namespaces, crates and sections, the address index and the dependency graph.
pub struct Loader {
    pub(crate) memory: &'static dyn MemoryProvider,
    pub(crate) namespaces: Vec<CrateNamespace>,
    pub(crate) crates: BTreeMap<CrateId, LoadedCrate>,
    pub(crate) sections: SectionTable,
    pub(crate) index: AddressIndex,
    pub(crate) deps: DepGraph,
    pub(crate) tls: TlsImage,
    pub(crate) next_crate: u32,
    next_section: u32,
    last: LoadStats,
    load_hook: Option<fn(&Loader, CrateId)>,
    clock: Option<fn() -> u64>,
    /// Microseconds spent in nested (on-demand) loads during the current load, so each crate's
    /// own time excludes its dependencies'.
    nested_us: u64,
    /// Bumped by every change to the set of loaded crates (swap uses it to detect staleness).
    pub(crate) generation: u64,
}

/// Where one section goes during a load.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// Region index and offset in it.
    Mem { region: usize, offset: u64 },
    /// Thread-pointer offset.
    Tls(i64),
}

/// A resolved relocation target.
#[derive(Debug, Clone, Copy)]
struct Target {
    value: i128,
    tls: bool,
    section: Option<SectionId>,
}

/// Frees the region unless it was taken.
struct RegionGuard<'m> {
    memory: &'m dyn MemoryProvider,
    region: Option<Region>,
}

impl Drop for RegionGuard<'_> {
    fn drop(&mut self) {
        if let Some(r) = self.region.take() {
            self.memory.free(r);
        }
    }
}

/// Page size used to separate a crate's parts, so each can get its own permissions.
pub const PAGE_SIZE: u64 = 4096;

const REGION_PERMS: [Perms; 3] = [Perms::ReadExec, Perms::Read, Perms::ReadWrite];

fn region_of(kind: SectionKind) -> usize {
    match kind {
        SectionKind::Text => 0,
        SectionKind::Rodata => 1,
        _ => 2,
    }
}

impl Loader {
    /// A loader with no namespaces, taking memory from `memory`.
    pub fn new(memory: &'static dyn MemoryProvider) -> Loader {
        Loader {
            memory,
            namespaces: Vec::new(),
            crates: BTreeMap::new(),
            sections: SectionTable::default(),
            index: AddressIndex::default(),
            deps: DepGraph::default(),
            tls: TlsImage::default(),
            next_crate: 0,
            next_section: 0,
            last: LoadStats::default(),
            load_hook: None,
            clock: None,
            nested_us: 0,
            generation: 0,
        }
    }

    /// Creates a namespace; `parent` is where lookups continue.
    pub fn add_namespace(&mut self, name: &str, parent: Option<NamespaceId>) -> Result<NamespaceId, LoadError> {
        if let Some(p) = parent {
            self.ns(p)?;
        }
        let id = NamespaceId(self.namespaces.len() as u32);
        self.namespaces.push(CrateNamespace {
            id,
            name: name.to_string(),
            parent,
            symbols: Default::default(),
            crates: BTreeMap::new(),
            dir: BTreeMap::new(),
            updates: BTreeMap::new(),
            dir_index: None,
        });
        Ok(id)
    }

    /// Adds (or replaces) an object file in a namespace's directory.
    pub fn add_object_file(&mut self, ns: NamespaceId, file: &str, bytes: ObjectBytes) -> Result<(), LoadError> {
        let n = self.ns_mut(ns)?;
        n.dir.insert(file.to_string(), bytes);
        n.dir_index = None;
        Ok(())
    }

    /// Adds (or replaces) an object file in a namespace's updates: new versions of crates, used
    /// by `swap` only (never for loading on demand).
    pub fn add_update_file(&mut self, ns: NamespaceId, file: &str, bytes: ObjectBytes) -> Result<(), LoadError> {
        self.ns_mut(ns)?.updates.insert(file.to_string(), bytes);
        Ok(())
    }

    /// Loads the object `file` from the namespace's directory.
    pub fn load_from_dir(&mut self, ns: NamespaceId, file: &str) -> Result<CrateId, LoadError> {
        let n = self.ns(ns)?;
        let bytes = n.dir.get(file).cloned().ok_or_else(|| LoadError::NoSuchFile { file: file.to_string(), namespace: n.name.clone() })?;
        self.load(ns, file, bytes)
    }

    /// Loads and links one object into `ns` (loading others on demand from the directories of
    /// `ns` and its parents). On error nothing changes.
    pub fn load(&mut self, ns: NamespaceId, file: &str, bytes: ObjectBytes) -> Result<CrateId, LoadError> {
        self.ns(ns)?;
        let mut txn = Vec::new();
        self.last = LoadStats::default();
        self.generation += 1;
        match self.load_inner(ns, file, bytes, &mut txn) {
            Ok(id) => {
                if let Some(hook) = self.load_hook {
                    for c in &txn {
                        hook(self, *c);
                    }
                }
                Ok(id)
            }
            Err(e) => {
                for c in txn.into_iter().rev() {
                    self.remove_crate(c);
                }
                self.last = LoadStats::default();
                Err(e)
            }
        }
    }

    /// Registers a function called for every crate a successful [`Loader::load`] linked (the
    /// kernel uses it to print debugger commands).
    pub fn set_load_hook(&mut self, hook: fn(&Loader, CrateId)) {
        self.load_hook = Some(hook);
    }

    /// Gives the loader a microsecond clock, so each crate records its own load+link time
    /// ([`LoadedCrate::load_us`]). mod_mgmt has no clock of its own (it runs on bare metal).
    pub fn set_clock(&mut self, clock: fn() -> u64) {
        self.clock = Some(clock);
    }

    pub(crate) fn now(&self) -> u64 {
        self.clock.map_or(0, |c| c())
    }

    /// Counters of the last successful [`Loader::load`].
    pub fn last_load_stats(&self) -> LoadStats {
        self.last
    }

    pub(crate) fn ns(&self, ns: NamespaceId) -> Result<&CrateNamespace, LoadError> {
        self.namespaces.get(ns.0 as usize).ok_or_else(|| LoadError::NoSuchNamespace(format!("#{}", ns.0)))
    }

    pub(crate) fn ns_mut(&mut self, ns: NamespaceId) -> Result<&mut CrateNamespace, LoadError> {
        self.namespaces.get_mut(ns.0 as usize).ok_or_else(|| LoadError::NoSuchNamespace(format!("#{}", ns.0)))
    }

    /// `ns` and its ancestors, nearest first.
    pub(crate) fn chain(&self, ns: NamespaceId) -> Vec<NamespaceId> {
        let mut out = Vec::new();
        let mut cur = Some(ns);
        while let Some(c) = cur {
            if out.contains(&c) {
                break;
            }
            out.push(c);
            cur = self.namespaces.get(c.0 as usize).and_then(|n| n.parent);
        }
        out
    }

    fn load_inner(&mut self, ns: NamespaceId, file: &str, bytes: ObjectBytes, txn: &mut Vec<CrateId>) -> Result<CrateId, LoadError> {
        let t0 = self.now();
        let nested_before = core::mem::take(&mut self.nested_us);
        let r = self.load_timed(ns, file, bytes, txn);
        let total = self.now().saturating_sub(t0);
        let own = total.saturating_sub(self.nested_us);
        if let Ok(id) = &r
            && let Some(k) = self.crates.get_mut(id)
        {
            k.load_us = own;
        }
        self.nested_us = nested_before + total;
        r
    }

    fn load_timed(&mut self, ns: NamespaceId, file: &str, bytes: ObjectBytes, txn: &mut Vec<CrateId>) -> Result<CrateId, LoadError> {
        let obj = elf::parse(file, &bytes)?;
        let mut name = crate_name_of(file).to_string();
        let nsr = self.ns(ns)?;
        if let Some(other) = nsr.crates.get(&name) {
            // Two versions of one crates.io crate (say gimli 0.32 for the unwinder and 0.33 for
            // Cranelift) have one crate name and different hashes: the second is named after its
            // file. The same file twice is an error.
            let same_file = self.crates.get(other).is_some_and(|k| k.file == file);
            let stem = file.strip_suffix(".o").unwrap_or(file).to_string();
            if same_file || nsr.crates.contains_key(&stem) || stem == name {
                return Err(LoadError::AlreadyLoaded { name, namespace: nsr.name.clone() });
            }
            name = stem;
        }

        // Layout: one region per crate with three page-aligned parts (text, rodata, data+bss),
        // so one allocation serves the crate and each part gets its own permissions; TLS
        // sections go into the TLS image.
        let mut places: Vec<Option<Place>> = alloc::vec![None; obj.sections.len()];
        let mut sizes = [0u64; 3];
        let mut tls_plan = Vec::new();
        let mut tls_total = self.tls.total();
        for (i, s) in obj.sections.iter().enumerate() {
            let Some(kind) = s.kind else { continue };
            if kind.is_tls() {
                let (off, total) = self.tls.plan(tls_total, s.size, s.align).ok_or_else(|| LoadError::TooLarge {
                    file: file.to_string(),
                    what: "TLS image".into(),
                    size: tls_total.saturating_add(s.size),
                    limit: i64::MAX as u64,
                })?;
                tls_total = total;
                places[i] = Some(Place::Tls(off));
                tls_plan.push(i);
                continue;
            }
            let r = region_of(kind);
            let off = sizes[r].checked_add(s.align - 1).map(|v| v & !(s.align - 1));
            // `.eh_frame` gets four zero bytes after it: the zero-length terminator an unwinder
            // looks for (relocatable objects leave it to the final link).
            let extra = if s.name == ".eh_frame" { 4 } else { 0 };
            let end = off.and_then(|o| o.checked_add(s.size + extra));
            match (off, end) {
                (Some(o), Some(e)) if e <= MAX_CRATE_MEMORY => {
                    places[i] = Some(Place::Mem { region: r, offset: o });
                    sizes[r] = e;
                }
                _ => {
                    return Err(LoadError::TooLarge {
                        file: file.to_string(),
                        what: "crate memory".into(),
                        size: u64::MAX,
                        limit: MAX_CRATE_MEMORY,
                    });
                }
            }
        }
        let mut part_off = [0u64; 3];
        let mut total = 0u64;
        for p in 0..3 {
            part_off[p] = total;
            total += sizes[p].div_ceil(PAGE_SIZE) * PAGE_SIZE;
        }
        if total > MAX_CRATE_MEMORY {
            return Err(LoadError::TooLarge { file: file.to_string(), what: "crate memory".into(), size: total, limit: MAX_CRATE_MEMORY });
        }

        // Allocate and fill.
        let mut guard =
            RegionGuard { memory: self.memory, region: if total == 0 { None } else { Some(self.memory.allocate(total as usize)?) } };
        if let Some(r) = guard.region.as_mut() {
            // SAFETY: the region was just allocated read-write and nothing else refers to it.
            let bytes = unsafe { r.bytes_mut() };
            for (i, s) in obj.sections.iter().enumerate() {
                if let Some(Place::Mem { region, offset }) = places[i]
                    && !s.data.is_empty()
                {
                    let at = (part_off[region] + offset) as usize;
                    bytes[at..at + s.data.len()].copy_from_slice(s.data);
                }
            }
        }
        let base = guard.region.as_ref().map_or(0, |r| r.addr());
        let bases: [u64; 3] = core::array::from_fn(|p| base + part_off[p]);
        let addr_of = |i: usize| -> Option<(u64, bool)> {
            match places.get(i).copied().flatten()? {
                Place::Mem { region, offset } => Some((bases[region] + offset, false)),
                Place::Tls(off) => Some((off as u64, true)),
            }
        };

        // Register the crate, its sections and symbols before relocating (see module docs).
        let crate_id = CrateId(self.next_crate);
        self.next_crate += 1;
        let mut sec_ids: Vec<Option<SectionId>> = alloc::vec![None; obj.sections.len()];
        let mut krate = LoadedCrate::empty(crate_id, &name, file, ns, false);
        let mut new_sections = Vec::new();
        // Position in `new_sections` of each ELF section.
        let mut pos = alloc::vec![usize::MAX; obj.sections.len()];
        for (i, s) in obj.sections.iter().enumerate() {
            let (Some(kind), Some((addr, _))) = (s.kind, addr_of(i)) else { continue };
            pos[i] = new_sections.len();
            let id = SectionId(self.next_section);
            self.next_section += 1;
            sec_ids[i] = Some(id);
            krate.sections.push(id);
            if s.name == ".eh_frame" {
                krate.eh_frame.push(id);
            } else if s.name.starts_with(".gcc_except_table") {
                krate.gcc_except_table.push(id);
            }
            new_sections.push(LoadedSection {
                id,
                krate: crate_id,
                name: s.name.to_string(),
                kind,
                addr,
                size: s.size,
                symbols: Vec::new(),
            });
        }
        let mut exports = Vec::new();
        for (si, sym) in obj.symbols.iter().enumerate() {
            let SymDef::Section(k) = sym.def else { continue };
            if sym.name.is_empty() || matches!(sym.kind, SymKind::Section) {
                continue;
            }
            let Some(sec) = new_sections.get_mut(pos[k]) else { continue };
            let id = sec.id;
            if sym.value > sec.size {
                return Err(LoadError::BadSymbol {
                    file: file.to_string(),
                    index: si,
                    name: sym.name.to_string(),
                    detail: "value beyond its section",
                });
            }
            sec.symbols.push(SectionSymbol::new(sym.value, sym.size, sym.name.to_string(), sym.global));
            if sym.global {
                let tls = sec.kind.is_tls();
                let addr = if tls { (sec.addr as i64).wrapping_add(sym.value as i64) as u64 } else { sec.addr + sym.value };
                exports.push((exact_key(sym.name), SymbolRef { addr, size: sym.size, section: id, krate: crate_id, tls }));
            }
        }
        for s in &mut new_sections {
            s.symbols.sort_by(|a, b| a.offset.cmp(&b.offset).then(b.size.cmp(&a.size)));
        }
        let mut stats = LoadStats { crates: 1, sections: new_sections.len(), bytes: total as usize, ..Default::default() };
        let ranges = new_sections.iter().filter(|s| !s.kind.is_tls()).map(|s| (s.addr, s.size, s.id)).collect();
        if !self.index.insert_batch(ranges) {
            // Cannot happen for freshly allocated memory unless the provider hands out
            // overlapping regions; refuse rather than corrupt the index.
            return Err(LoadError::Malformed { file: file.to_string(), detail: "memory provider returned overlapping memory".into() });
        }
        for s in new_sections {
            self.sections.insert(s.id, s);
        }
        for &i in &tls_plan {
            let s = &obj.sections[i];
            if let Some(id) = sec_ids[i] {
                self.tls.place(id, s.size, s.align, s.data);
            }
        }
        {
            let n = &mut self.namespaces[ns.0 as usize];
            for (key, r) in exports {
                if n.symbols.insert(key.clone(), r) {
                    krate.exported.push(key);
                    stats.symbols += 1;
                } else {
                    krate.shadowed += 1;
                }
            }
            n.crates.insert(name.clone(), crate_id);
        }
        krate.parts =
            (0..3).filter(|&p| sizes[p] > 0).map(|p| (bases[p], sizes[p].div_ceil(PAGE_SIZE) * PAGE_SIZE, REGION_PERMS[p])).collect();
        krate.memory = guard.region.take();
        drop(guard);
        self.crates.insert(crate_id, krate);
        txn.push(crate_id);

        // Resolve every undefined symbol that a loaded section's relocation uses.
        let mut resolved: BTreeMap<usize, Target> = BTreeMap::new();
        let mut missing = BTreeSet::new();
        for (t, rels) in obj.relocs.iter().enumerate() {
            if sec_ids[t].is_none() {
                continue;
            }
            for r in rels {
                let sym = &obj.symbols[r.sym];
                if sym.def != SymDef::Undefined || resolved.contains_key(&r.sym) || r.r_type == 0 {
                    continue;
                }
                if sym.name.is_empty() {
                    return Err(bad_reloc(&obj, t, r.offset, "relocation against the null symbol"));
                }
                match self.resolve(ns, sym.name, txn)? {
                    Some(s) => {
                        let value = if s.tls { i128::from(s.addr as i64) } else { i128::from(s.addr) };
                        resolved.insert(r.sym, Target { value, tls: s.tls, section: Some(s.section) });
                    }
                    None => {
                        if missing.len() < MAX_LISTED {
                            missing.insert(agnostic_key(sym.name));
                        }
                    }
                }
            }
        }
        if !missing.is_empty() {
            return Err(LoadError::Unresolved { needed_by: name, symbols: missing.into_iter().collect() });
        }

        // Relocate, recording cross-crate dependencies.
        let k = self.crates.get_mut(&crate_id).expect("just inserted");
        let mut memory = k.memory.take();
        let parts = k.parts.clone();
        let result = match memory.as_mut() {
            // SAFETY: the region is still read-write (protected only below) and this is the
            // only reference to its bytes.
            Some(r) => self.relocate(&obj, crate_id, &places, &sec_ids, &bases, unsafe { r.bytes_mut() }, base, &resolved, &mut stats),
            None => Ok(()),
        };
        let protect = result.and_then(|()| {
            if let Some(r) = &memory {
                for (addr, len, p) in &parts {
                    self.memory.protect(r, (addr - base) as usize, *len as usize, *p)?;
                }
            }
            Ok(())
        });
        let k = self.crates.get_mut(&crate_id).expect("just inserted");
        k.memory = memory;
        k.relocations = stats.relocations;
        protect?;
        self.last.crates += stats.crates;
        self.last.sections += stats.sections;
        self.last.symbols += stats.symbols;
        self.last.relocations += stats.relocations;
        self.last.bytes += stats.bytes;
        Ok(crate_id)
    }

    #[allow(clippy::too_many_arguments)]
    fn relocate(
        &mut self,
        obj: &ObjectFile<'_>,
        crate_id: CrateId,
        places: &[Option<Place>],
        sec_ids: &[Option<SectionId>],
        bases: &[u64; 3],
        bytes: &mut [u8],
        base: u64,
        resolved: &BTreeMap<usize, Target>,
        stats: &mut LoadStats,
    ) -> Result<(), LoadError> {
        for (t, rels) in obj.relocs.iter().enumerate() {
            let (Some(user), Some(place)) = (sec_ids[t], places[t]) else { continue };
            let Place::Mem { region, offset: sec_off } = place else {
                if rels.is_empty() {
                    continue;
                }
                return Err(bad_reloc(obj, t, rels[0].offset, "relocations in TLS initializers are not supported"));
            };
            let size = obj.sections[t].size as usize;
            let at = (bases[region] - base + sec_off) as usize;
            let sec_bytes = &mut bytes[at..at + size];
            for rel in rels {
                let kind = RelocKind::from_type(rel.r_type).ok_or_else(|| LoadError::UnsupportedRelocation {
                    file: obj.file.clone(),
                    section: obj.sections[t].name.to_string(),
                    offset: rel.offset,
                    r_type: rel.r_type,
                    type_name: reloc::type_name(rel.r_type),
                })?;
                if kind == RelocKind::None {
                    continue;
                }
                let sym = &obj.symbols[rel.sym];
                let target = match sym.def {
                    SymDef::Undefined => *resolved.get(&rel.sym).ok_or_else(|| bad_reloc(obj, t, rel.offset, "unresolved symbol"))?,
                    SymDef::Absolute => Target { value: i128::from(sym.value), tls: false, section: None },
                    SymDef::Section(k) => match places.get(k).copied().flatten() {
                        Some(Place::Mem { region, offset }) => {
                            let b = bases[region];
                            Target { value: i128::from(b + offset) + i128::from(sym.value), tls: false, section: sec_ids[k] }
                        }
                        Some(Place::Tls(off)) => Target { value: i128::from(off) + i128::from(sym.value), tls: true, section: sec_ids[k] },
                        None => return Err(bad_reloc(obj, t, rel.offset, "symbol is in a section that is not loaded")),
                    },
                };
                if target.tls != kind.is_tls() {
                    return Err(bad_reloc(
                        obj,
                        t,
                        rel.offset,
                        if kind.is_tls() { "TLS relocation against a non-TLS symbol" } else { "address relocation against a TLS symbol" },
                    ));
                }
                let p = bases[region] + sec_off + rel.offset;
                reloc::apply(kind, sec_bytes, rel.offset, target.value, rel.addend, p).map_err(|e| match e {
                    WriteError::OutOfBounds => bad_reloc(obj, t, rel.offset, "place is outside its section"),
                    WriteError::Overflow(value) => LoadError::RelocationOverflow {
                        file: obj.file.clone(),
                        section: obj.sections[t].name.to_string(),
                        offset: rel.offset,
                        type_name: reloc::type_name(rel.r_type),
                        value,
                    },
                })?;
                stats.relocations += 1;
                if let Some(used) = target.section
                    && let Some(used_sec) = self.sections.get(&used)
                    && used_sec.krate != crate_id
                {
                    if target.tls {
                        self.deps.add(user, used);
                    } else {
                        let target_offset = (target.value - i128::from(used_sec.addr)) as u64;
                        self.deps.add_reloc(
                            used,
                            RelocRecord { user, offset: rel.offset, r_type: rel.r_type, addend: rel.addend, target_offset },
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// Resolves a raw symbol name for a crate in `ns`: exact in the namespace chain, then
    /// hash-agnostic, then by loading the defining object from a directory in the chain.
    fn resolve(&mut self, ns: NamespaceId, raw: &str, txn: &mut Vec<CrateId>) -> Result<Option<SymbolRef>, LoadError> {
        let exact = exact_key(raw);
        if let Some(s) = self.find(ns, &exact)? {
            return Ok(Some(s));
        }
        let ag = agnostic_of_exact(&exact);
        for n in self.chain(ns) {
            let Some(file) = self.dir_lookup(n, raw, &ag) else { continue };
            let bytes = self.namespaces[n.0 as usize].dir[&file].clone();
            self.load_inner(n, &file, bytes, txn)?;
            return self.find(ns, &exact);
        }
        Ok(None)
    }

    /// Exact, then hash-agnostic lookup through the chain.
    pub(crate) fn find(&self, ns: NamespaceId, exact: &str) -> Result<Option<SymbolRef>, LoadError> {
        let chain = self.chain(ns);
        for &n in &chain {
            if let Some(s) = self.namespaces[n.0 as usize].symbols.get_exact(exact) {
                return Ok(Some(s));
            }
        }
        let ag = agnostic_of_exact(exact);
        for &n in &chain {
            match self.namespaces[n.0 as usize].symbols.get_agnostic(&ag) {
                Lookup::Found(s) => return Ok(Some(s)),
                Lookup::Ambiguous(candidates) => return Err(LoadError::Ambiguous { symbol: ag, candidates }),
                Lookup::Missing => {}
            }
        }
        Ok(None)
    }

    /// Which not-yet-loaded file in `ns`'s directory defines `raw` (or its agnostic key).
    fn dir_lookup(&mut self, ns: NamespaceId, raw: &str, agnostic: &str) -> Option<String> {
        let n = &mut self.namespaces[ns.0 as usize];
        if n.dir.is_empty() {
            return None;
        }
        if n.dir_index.is_none() {
            let mut ix = DirIndex::default();
            for (file, bytes) in &n.dir {
                // Unparseable files simply define nothing; loading them by name reports why.
                let Ok(globals) = elf::defined_globals(file, bytes) else { continue };
                for g in globals {
                    ix.raw.entry(g.to_string()).or_insert_with(|| file.clone());
                }
            }
            n.dir_index = Some(ix);
        }
        let ix = n.dir_index.as_mut()?;
        let file = match ix.raw.get(raw) {
            Some(f) => f.clone(),
            None => {
                // Objects of one build match by raw name; the hash-agnostic index (which needs
                // every name demangled) is built only when that fails.
                if ix.agnostic.is_none() {
                    let mut ag = BTreeMap::new();
                    for (g, f) in &ix.raw {
                        ag.entry(agnostic_key(g)).or_insert_with(|| f.clone());
                    }
                    ix.agnostic = Some(ag);
                }
                ix.agnostic.as_ref()?.get(agnostic)?.clone()
            }
        };
        // Already loaded (it did not satisfy the lookup) or being loaded: nothing to gain. A
        // crate of the same name from another file is another version: worth loading.
        let name = crate_name_of(&file);
        let stem = file.strip_suffix(".o").unwrap_or(&file);
        let loaded = |c: &str| n.crates.get(c).and_then(|id| self.crates.get(id)).is_some_and(|k| k.file == file);
        (!loaded(name) && !loaded(stem)).then_some(file)
    }

    /// Registers a crate whose code is already in memory (nano_core from its symbol file, host
    /// functions, JIT code). Symbols outside every given section get a section of their own.
    pub fn add_prelinked(
        &mut self,
        ns: NamespaceId,
        name: &str,
        sections: &[PrelinkedSection],
        symbols: &[PrelinkedSymbol],
    ) -> Result<CrateId, LoadError> {
        let nsr = self.ns(ns)?;
        if nsr.crates.contains_key(name) {
            return Err(LoadError::AlreadyLoaded { name: name.to_string(), namespace: nsr.name.clone() });
        }
        let crate_id = CrateId(self.next_crate);
        self.next_crate += 1;
        let mut krate = LoadedCrate::empty(crate_id, name, &format!("<{name}>"), ns, true);
        let mut secs: Vec<LoadedSection> = Vec::new();
        let new = |name: &str, addr: u64, size: u64, kind: SectionKind, secs: &mut Vec<LoadedSection>, next: &mut u32| {
            let id = SectionId(*next);
            *next += 1;
            secs.push(LoadedSection { id, krate: crate_id, name: name.to_string(), kind, addr, size, symbols: Vec::new() });
        };
        for s in sections {
            new(&s.name, s.addr, s.size, s.kind, &mut secs, &mut self.next_section);
        }
        secs.sort_by_key(|s| s.addr);
        let mut extra = Vec::new();
        let mut keys: BTreeMap<String, String> = BTreeMap::new();
        for sym in symbols {
            let i = secs.partition_point(|s| s.addr <= sym.addr);
            let inside = i.checked_sub(1).filter(|&j| sym.addr < secs[j].addr + secs[j].size.max(1));
            match inside {
                Some(j) => {
                    let offset = sym.addr - secs[j].addr;
                    secs[j].symbols.push(SectionSymbol::new(offset, sym.size, sym.raw.clone(), sym.global));
                    if let Some(k) = &sym.key {
                        keys.insert(sym.raw.clone(), k.clone());
                    }
                }
                None => extra.push(sym),
            }
        }
        for sym in extra {
            // Aliases (several names at one address, like memcpy/memmove) share one section.
            if !secs.last().is_some_and(|s| s.addr == sym.addr && s.name == "<symbol>")
                && !secs.iter().any(|s| s.addr == sym.addr && s.name == "<symbol>")
            {
                new("<symbol>", sym.addr, sym.size.max(1), SectionKind::Text, &mut secs, &mut self.next_section);
            }
            if let Some(s) = secs.iter_mut().find(|s| s.addr == sym.addr && s.name == "<symbol>") {
                s.symbols.push(SectionSymbol::new(0, sym.size, sym.raw.clone(), sym.global));
            }
        }
        for s in &mut secs {
            s.symbols.sort_by(|a, b| a.offset.cmp(&b.offset).then(b.size.cmp(&a.size)));
            if s.name == ".eh_frame" {
                krate.eh_frame.push(s.id);
            } else if s.name.starts_with(".gcc_except_table") {
                krate.gcc_except_table.push(s.id);
            }
        }
        if !self.index.insert_batch(secs.iter().map(|s| (s.addr, s.size, s.id)).collect()) {
            return Err(LoadError::Malformed {
                file: name.to_string(),
                detail: "its sections overlap each other or a loaded section".into(),
            });
        }
        let n = &mut self.namespaces[ns.0 as usize];
        for s in &secs {
            krate.sections.push(s.id);
            for sym in s.symbols.iter().filter(|y| y.global) {
                let key = keys.remove(&sym.raw).unwrap_or_else(|| exact_key(&sym.raw));
                let r = SymbolRef { addr: s.addr + sym.offset, size: sym.size, section: s.id, krate: crate_id, tls: false };
                if n.symbols.insert(key.clone(), r) {
                    krate.exported.push(key);
                } else {
                    krate.shadowed += 1;
                }
            }
        }
        n.crates.insert(name.to_string(), crate_id);
        for s in secs {
            self.sections.insert(s.id, s);
        }
        self.crates.insert(crate_id, krate);
        Ok(crate_id)
    }

    /// Unloads a crate; refused while another crate depends on it.
    pub fn unload(&mut self, id: CrateId) -> Result<(), LoadError> {
        let k = self.crates.get(&id).ok_or_else(|| LoadError::NoSuchCrate(format!("{id}")))?;
        let users = self.crate_dependents(id);
        if !users.is_empty() {
            let dependents = users.iter().filter_map(|u| self.crates.get(u)).map(|c| c.name.clone()).collect();
            return Err(LoadError::InUse { name: k.name.clone(), dependents });
        }
        self.remove_crate(id);
        Ok(())
    }

    /// Removes every trace of a crate and frees its memory (no dependency check).
    pub(crate) fn remove_crate(&mut self, id: CrateId) {
        let Some(k) = self.crates.remove(&id) else { return };
        self.generation += 1;
        let n = &mut self.namespaces[k.namespace.0 as usize];
        for key in &k.exported {
            n.symbols.remove_if_owned(key, id);
        }
        if n.crates.get(&k.name) == Some(&id) {
            n.crates.remove(&k.name);
        }
        self.index.remove_sections(&k.sections);
        for s in &k.sections {
            if let Some(sec) = self.sections.remove(s)
                && sec.kind.is_tls()
            {
                self.tls.remove(*s);
            }
            self.deps.remove_section(*s);
        }
        if let Some(r) = k.memory {
            self.memory.free(r);
        }
    }
}

fn bad_reloc(obj: &ObjectFile<'_>, t: usize, offset: u64, detail: &'static str) -> LoadError {
    LoadError::BadRelocation { file: obj.file.clone(), section: obj.sections[t].name.to_string(), offset, detail }
}
