//! The linker: loading an object into a namespace, resolving its symbols, relocating it, and
//! unloading it again.
//!
//! A load is a transaction. The crate's sections are placed and its symbols registered
//! *before* its relocations are resolved, so that crates loaded on demand while resolving can
//! refer back to it (core and compiler_builtins need each other). Every crate loaded during one
//! top-level [`Loader::load`] is recorded; if anything fails, all of them are unloaded again in
//! reverse order and their memory is freed, so a failed load leaves the namespaces exactly as
//! they were.

use crate::adopt::{AdoptPlan, SymShape, identity};
use crate::crates::{FieldFixup, LoadPhases, LoadedCrate, LoadedSection, Part, SectionSymbol, SectionTable};
use crate::deps::{DepGraph, RelocRecord};
use crate::dirindex::{PrebuiltIndex, RawIndex};
use crate::elf::{self, ObjectFile, SectionKind, SymDef, SymKind};
use crate::error::LoadError;
use crate::ids::{CrateId, NamespaceId, SectionId};
use crate::index::AddressIndex;
use crate::memory::{MemoryProvider, Perms, Region};
use crate::namespace::{CrateNamespace, DirIndex, ObjectBytes, crate_name_of};
use crate::reloc::{self, RelocKind, WriteError};
use crate::symbols::{Lookup, SymbolRef, agnostic_key, agnostic_of_exact, exact_key};
use crate::symtab::{self, SymbolTable};
use crate::tls::TlsImage;
use alloc::borrow::Cow;
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

/// A loader-owned region and who holds it.
///
/// A crate's memory is two regions — code and read-only data, then writable data — so that a
/// new version can adopt the writable one while the old version's code is retired and freed on
/// its own. A region is freed when its last holder (loaded or retired crate) is removed.
#[derive(Debug)]
pub(crate) struct HeldRegion {
    pub(crate) region: Region,
    /// Its permission parts.
    pub(crate) parts: Vec<Part>,
    /// Crates (loaded or retired) that hold it.
    pub(crate) holders: u32,
}

/// Decides whether an object file (name, bytes) may be loaded: `Err` says why not (the kernel's
/// signature check, see `Loader::set_object_check`).
pub type ObjectCheck = fn(&str, &[u8]) -> Result<(), String>;

/// All namespaces, crates and sections, the address index and the dependency graph.
pub struct Loader {
    pub(crate) memory: &'static dyn MemoryProvider,
    pub(crate) namespaces: Vec<CrateNamespace>,
    pub(crate) crates: BTreeMap<CrateId, LoadedCrate>,
    pub(crate) sections: SectionTable,
    pub(crate) index: AddressIndex,
    pub(crate) deps: DepGraph,
    pub(crate) tls: TlsImage,
    /// Loader-owned regions by start address.
    pub(crate) regions: BTreeMap<u64, HeldRegion>,
    pub(crate) next_crate: u32,
    next_section: u32,
    last: LoadStats,
    load_hook: Option<fn(&Loader, CrateId)>,
    clock: Option<fn() -> u64>,
    object_check: Option<ObjectCheck>,
    /// Microseconds spent in nested (on-demand) loads during the current load, so each crate's
    /// own time excludes its dependencies'.
    nested_us: u64,
    /// Bumped by every change to the set of loaded crates (swap uses it to detect staleness).
    pub(crate) generation: u64,
}

/// Where one section goes during a load.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// Part (0 text, 1 rodata, 2 data) and offset in it.
    Mem { part: usize, offset: u64 },
    /// Thread-pointer offset.
    Tls(i64),
    /// In memory of the crate this one replaces (adoption, see [`crate::adopt`]).
    Adopted { addr: u64, old: SectionId },
    /// At the TLS offset of the crate this one replaces.
    AdoptedTls { offset: i64, old: SectionId },
}

impl Place {
    /// The section's address (or TLS offset) given the parts' bases, and whether it is TLS.
    fn addr(self, bases: &[u64; 3]) -> (u64, bool) {
        match self {
            Place::Mem { part, offset } => (bases[part] + offset, false),
            Place::Tls(off) | Place::AdoptedTls { offset: off, .. } => (off as u64, true),
            Place::Adopted { addr, .. } => (addr, false),
        }
    }

    fn adopted_from(self) -> Option<SectionId> {
        match self {
            Place::Adopted { old, .. } | Place::AdoptedTls { old, .. } => Some(old),
            _ => None,
        }
    }
}

/// The plan of a load: where each section of the object goes.
struct Layout {
    /// Per ELF section.
    places: Vec<Option<Place>>,
    /// Bytes used in each part (text, rodata, data).
    sizes: [u64; 3],
    /// ELF sections to place into the TLS image.
    tls_new: Vec<usize>,
}

impl Layout {
    /// Page-aligned offset of each part in the crate's allocation, and the allocation's size.
    fn part_offsets(&self) -> ([u64; 3], u64) {
        let mut off = [0u64; 3];
        let mut total = 0u64;
        for (o, size) in off.iter_mut().zip(self.sizes) {
            *o = total;
            total += size.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        }
        (off, total)
    }

    /// Size of the code+rodata region (the writable part starts here).
    fn exec_size(&self) -> u64 {
        self.part_offsets().0[2]
    }
}

/// What relocating one object needs to know about its load.
struct RelocCtx<'o, 'a> {
    obj: &'o ObjectFile<'a>,
    crate_id: CrateId,
    layout: &'o Layout,
    sec_ids: &'o [Option<SectionId>],
    bases: &'o [u64; 3],
    base: u64,
    /// The target of each undefined symbol a loaded section uses, by symbol index.
    resolved: &'o [Option<Target>],
}

/// A resolved relocation target.
#[derive(Debug, Clone, Copy)]
struct Target {
    value: i128,
    tls: bool,
    /// The section of another crate it lies in: a dependency to record. Known when the symbol
    /// is resolved, once per symbol, not looked up again for each of its relocations.
    foreign: Option<Foreign>,
}

/// A section of another crate that a relocation points into.
#[derive(Debug, Clone, Copy)]
struct Foreign {
    section: SectionId,
    /// Its start address (a relocation record keeps the offset into it).
    start: u64,
}

/// Times the phases of one load with the loader's clock.
/// Which object a crate being loaded comes from.
#[derive(Clone, Copy)]
struct Origin<'a> {
    /// Its file name.
    file: &'a str,
    /// Its bytes, when they live forever (a boot module): symbol names are borrowed from them.
    forever: Option<&'static [u8]>,
}

/// A symbol's raw name, borrowed when it lies in an object that lives forever (a boot module):
/// a crate's thousands of local symbols then cost no allocation each (cranelift_codegen has
/// 17,728), which under TCG was a large part of its register phase. Copied otherwise.
fn raw_name(name: &str, forever: Option<&'static [u8]>) -> Cow<'static, str> {
    let borrowed = forever.and_then(|b| {
        let start = (name.as_ptr() as usize).checked_sub(b.as_ptr() as usize)?;
        core::str::from_utf8(b.get(start..start + name.len())?).ok()
    });
    match borrowed {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(name.to_string()),
    }
}

struct PhaseClock(u64);

impl PhaseClock {
    fn start(l: &Loader) -> PhaseClock {
        PhaseClock(l.now())
    }

    /// Microseconds since the last lap (or the start).
    fn lap(&mut self, l: &Loader) -> u64 {
        let now = l.now();
        let us = now.saturating_sub(self.0);
        self.0 = now;
        us
    }
}

/// Where a crate being loaded was put: its layout, the allocation's start, each part's base
/// (text, rodata, data) and the allocation's size.
#[derive(Clone, Copy)]
struct Placed<'l> {
    layout: &'l Layout,
    base: u64,
    bases: [u64; 3],
    total: u64,
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
/// What the code part is filled with before its sections are copied in (see `allocate_and_fill`).
const INT3: u8 = 0xCC;

fn region_of(kind: SectionKind) -> usize {
    match kind {
        SectionKind::Text => 0,
        SectionKind::Rodata => 1,
        _ => 2,
    }
}

/// The symbols of each writable ELF section, hash-agnostic and sorted by offset (for
/// adoption; other sections are never adopted, so their names are not demangled here).
fn section_shapes(obj: &ObjectFile<'_>) -> Vec<Vec<SymShape>> {
    let mut out = alloc::vec![Vec::new(); obj.sections.len()];
    let writable = |k: usize| {
        obj.sections.get(k).and_then(|s| s.kind).is_some_and(|k| matches!(k, SectionKind::Data | SectionKind::Bss) || k.is_tls())
    };
    for sym in &obj.symbols {
        if let SymDef::Section(k) = sym.def
            && !sym.name.is_empty()
            && !matches!(sym.kind, SymKind::Section)
            && writable(k)
            && let Some(v) = out.get_mut(k)
        {
            v.push(SymShape { name: agnostic_key(sym.name), offset: sym.value, size: sym.size });
        }
    }
    for v in &mut out {
        v.sort();
    }
    out
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
            regions: BTreeMap::new(),
            next_crate: 0,
            next_section: 0,
            last: LoadStats::default(),
            load_hook: None,
            clock: None,
            object_check: None,
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
        self.namespaces.push(CrateNamespace::empty(id, name, parent, BTreeMap::new(), false));
        Ok(id)
    }

    /// Adds (or replaces) an object file in a namespace's directory.
    pub fn add_object_file(&mut self, ns: NamespaceId, file: &str, bytes: ObjectBytes) -> Result<(), LoadError> {
        let n = self.ns_mut(ns)?;
        n.dir.insert(file.to_string(), bytes);
        n.dir_index = None;
        Ok(())
    }

    /// Installs a load-on-demand index prepared at build time for `ns`'s directory (see
    /// [`crate::dirindex`]); it must list exactly the directory's files. A later change of the
    /// directory drops it (the index is then built from the objects when next needed).
    pub fn set_dir_index(&mut self, ns: NamespaceId, name: &str, bytes: ObjectBytes) -> Result<usize, LoadError> {
        let ix = PrebuiltIndex::new(name, bytes)?;
        let n = self.ns_mut(ns)?;
        let mut files = 0;
        for i in 0.. {
            match ix.file_name(i) {
                Some(f) if n.dir.contains_key(f) => files += 1,
                Some(f) => {
                    return Err(LoadError::Malformed {
                        file: name.to_string(),
                        detail: format!("it lists {f}, which is not in the directory"),
                    });
                }
                None => break,
            }
        }
        if files != n.dir.len() {
            return Err(LoadError::Malformed {
                file: name.to_string(),
                detail: format!("it lists {files} files; the directory has {}", n.dir.len()),
            });
        }
        let count = ix.len();
        n.dir_index = Some(DirIndex { raw: RawIndex::Prebuilt(ix), agnostic: None });
        Ok(count)
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

    /// Loads a program's object `file` into `ns`: from the namespace's updates (an object pushed
    /// to the running kernel) if it is there, else from its directory — the order `swap` uses
    /// too — then its parents' likewise. Its own undefined symbols still resolve only against
    /// loaded crates and the directories.
    pub fn load_program(&mut self, ns: NamespaceId, file: &str) -> Result<CrateId, LoadError> {
        let name = self.ns(ns)?.name.clone();
        let (_, bytes) =
            self.nearest_object(ns, |f| f == file).ok_or(LoadError::NoSuchProgram { file: file.to_string(), namespace: name })?;
        self.load(ns, file, bytes)
    }

    /// The nearest object file in `ns`'s chain whose name satisfies `matches`: in each
    /// namespace, nearest first, its updates (objects pushed to the running kernel) before its
    /// directory.
    pub fn nearest_object(&self, ns: NamespaceId, matches: impl Fn(&str) -> bool) -> Option<(String, ObjectBytes)> {
        self.chain(ns).into_iter().find_map(|n| {
            let n = &self.namespaces[n.0 as usize];
            [&n.updates, &n.dir].into_iter().find_map(|m| m.iter().find(|(f, _)| matches(f)).map(|(f, b)| (f.clone(), b.clone())))
        })
    }

    /// Loads and links one object into `ns` (loading others on demand from the directories of
    /// `ns` and its parents). On error nothing changes.
    pub fn load(&mut self, ns: NamespaceId, file: &str, bytes: ObjectBytes) -> Result<CrateId, LoadError> {
        self.load_with(ns, file, bytes, None)
    }

    /// [`Loader::load`], adopting the writable sections of the crate `adopt` plans for (a swap).
    pub(crate) fn load_with(
        &mut self,
        ns: NamespaceId,
        file: &str,
        bytes: ObjectBytes,
        adopt: Option<&mut AdoptPlan>,
    ) -> Result<CrateId, LoadError> {
        self.ns(ns)?;
        let mut txn = Vec::new();
        self.last = LoadStats::default();
        self.generation += 1;
        match self.load_inner(ns, file, bytes, &mut txn, adopt) {
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

    /// Registers a check every object must pass before it is parsed (the kernel refuses bytes
    /// that are not what was signed); its error becomes [`LoadError::Untrusted`].
    pub fn set_object_check(&mut self, check: ObjectCheck) {
        self.object_check = Some(check);
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
        self.namespaces.get(ns.0 as usize).filter(|n| !n.dropped).ok_or_else(|| LoadError::NoSuchNamespace(format!("#{}", ns.0)))
    }

    pub(crate) fn ns_mut(&mut self, ns: NamespaceId) -> Result<&mut CrateNamespace, LoadError> {
        self.namespaces.get_mut(ns.0 as usize).filter(|n| !n.dropped).ok_or_else(|| LoadError::NoSuchNamespace(format!("#{}", ns.0)))
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

    fn load_inner(
        &mut self,
        ns: NamespaceId,
        file: &str,
        bytes: ObjectBytes,
        txn: &mut Vec<CrateId>,
        adopt: Option<&mut AdoptPlan>,
    ) -> Result<CrateId, LoadError> {
        let t0 = self.now();
        let nested_before = core::mem::take(&mut self.nested_us);
        let r = self.load_timed(ns, file, bytes, txn, adopt);
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

    /// The name a new crate from `file` gets in `ns`, or why it cannot be loaded there.
    fn crate_name_for(&self, ns: NamespaceId, file: &str) -> Result<String, LoadError> {
        let name = crate_name_of(file).to_string();
        let nsr = self.ns(ns)?;
        let Some(other) = nsr.crates.get(&name) else { return Ok(name) };
        // Two versions of one crates.io crate (say gimli 0.32 for the unwinder and 0.33 for
        // Cranelift) have one crate name and different hashes: the second is named after its
        // file. The same file twice is an error.
        let same_file = self.crates.get(other).is_some_and(|k| k.file == file);
        let stem = file.strip_suffix(".o").unwrap_or(file).to_string();
        if same_file || nsr.crates.contains_key(&stem) || stem == name {
            return Err(LoadError::AlreadyLoaded { name, namespace: nsr.name.clone() });
        }
        Ok(stem)
    }

    /// Phase 1: where every section goes. Writable sections that `adopt` matches stay in the
    /// replaced crate's memory; the rest go into three page-aligned parts (text, rodata,
    /// data+bss) of one allocation, or into the TLS image.
    fn plan_layout(&self, obj: &ObjectFile<'_>, file: &str, mut adopt: Option<&mut AdoptPlan>) -> Result<Layout, LoadError> {
        let shapes = if adopt.is_some() { section_shapes(obj) } else { Vec::new() };
        let mut layout = Layout { places: alloc::vec![None; obj.sections.len()], sizes: [0; 3], tls_new: Vec::new() };
        let mut tls_total = self.tls.total();
        for (i, s) in obj.sections.iter().enumerate() {
            let Some(kind) = s.kind else { continue };
            if let Some(plan) = adopt.as_deref_mut()
                && let Some(old) = plan.adopt(kind, s.size, &shapes[i])
            {
                layout.places[i] = Some(if old.tls {
                    Place::AdoptedTls { offset: old.addr as i64, old: old.id }
                } else {
                    Place::Adopted { addr: old.addr, old: old.id }
                });
                continue;
            }
            if kind.is_tls() {
                let (off, total) = self.tls.plan(tls_total, s.size, s.align).ok_or_else(|| LoadError::TooLarge {
                    file: file.to_string(),
                    what: "TLS image".into(),
                    size: tls_total.saturating_add(s.size),
                    limit: i64::MAX as u64,
                })?;
                tls_total = total;
                layout.places[i] = Some(Place::Tls(off));
                layout.tls_new.push(i);
                continue;
            }
            let part = region_of(kind);
            let off = layout.sizes[part].checked_add(s.align - 1).map(|v| v & !(s.align - 1));
            // `.eh_frame` gets four zero bytes after it: the zero-length terminator an unwinder
            // looks for (relocatable objects leave it to the final link).
            let extra = if s.name == ".eh_frame" { 4 } else { 0 };
            let end = off.and_then(|o| o.checked_add(s.size + extra));
            match (off, end) {
                (Some(o), Some(e)) if e <= MAX_CRATE_MEMORY => {
                    layout.places[i] = Some(Place::Mem { part, offset: o });
                    layout.sizes[part] = e;
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
        let total = layout.part_offsets().1;
        if total > MAX_CRATE_MEMORY {
            return Err(LoadError::TooLarge { file: file.to_string(), what: "crate memory".into(), size: total, limit: MAX_CRATE_MEMORY });
        }
        Ok(layout)
    }

    /// Loads one object: check, parse, [`Loader::plan_layout`], then the phases below, each a
    /// method of its own. Until the crate is registered an error frees its memory through the
    /// [`RegionGuard`]; after that, through the caller's transaction (`txn`), which removes every
    /// crate this load added.
    fn load_timed(
        &mut self,
        ns: NamespaceId,
        file: &str,
        bytes: ObjectBytes,
        txn: &mut Vec<CrateId>,
        mut adopt: Option<&mut AdoptPlan>,
    ) -> Result<CrateId, LoadError> {
        let mut phases = LoadPhases::default();
        let mut clock = PhaseClock::start(self);
        if let Some(check) = self.object_check {
            check(file, &bytes).map_err(|reason| LoadError::Untrusted { file: file.to_string(), reason })?;
        }
        phases.check_us = clock.lap(self);
        let obj = elf::parse(file, &bytes)?;
        phases.parse_us = clock.lap(self);
        let name = self.crate_name_for(ns, file)?;
        let layout = self.plan_layout(&obj, file, adopt.as_deref_mut())?;
        let guard = self.allocate_and_fill(&obj, &layout)?;
        phases.place_us = clock.lap(self);
        let base = guard.region.as_ref().map_or(0, |r| r.addr());
        let (part_off, total) = layout.part_offsets();
        let bases: [u64; 3] = core::array::from_fn(|p| base + part_off[p]);
        let placed = Placed { layout: &layout, base, bases, total };
        let forever = match &bytes {
            ObjectBytes::Static(b) => Some(*b),
            ObjectBytes::Shared(_) => None,
        };
        let (crate_id, sec_ids, mut stats) = self.register(ns, Origin { file, forever }, &name, &obj, &placed, guard)?;
        txn.push(crate_id);
        phases.register_us = clock.lap(self);
        let nested_before = self.nested_us;
        let resolved = self.resolve_undefined(ns, crate_id, &obj, &sec_ids, txn)?;
        phases.resolve_us = clock.lap(self).saturating_sub(self.nested_us - nested_before);
        let ctx = RelocCtx { obj: &obj, crate_id, layout: &layout, sec_ids: &sec_ids, bases: &bases, base, resolved: &resolved };
        self.relocate_and_protect(&ctx, &placed, adopt, &mut stats)?;
        phases.relocate_us = clock.lap(self);
        if let Some(k) = self.crates.get_mut(&crate_id) {
            k.phases = phases;
        }
        self.last.crates += stats.crates;
        self.last.sections += stats.sections;
        self.last.symbols += stats.symbols;
        self.last.relocations += stats.relocations;
        self.last.bytes += stats.bytes;
        Ok(crate_id)
    }

    /// Allocates the crate's memory and copies its sections in (adopted sections keep the bytes
    /// they have: live state).
    fn allocate_and_fill(&self, obj: &ObjectFile<'_>, layout: &Layout) -> Result<RegionGuard<'static>, LoadError> {
        let (part_off, total) = layout.part_offsets();
        let mut guard =
            RegionGuard { memory: self.memory, region: if total == 0 { None } else { Some(self.memory.allocate(total as usize)?) } };
        if let Some(r) = guard.region.as_mut() {
            // SAFETY: the region was just allocated read-write and nothing else refers to it.
            let bytes = unsafe { r.bytes_mut() };
            // The code part's padding (between sections and after the last) is `int3`, not zero:
            // code that runs on past its function's end — a `ret` damaged into a prefix, in the
            // fault campaign — traps at once instead of running `add [rax], al`, a store through
            // whatever a register holds (it broke the heap's bookkeeping, and the kernel halted).
            bytes[..part_off[1] as usize].fill(INT3);
            for (i, s) in obj.sections.iter().enumerate() {
                if let Some(Place::Mem { part, offset }) = layout.places[i]
                    && !s.data.is_empty()
                {
                    let at = (part_off[part] + offset) as usize;
                    bytes[at..at + s.data.len()].copy_from_slice(s.data);
                }
            }
        }
        Ok(guard)
    }

    /// Registers the crate, its sections and symbols before relocating (see module docs), and
    /// its memory (so that a failed load frees it through `remove_crate`). Returns its id, the
    /// section id of each ELF section it placed, and its counts so far.
    fn register(
        &mut self,
        ns: NamespaceId,
        origin: Origin<'_>,
        name: &str,
        obj: &ObjectFile<'_>,
        placed: &Placed<'_>,
        mut guard: RegionGuard<'static>,
    ) -> Result<(CrateId, Vec<Option<SectionId>>, LoadStats), LoadError> {
        let Origin { file, forever } = origin;
        let Placed { layout, base, bases, total } = *placed;
        let crate_id = CrateId(self.next_crate);
        self.next_crate += 1;
        let mut sec_ids: Vec<Option<SectionId>> = alloc::vec![None; obj.sections.len()];
        let mut krate = LoadedCrate::empty(crate_id, name, file, ns, false);
        let mut new_sections = Vec::new();
        // Position in `new_sections` of each ELF section.
        let mut pos = alloc::vec![usize::MAX; obj.sections.len()];
        for (i, s) in obj.sections.iter().enumerate() {
            let (Some(kind), Some(place)) = (s.kind, layout.places[i]) else { continue };
            let (addr, _) = place.addr(&bases);
            pos[i] = new_sections.len();
            let id = SectionId(self.next_section);
            self.next_section += 1;
            sec_ids[i] = Some(id);
            krate.sections.push(id);
            if let Some(old) = place.adopted_from() {
                krate.adopted.push((id, old));
            }
            krate.note_unwind_section(s.name, id);
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
            sec.symbols.push(SectionSymbol::new(sym.value, sym.size, raw_name(sym.name, forever), sym.global));
            if sym.global {
                let tls = sec.kind.is_tls();
                let addr = if tls { (sec.addr as i64).wrapping_add(sym.value as i64) as u64 } else { sec.addr + sym.value };
                exports.push((obj.exact_key(si), SymbolRef { addr, size: sym.size, section: id, krate: crate_id, tls }));
            }
        }
        for s in &mut new_sections {
            s.symbols.sort_by(|a, b| a.offset.cmp(&b.offset).then(b.size.cmp(&a.size)));
        }
        let mut stats = LoadStats { crates: 1, sections: new_sections.len(), bytes: total as usize, ..Default::default() };
        // Adopted sections stay in the index under the crate being replaced until the swap
        // commits (this crate is not live before that).
        let ranges = new_sections
            .iter()
            .filter(|s| !s.kind.is_tls() && !krate.adopted.iter().any(|a| a.0 == s.id))
            .map(|s| (s.addr, s.size, s.id))
            .collect();
        if !self.index.insert_batch(ranges) {
            // Cannot happen for freshly allocated memory unless the provider hands out
            // overlapping regions; refuse rather than corrupt the index.
            return Err(LoadError::Malformed { file: file.to_string(), detail: "memory provider returned overlapping memory".into() });
        }
        for s in new_sections {
            self.sections.insert(s.id, s);
        }
        for &i in &layout.tls_new {
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
            n.crates.insert(name.to_string(), crate_id);
        }
        let own_parts: Vec<Part> = (0..3)
            .filter(|&p| layout.sizes[p] > 0)
            .map(|p| Part { addr: bases[p], size: layout.sizes[p].div_ceil(PAGE_SIZE) * PAGE_SIZE, perms: REGION_PERMS[p] })
            .collect();
        if let Some(r) = guard.region.take() {
            self.regions.insert(r.addr(), HeldRegion { region: r, parts: own_parts, holders: 1 });
            krate.memory.push(base);
        }
        drop(guard);
        // Hold the regions of adopted sections.
        for (_, old) in &krate.adopted {
            let Some(addr) = self.sections.get(old).filter(|s| !s.kind.is_tls()).map(|s| s.addr) else { continue };
            if let Some((&start, _)) = self.regions.range(..=addr).next_back()
                && !krate.memory.contains(&start)
            {
                krate.memory.push(start);
            }
        }
        for start in &krate.memory {
            if let Some(h) = self.regions.get_mut(start) {
                if *start != base {
                    h.holders += 1;
                }
                krate.parts.extend(h.parts.iter().copied());
            }
        }
        self.crates.insert(crate_id, krate);

        Ok((crate_id, sec_ids, stats))
    }

    /// Resolves every undefined symbol that a loaded section's relocation uses (loading other
    /// crates on demand, into `txn`); all missing names are reported at once.
    fn resolve_undefined(
        &mut self,
        ns: NamespaceId,
        crate_id: CrateId,
        obj: &ObjectFile<'_>,
        sec_ids: &[Option<SectionId>],
        txn: &mut Vec<CrateId>,
    ) -> Result<Vec<Option<Target>>, LoadError> {
        let mut resolved: Vec<Option<Target>> = alloc::vec![None; obj.symbols.len()];
        let mut missing = BTreeSet::new();
        for (t, rels) in obj.relocs.iter().enumerate() {
            if sec_ids[t].is_none() {
                continue;
            }
            for r in rels {
                let sym = &obj.symbols[r.sym];
                if sym.def != SymDef::Undefined || resolved[r.sym].is_some() || r.r_type == 0 {
                    continue;
                }
                if sym.name.is_empty() {
                    return Err(bad_reloc(obj, t, r.offset, "relocation against the null symbol"));
                }
                match self.resolve(ns, sym.name, obj.exact_key(r.sym), txn)? {
                    Some(s) => {
                        let value = if s.tls { i128::from(s.addr as i64) } else { i128::from(s.addr) };
                        let foreign = (s.krate != crate_id)
                            .then(|| self.sections.get(&s.section))
                            .flatten()
                            .map(|sec| Foreign { section: s.section, start: sec.addr });
                        resolved[r.sym] = Some(Target { value, tls: s.tls, foreign });
                    }
                    None => {
                        missing.insert(agnostic_key(sym.name));
                    }
                }
            }
        }
        if !missing.is_empty() {
            let unlisted = missing.len().saturating_sub(MAX_LISTED);
            return Err(LoadError::Unresolved {
                needed_by: self.crates.get(&crate_id).map_or_else(String::new, |k| k.name.clone()),
                symbols: missing.into_iter().take(MAX_LISTED).collect(),
                unlisted,
            });
        }

        Ok(resolved)
    }

    /// Relocates (recording cross-crate dependencies), protects, splits the allocation into its
    /// code and data regions, and seals the crate's code for integrity checks.
    fn relocate_and_protect(
        &mut self,
        ctx: &RelocCtx<'_, '_>,
        placed: &Placed<'_>,
        mut adopt: Option<&mut AdoptPlan>,
        stats: &mut LoadStats,
    ) -> Result<(), LoadError> {
        let Placed { layout, base, bases, total } = *placed;
        let crate_id = ctx.crate_id;
        let held = if total == 0 { None } else { self.regions.remove(&base) };
        let mut held_region = held.map(|h| h.region);
        let result = match held_region.as_mut() {
            // SAFETY: the region is still read-write (protected only below) and this is the
            // only reference to its bytes.
            Some(r) => self.relocate(ctx, unsafe { r.bytes_mut() }, adopt.as_deref_mut(), stats),
            None => self.relocate(ctx, &mut [], adopt, stats),
        };
        let protect = result.and_then(|fixups| {
            if let Some(r) = &held_region {
                // The data part keeps the read-write mapping `allocate` gave it: asking for it
                // again would be a system call (host) or a page-table walk per page (kernel)
                // that changes nothing.
                for p in (0..3).filter(|&p| layout.sizes[p] > 0 && REGION_PERMS[p] != Perms::ReadWrite) {
                    let len = layout.sizes[p].div_ceil(PAGE_SIZE) * PAGE_SIZE;
                    self.memory.protect(r, (bases[p] - base) as usize, len as usize, REGION_PERMS[p])?;
                }
            }
            Ok(fixups)
        });
        if let Some(mut r) = held_region.take() {
            let exec = layout.exec_size() as usize;
            let parts: Vec<Part> = (0..3)
                .filter(|&p| layout.sizes[p] > 0)
                .map(|p| Part { addr: bases[p], size: layout.sizes[p].div_ceil(PAGE_SIZE) * PAGE_SIZE, perms: REGION_PERMS[p] })
                .collect();
            let k = self.crates.get_mut(&crate_id).expect("just inserted");
            match r.split_off(exec) {
                Some(data) => {
                    let (code_parts, data_parts): (Vec<Part>, Vec<Part>) = parts.into_iter().partition(|p| p.perms != Perms::ReadWrite);
                    k.memory.push(data.addr());
                    self.regions.insert(data.addr(), HeldRegion { region: data, parts: data_parts, holders: 1 });
                    self.regions.insert(r.addr(), HeldRegion { region: r, parts: code_parts, holders: 1 });
                }
                None => {
                    self.regions.insert(r.addr(), HeldRegion { region: r, parts, holders: 1 });
                }
            }
        }
        let fixups = protect?;
        self.seal(crate_id);
        let k = self.crates.get_mut(&crate_id).expect("just inserted");
        k.relocations = stats.relocations;
        k.fixups = fixups;
        Ok(())
    }

    /// Applies every relocation of the object, records cross-crate dependencies, and returns
    /// the pointer-field fixups of adopted sections (whose memory is live state and is not
    /// written now).
    fn relocate(
        &mut self,
        c: &RelocCtx<'_, '_>,
        bytes: &mut [u8],
        mut adopt: Option<&mut AdoptPlan>,
        stats: &mut LoadStats,
    ) -> Result<Vec<FieldFixup>, LoadError> {
        let obj = c.obj;
        debug_assert!(c.base == 0 || bytes.len() as u64 >= c.layout.exec_size());
        let mut fixups = Vec::new();
        // Relocations into other crates, recorded in the dependency graph together at the end.
        let mut foreign = Vec::new();
        let (part_off, _) = c.layout.part_offsets();
        for (t, rels) in obj.relocs.iter().enumerate() {
            let (Some(user), Some(place)) = (c.sec_ids[t], c.layout.places[t]) else { continue };
            let (sec_addr, in_adopted) = match place {
                Place::Mem { part, offset } => (c.bases[part] + offset, false),
                Place::Adopted { addr, .. } => (addr, true),
                Place::Tls(_) | Place::AdoptedTls { .. } => {
                    if rels.is_empty() {
                        continue;
                    }
                    return Err(bad_reloc(obj, t, rels[0].offset, "relocations in TLS initializers are not supported"));
                }
            };
            let size = obj.sections[t].size as usize;
            // An adopted section's initializer is computed into a scratch buffer: its memory
            // holds live state.
            let mut scratch: Vec<u8>;
            let sec_bytes: &mut [u8] = match place {
                Place::Mem { part, offset } => {
                    let at = (part_off[part] + offset) as usize;
                    &mut bytes[at..at + size]
                }
                _ => {
                    scratch = obj.sections[t].data.to_vec();
                    scratch.resize(size, 0);
                    &mut scratch
                }
            };
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
                    SymDef::Undefined => {
                        c.resolved.get(rel.sym).copied().flatten().ok_or_else(|| bad_reloc(obj, t, rel.offset, "unresolved symbol"))?
                    }
                    SymDef::Absolute => Target { value: i128::from(sym.value), tls: false, foreign: None },
                    SymDef::Section(k) => match c.layout.places.get(k).copied().flatten() {
                        Some(p) => {
                            let (a, tls) = p.addr(c.bases);
                            let a = if tls { i128::from(a as i64) } else { i128::from(a) };
                            // A section of this object: the crate being loaded.
                            Target { value: a + i128::from(sym.value), tls, foreign: None }
                        }
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
                let p = sec_addr + rel.offset;
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
                if in_adopted
                    && kind == RelocKind::Abs64
                    && let SymDef::Section(k) = sym.def
                    && let Some(plan) = adopt.as_deref_mut()
                    && let Some(fix) = self.fixup_for(c, plan, k, sym.value, rel.addend, p, sec_bytes, rel.offset)
                {
                    fixups.push(fix);
                }
                if let Some(used) = target.foreign {
                    if target.tls {
                        self.deps.add(user, used.section);
                    } else {
                        let target_offset = (target.value - i128::from(used.start)) as u64;
                        foreign.push((
                            used.section,
                            RelocRecord { user, offset: rel.offset, r_type: rel.r_type, addend: rel.addend, target_offset },
                        ));
                    }
                }
            }
        }
        self.deps.add_relocs(foreign);
        Ok(fixups)
    }

    /// The fixup for a 64-bit pointer field at `place` of an adopted section whose new
    /// initializer points into this crate's section `k` (at `value + addend`): OLD's initializer
    /// pointed at the same offset of OLD's counterpart of that section.
    #[allow(clippy::too_many_arguments)]
    fn fixup_for(
        &self,
        c: &RelocCtx<'_, '_>,
        plan: &mut AdoptPlan,
        k: usize,
        value: u64,
        addend: i64,
        place: u64,
        sec_bytes: &[u8],
        offset: u64,
    ) -> Option<FieldFixup> {
        let target_place = c.layout.places.get(k).copied().flatten()?;
        if target_place.adopted_from().is_some() {
            return None; // points into adopted memory: the same address in both versions
        }
        let sid = c.sec_ids[k]?;
        let sec = self.sections.get(&sid)?;
        let old_base = plan.old_address(self, &identity(sec))?;
        let rel_off = (value as i64).wrapping_add(addend);
        let old_value = (old_base as i64).wrapping_add(rel_off) as u64;
        let at = offset as usize;
        let new_value = u64::from_le_bytes(sec_bytes.get(at..at + 8)?.try_into().ok()?);
        (old_value != new_value).then_some(FieldFixup { place, old_value, new_value })
    }

    /// Resolves a raw symbol name (`exact`: its key, prepared or demangled) for a crate in `ns`:
    /// exact in the namespace chain, then hash-agnostic, then by loading the defining object from
    /// a directory in the chain.
    fn resolve(&mut self, ns: NamespaceId, raw: &str, exact: String, txn: &mut Vec<CrateId>) -> Result<Option<SymbolRef>, LoadError> {
        let chain = self.chain(ns);
        let (private, shared) = chain.split_at(self.private_prefix(&chain));
        // The hash-agnostic key costs a string: made only where an exact match is not enough.
        let ag = (!private.is_empty()).then(|| agnostic_of_exact(&exact));
        // Private namespaces (made at run time), nearest first: their own crates, then their own
        // directory — so a version in a child's directory shadows the parent's, loaded or not.
        for &n in private {
            let ag = ag.as_deref().unwrap_or_default();
            if let Some(s) = self.find_in(n, &exact, ag)? {
                return Ok(Some(s));
            }
            if let Some(file) = self.dir_lookup(n, raw, Some(ag)) {
                let bytes = self.namespaces[n.0 as usize].dir[&file].clone();
                self.load_inner(n, &file, bytes, txn, None)?;
                return self.find(ns, &exact);
            }
        }
        if let Some(s) = self.find_shared(shared, &exact)? {
            return Ok(Some(s));
        }
        // The boot namespaces' directories as their loaded symbols are searched: an exact match
        // anywhere, then a hash-agnostic one. (Asking each directory for both in turn made a
        // symbol of the kernel's directory, needed by an application, first build the
        // applications directory's hash-agnostic index — every name of its objects demangled:
        // 9 ms of the shell's load at boot.)
        let ag = ag.unwrap_or_else(|| agnostic_of_exact(&exact));
        for pass_agnostic in [None, Some(ag.as_str())] {
            for &n in shared {
                let Some(file) = self.dir_lookup(n, raw, pass_agnostic) else { continue };
                let bytes = self.namespaces[n.0 as usize].dir[&file].clone();
                self.load_inner(n, &file, bytes, txn, None)?;
                return self.find(ns, &exact);
            }
        }
        Ok(None)
    }

    /// Exact, then hash-agnostic lookup in namespace `n` alone.
    fn find_in(&self, n: NamespaceId, exact: &str, ag: &str) -> Result<Option<SymbolRef>, LoadError> {
        let map = &self.namespaces[n.0 as usize].symbols;
        if let Some(s) = map.get_exact(exact) {
            return Ok(Some(s));
        }
        match map.get_agnostic(ag) {
            Lookup::Found(s) => Ok(Some(s)),
            Lookup::Ambiguous(candidates) => Err(LoadError::Ambiguous { symbol: ag.to_string(), candidates }),
            Lookup::Missing => Ok(None),
        }
    }

    /// How many namespaces at the start of `chain` are private (made at run time).
    fn private_prefix(&self, chain: &[NamespaceId]) -> usize {
        chain.iter().take_while(|n| self.namespaces[n.0 as usize].private).count()
    }

    /// Exact, then hash-agnostic lookup through the chain. Private namespaces (made at run
    /// time) answer for themselves, nearest first, before any parent: a child's own version
    /// (another build: another hash, matched hash-agnostically) wins over an exact match
    /// further up.
    pub(crate) fn find(&self, ns: NamespaceId, exact: &str) -> Result<Option<SymbolRef>, LoadError> {
        let chain = self.chain(ns);
        let (private, shared) = chain.split_at(self.private_prefix(&chain));
        if !private.is_empty() {
            let ag = agnostic_of_exact(exact);
            for &n in private {
                if let Some(s) = self.find_in(n, exact, &ag)? {
                    return Ok(Some(s));
                }
            }
        }
        self.find_shared(shared, exact)
    }

    /// Lookup among the boot namespaces of a chain: an exact match anywhere, then a
    /// hash-agnostic one.
    fn find_shared(&self, chain: &[NamespaceId], exact: &str) -> Result<Option<SymbolRef>, LoadError> {
        for &n in chain {
            if let Some(s) = self.namespaces[n.0 as usize].symbols.get_exact(exact) {
                return Ok(Some(s));
            }
        }
        let ag = agnostic_of_exact(exact);
        for &n in chain {
            match self.namespaces[n.0 as usize].symbols.get_agnostic(&ag) {
                Lookup::Found(s) => return Ok(Some(s)),
                Lookup::Ambiguous(candidates) => return Err(LoadError::Ambiguous { symbol: ag, candidates }),
                Lookup::Missing => {}
            }
        }
        Ok(None)
    }

    /// Which not-yet-loaded file in `ns`'s directory defines `raw` (or, if `agnostic` is given and
    /// no file defines `raw`, that hash-agnostic key).
    fn dir_lookup(&mut self, ns: NamespaceId, raw: &str, agnostic: Option<&str>) -> Option<String> {
        let n = &mut self.namespaces[ns.0 as usize];
        if n.dir.is_empty() {
            return None;
        }
        if n.dir_index.is_none() {
            let mut raw = BTreeMap::new();
            for (file, bytes) in &n.dir {
                // Unparseable files simply define nothing; loading them by name reports why.
                let Ok(globals) = elf::defined_globals(file, bytes) else { continue };
                for g in globals {
                    raw.entry(g.to_string()).or_insert_with(|| file.clone());
                }
            }
            n.dir_index = Some(DirIndex { raw: RawIndex::Built(raw), agnostic: None });
        }
        let ix = n.dir_index.as_mut()?;
        let file = match ix.raw.get(raw) {
            Some(f) => f,
            None => {
                // Objects of one build match by raw name; the hash-agnostic index (which needs
                // every name demangled) is built only when that fails and is asked for.
                let agnostic = agnostic?;
                if ix.agnostic.is_none() {
                    let mut ag = BTreeMap::new();
                    ix.raw.for_each(&n.dir, &mut |g, f| {
                        ag.entry(agnostic_key(g)).or_insert_with(|| f.to_string());
                    });
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
        // Placed as the symbol tables imgtool prepares are (`symtab::place`).
        let placed = symtab::place(sections, symbols);
        let mut secs: Vec<LoadedSection> = Vec::with_capacity(placed.len());
        for p in &placed {
            let id = SectionId(self.next_section);
            self.next_section += 1;
            let mut listed = p.syms.clone();
            symtab::listing_order(&mut listed, symbols);
            let syms =
                listed.iter().map(|&n| &symbols[n]).map(|y| SectionSymbol::new(y.addr - p.addr, y.size, y.raw.clone(), y.global)).collect();
            secs.push(LoadedSection {
                id,
                krate: crate_id,
                name: p.name.to_string(),
                kind: p.kind,
                addr: p.addr,
                size: p.size,
                symbols: syms,
            });
            krate.note_unwind_section(p.name, id);
        }
        if !self.index.insert_batch(secs.iter().map(|s| (s.addr, s.size, s.id)).collect()) {
            return Err(LoadError::Malformed {
                file: name.to_string(),
                detail: "its sections overlap each other or a loaded section".into(),
            });
        }
        krate.sections.extend(secs.iter().map(|s| s.id));
        // As one batch (the symbol file's precomputed keys spare demangling).
        let entries: Vec<(String, SymbolRef)> = symtab::exports_in_claim_order(&placed, symbols)
            .into_iter()
            .map(|(j, n)| {
                let sym = &symbols[n];
                let key = sym.key.clone().unwrap_or_else(|| exact_key(&sym.raw));
                (key, SymbolRef { addr: sym.addr, size: sym.size, section: secs[j].id, krate: crate_id, tls: false })
            })
            .collect();
        Ok(self.register_prelinked(ns, name, krate, secs, entries))
    }

    /// The end of registering a prelinked crate: exports `entries` into `ns` for it (the first
    /// definition of a key wins; the others are counted as shadowed), then records the crate
    /// and its sections.
    fn register_prelinked(
        &mut self,
        ns: NamespaceId,
        name: &str,
        mut krate: LoadedCrate,
        secs: Vec<LoadedSection>,
        entries: Vec<(String, SymbolRef)>,
    ) -> CrateId {
        let n = &mut self.namespaces[ns.0 as usize];
        let keys: Vec<String> = entries.iter().map(|(k, _)| k.clone()).collect();
        for (key, added) in keys.into_iter().zip(n.symbols.insert_many(entries)) {
            if added {
                krate.exported.push(key);
            } else {
                krate.shadowed += 1;
            }
        }
        n.crates.insert(name.to_string(), krate.id);
        for s in secs {
            self.sections.insert(s.id, s);
        }
        let id = krate.id;
        self.crates.insert(id, krate);
        id
    }

    /// Registers a crate whose code is already in memory from its prepared table
    /// ([`crate::symtab`]: nano_core, at boot). Into an empty namespace the table itself answers
    /// the crate's lookups (no key is copied); otherwise its exports are inserted one by one.
    pub fn add_prelinked_table(&mut self, ns: NamespaceId, name: &str, table: SymbolTable) -> Result<CrateId, LoadError> {
        let nsr = self.ns(ns)?;
        if nsr.crates.contains_key(name) {
            return Err(LoadError::AlreadyLoaded { name: name.to_string(), namespace: nsr.name.clone() });
        }
        let damaged =
            |what: &str| LoadError::Malformed { file: name.to_string(), detail: format!("its symbol table has a damaged {what}") };
        let crate_id = CrateId(self.next_crate);
        let first = SectionId(self.next_section);
        let mut krate = LoadedCrate::empty(crate_id, name, &format!("<{name}>"), ns, true);
        let mut secs: Vec<LoadedSection> = Vec::with_capacity(table.section_count());
        for i in 0..table.section_count() {
            let t = table.section(i).ok_or_else(|| damaged("section"))?;
            let mut symbols = Vec::with_capacity(t.count as usize);
            for j in t.first..t.first.saturating_add(t.count) {
                let y =
                    table.symbol(j as usize).filter(|y| y.section as usize == i && y.addr >= t.addr).ok_or_else(|| damaged("symbol"))?;
                symbols.push(SectionSymbol::new(y.addr - t.addr, y.size, y.raw, y.global));
            }
            let id = SectionId(first.0 + i as u32);
            secs.push(LoadedSection { id, krate: crate_id, name: t.name.to_string(), kind: t.kind, addr: t.addr, size: t.size, symbols });
            krate.note_unwind_section(t.name, id);
        }
        if !self.index.insert_batch(secs.iter().map(|s| (s.addr, s.size, s.id)).collect()) {
            return Err(LoadError::Malformed {
                file: name.to_string(),
                detail: "its sections overlap each other or a loaded section".into(),
            });
        }
        self.next_crate += 1;
        self.next_section += secs.len() as u32;
        krate.sections.extend(secs.iter().map(|s| s.id));
        krate.shadowed = table.shadowed();
        let mut entries = Vec::new();
        if !self.namespaces[ns.0 as usize].symbols.set_base(table, crate_id, first) {
            for i in 0..table.export_count() {
                let Some((key, y)) = table.export(i).and_then(|(k, y)| Some((k, table.symbol(y as usize)?))) else { continue };
                let r = SymbolRef { addr: y.addr, size: y.size, section: SectionId(first.0 + y.section), krate: crate_id, tls: false };
                entries.push((key.to_string(), r));
            }
        }
        Ok(self.register_prelinked(ns, name, krate, secs, entries))
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

    /// Removes every trace of a crate and drops its hold on its memory regions, freeing those
    /// nobody else holds (no dependency check).
    pub(crate) fn remove_crate(&mut self, id: CrateId) {
        let Some(k) = self.crates.remove(&id) else { return };
        self.generation += 1;
        let n = &mut self.namespaces[k.namespace.0 as usize];
        for key in &k.exported {
            n.symbols.remove_if_owned(key, id);
        }
        n.symbols.remove_base_if_owned(id);
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
        for start in k.memory {
            let Some(h) = self.regions.get_mut(&start) else { continue };
            h.holders = h.holders.saturating_sub(1);
            if h.holders == 0
                && let Some(h) = self.regions.remove(&start)
            {
                self.memory.free(h.region);
            }
        }
    }

    /// The loader-owned region containing `addr`, with the permissions of its part there.
    pub(crate) fn region_at(&self, addr: u64) -> Option<(&Region, Perms)> {
        let (_, h) = self.regions.range(..=addr).next_back()?;
        let part = h.parts.iter().find(|p| addr >= p.addr && addr < p.addr + p.size)?;
        Some((&h.region, part.perms))
    }

    /// Bytes of memory the loader holds for crates (each region once).
    pub fn region_bytes(&self) -> usize {
        self.regions.values().map(|h| h.region.size()).sum()
    }
}

fn bad_reloc(obj: &ObjectFile<'_>, t: usize, offset: u64, detail: &'static str) -> LoadError {
    LoadError::BadRelocation { file: obj.file.clone(), section: obj.sections[t].name.to_string(), offset, detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    static OBJECT: &[u8] = b"\x7fELF....names: alpha beta";

    #[test]
    fn raw_names_borrow_from_objects_that_live_forever() {
        let name = core::str::from_utf8(&OBJECT[15..20]).unwrap();
        assert_eq!(name, "alpha");
        let Cow::Borrowed(b) = raw_name(name, Some(OBJECT)) else { panic!("copied") };
        assert_eq!((b, b.as_ptr()), ("alpha", name.as_ptr()));
        // Not from that object, or no object that lives forever: copied.
        let elsewhere = String::from("alpha");
        assert!(matches!(raw_name(&elsewhere, Some(OBJECT)), Cow::Owned(s) if s == "alpha"));
        assert!(matches!(raw_name(name, None), Cow::Owned(s) if s == "alpha"));
        // A name running past the object's end is not borrowed.
        let tail = core::str::from_utf8(&OBJECT[21..]).unwrap();
        assert!(matches!(raw_name(tail, Some(&OBJECT[..22])), Cow::Owned(s) if s == "beta"));
    }
}
