//! Swapping crates: replacing loaded crates with new versions while everything keeps running.
//!
//! The model is Erlang's hot code loading, applied to crates: two versions of a crate coexist;
//! every *linked* reference (a relocation in another crate) moves to the new version at once,
//! code already running in the old version finishes there, and the old version's memory is
//! reclaimed only when nothing refers to it any more.
//!
//! Two phases, so that a swap that cannot succeed changes nothing:
//! 1. [`Loader::swap_prepare`] loads each NEW into a scratch namespace whose parent is OLD's
//!    namespace. NEW *adopts* OLD's writable sections (see [`crate::adopt`]): each data, bss
//!    or TLS section with an exact counterpart in OLD is placed at OLD's address, so old and
//!    new code share one state and nothing is copied. Then it checks that every symbol any
//!    other crate uses from OLD (every cross-crate relocation recorded into OLD's sections)
//!    exists in NEW under the same hash-agnostic name, with a compatible kind (code for code,
//!    data for data) and, for data, the same size. A static that NEW has but could not adopt
//!    (its section changed shape) is copied by name if its size is unchanged — that needs the
//!    old version idle ([`Prepared::needs_quiescence`]) — or left to a state hook. On any failure
//!    the scratch crates are unloaded and the error lists every problem.
//! 2. [`Loader::swap_commit`] rewrites every dependent's relocations to point into NEW (making
//!    their pages writable just for the write: W^X holds throughout), copies the statics that
//!    were not adopted, switches the untouched pointer initializers of adopted sections, runs
//!    the caller's hook (the kernel moves registered hooks and interrupt gates there, with
//!    [`Prepared::translate`], and runs state hooks), moves NEW into OLD's namespace under OLD's
//!    name, and *retires* OLD: OLD leaves every namespace map, but its sections stay in the
//!    address index (running code, unwinding, backtraces) and its memory stays mapped. If the
//!    hook fails, everything is put back and nothing changed.
//!
//! Reclaiming is separate ([`Loader::reclaim`]): the kernel calls it for a retired crate once a
//! scan of stacks, data and heap finds no reference into [`Loader::retired_ranges`].

use crate::adopt::AdoptPlan;
use crate::crates::{Retirement, SectionSymbol};
use crate::deps::RelocRecord;
use crate::elf::SectionKind;
use crate::error::LoadError;
use crate::ids::{CrateId, NamespaceId, SectionId};
use crate::loader::Loader;
use crate::memory::{MemoryError, Perms};
use crate::namespace::{ObjectBytes, crate_name_of};
use crate::reloc::{self, RelocKind};
use crate::symbols::agnostic_of_exact;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// Why a swap was refused. The running system is unchanged whenever one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SwapError {
    /// OLD is not loaded.
    #[error("no crate {0} is loaded")]
    NotLoaded(String),
    /// The same crate appears twice.
    #[error("crate {0} is named twice in one swap")]
    Duplicate(String),
    /// NEW's object file does not exist.
    #[error("no object {file} among the updates or in the directory of namespace {namespace}")]
    NoSuchObject {
        /// What was asked for.
        file: String,
        /// Where it was looked for.
        namespace: String,
    },
    /// A name matches several objects or crates.
    #[error("{name} is ambiguous: it could be {}", candidates.join(" or "))]
    Ambiguous {
        /// What was asked for.
        name: String,
        /// Names that would work.
        candidates: Vec<String>,
    },
    /// NEW could not be loaded (not an object, truncated, unresolved symbols...).
    #[error("cannot load the new version {file}: {source}")]
    Load {
        /// The object file.
        file: String,
        /// Why.
        source: LoadError,
    },
    /// Symbols that dependents of OLD use but NEW lacks or defines incompatibly.
    #[error("new version of {krate} cannot replace the old one: {}", problems.join("; "))]
    Incompatible {
        /// OLD's crate name.
        krate: String,
        /// One line per missing or mismatched symbol.
        problems: Vec<String>,
    },
    /// Data whose size differs between OLD and NEW, with no state hook to convert it.
    #[error("state of {krate} cannot be transferred by name: {} (give a state hook)", symbols.join(", "))]
    StateSize {
        /// OLD's crate name.
        krate: String,
        /// `name (old N bytes, new M bytes)` entries.
        symbols: Vec<String>,
    },
    /// Crates were loaded or unloaded between prepare and commit.
    #[error("the loaded crates changed after the swap was prepared; prepare it again")]
    Stale,
    /// The caller's hook failed; the swap was rolled back.
    #[error("{0}")]
    Hook(String),
    /// Changing page permissions failed.
    #[error("memory: {0}")]
    Memory(#[from] MemoryError),
}

/// What [`Loader::swap_commit`] calls between relinking and retiring OLD; an error rolls the
/// swap back.
pub type CommitHook<'a> = dyn FnMut(&Loader, &Prepared) -> Result<(), String> + 'a;

/// A state hook: a function NEW exports, run at commit, that converts OLD's statics whose layout
/// changed (and re-registers anything a registration facility does not move by itself).
pub type StateHook = fn(&OldState) -> Result<(), String>;

/// One OLD → NEW replacement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapPair {
    /// OLD's crate name.
    pub old: String,
    /// NEW: an object file name among the namespace's updates or in its directory; `X` also
    /// finds `X.o`, or the single file of crate `X`; OLD's own name means OLD's own object.
    pub new_file: String,
}

/// Microseconds per phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SwapTimes {
    /// Loading NEW.
    pub load_us: u64,
    /// Checking symbols and planning the state transfer.
    pub verify_us: u64,
    /// Rewriting dependents' relocations.
    pub relink_us: u64,
    /// Copying state, switching initializers and running the hook.
    pub state_us: u64,
    /// Moving symbols and edges, retiring OLD.
    pub cleanup_us: u64,
}

impl SwapTimes {
    /// Sum of the phases.
    pub fn total_us(&self) -> u64 {
        self.load_us + self.verify_us + self.relink_us + self.state_us + self.cleanup_us
    }
}

#[derive(Debug, Clone)]
struct Relink {
    record: RelocRecord,
    new_used: SectionId,
    new_value: u64,
}

/// A static copied by name from OLD to NEW (same size, but its section could not be adopted).
#[derive(Debug, Clone, Copy)]
struct Transfer {
    from: u64,
    to: u64,
    len: u64,
}

/// A symbol of NEW as translation needs it.
#[derive(Debug, Clone, Copy)]
struct NewSym {
    addr: u64,
    size: u64,
    kind: SectionKind,
    global: bool,
}

#[derive(Debug, Clone)]
struct PairPlan {
    old: CrateId,
    new: CrateId,
    relinks: Vec<Relink>,
    transfers: Vec<Transfer>,
    /// NEW's symbols by hash-agnostic name.
    syms: NewSymbols,
    /// Bytes of OLD's state NEW shares by adoption.
    adopted_bytes: u64,
}

/// NEW's symbols by hash-agnostic name: the exported ones at once (their keys are known from
/// loading, so nothing is demangled), all others only if something asks for one (a hook or a
/// stack word pointing at a private function, a static whose section was not adopted).
#[derive(Debug, Clone)]
struct NewSymbols {
    krate: CrateId,
    globals: BTreeMap<String, NewSym>,
    all: core::cell::OnceCell<BTreeMap<String, NewSym>>,
}

impl NewSymbols {
    fn of(l: &Loader, krate: CrateId) -> NewSymbols {
        let mut globals = BTreeMap::new();
        if let Some(k) = l.crates.get(&krate) {
            let ns = &l.namespaces[k.namespace.0 as usize];
            for key in &k.exported {
                let Some(r) = ns.symbols.get_exact(key) else { continue };
                let Some(sec) = l.sections.get(&r.section) else { continue };
                if !r.tls {
                    globals.insert(agnostic_of_exact(key), NewSym { addr: r.addr, size: r.size, kind: sec.kind, global: true });
                }
            }
        }
        NewSymbols { krate, globals, all: core::cell::OnceCell::new() }
    }

    /// The symbol `name`: exported first, then any (globals win over locals of one name).
    fn get(&self, l: &Loader, name: &str) -> Option<NewSym> {
        if let Some(s) = self.globals.get(name) {
            return Some(*s);
        }
        let all = self.all.get_or_init(|| {
            let mut m: BTreeMap<String, NewSym> = BTreeMap::new();
            for sec in l.crates.get(&self.krate).into_iter().flat_map(|k| k.sections.iter()).filter_map(|s| l.sections.get(s)) {
                if sec.kind.is_tls() {
                    continue;
                }
                for y in &sec.symbols {
                    let s = NewSym { addr: sec.addr + y.offset, size: y.size, kind: sec.kind, global: y.global };
                    let e = m.entry(String::from(y.demangled())).or_insert(s);
                    if y.global && !e.global {
                        *e = s;
                    }
                }
            }
            m
        });
        all.get(name).copied()
    }
}

/// A verified swap, ready to commit (or abort).
#[derive(Debug)]
pub struct Prepared {
    first_new: u32,
    generation: u64,
    pairs: Vec<PairPlan>,
    /// Times of the prepare phases (`load_us`, `verify_us`).
    pub times: SwapTimes,
    /// What will happen, one line per item (for `swap -v` and `--dry-run`).
    pub report: Vec<String>,
    /// Whether commit copies statics or runs a state hook: then no task may be running in the
    /// old version when it happens (otherwise that task would keep using the old copy).
    pub needs_quiescence: bool,
    /// The memory of the OLD crates (every part), for a quick "not ours" in [`Prepared::translate`].
    old_ranges: Vec<(u64, u64)>,
}

/// Where an address that pointed into OLD points after the swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Translation {
    /// Not in any OLD crate of this swap, or in adopted memory (same address before and after).
    Unaffected,
    /// The same symbol (and offset) in NEW.
    Moved(u64),
    /// No equivalent in NEW.
    Unmappable {
        /// OLD's symbol there, if any (hash-agnostic).
        symbol: Option<String>,
        /// Why.
        reason: &'static str,
    },
}

impl Prepared {
    /// (OLD, NEW) crate ids.
    pub fn pairs(&self) -> Vec<(CrateId, CrateId)> {
        self.pairs.iter().map(|p| (p.old, p.new)).collect()
    }

    /// Relocations that commit will rewrite.
    pub fn relink_count(&self) -> usize {
        self.pairs.iter().map(|p| p.relinks.len()).sum()
    }

    /// Bytes of state that commit will copy.
    pub fn state_bytes(&self) -> u64 {
        self.pairs.iter().flat_map(|p| p.transfers.iter().map(|t| t.len)).sum()
    }

    /// Bytes of state the new versions share with the old ones (adopted in place).
    pub fn adopted_bytes(&self) -> u64 {
        self.pairs.iter().map(|p| p.adopted_bytes).sum()
    }

    /// Where `addr` — an address held somewhere in data (a registered hook, an interrupt
    /// gate) — should point after the swap: the same symbol at the same offset in NEW. A code
    /// address must be a function's first byte (a stored function pointer).
    pub fn translate(&self, l: &Loader, addr: u64) -> Translation {
        if !self.old_ranges.iter().any(|&(s, e)| addr >= s && addr < e) {
            return Translation::Unaffected;
        }
        let Some((sid, start)) = l.index.lookup(addr) else { return Translation::Unaffected };
        let Some(sec) = l.sections.get(&sid) else { return Translation::Unaffected };
        let Some(plan) = self.pairs.iter().find(|p| p.old == sec.krate) else { return Translation::Unaffected };
        let off = addr - start;
        let Some(sym) = symbol_covering(&sec.symbols, off) else {
            return Translation::Unmappable { symbol: None, reason: "no symbol of the old version covers it" };
        };
        let name = String::from(sym.demangled());
        let delta = off - sym.offset;
        let Some(new) = plan.syms.get(l, &name) else {
            return Translation::Unmappable { symbol: Some(name), reason: "the new version has no such symbol" };
        };
        if (sec.kind == SectionKind::Text) != (new.kind == SectionKind::Text) {
            return Translation::Unmappable { symbol: Some(name), reason: "code in one version, data in the other" };
        }
        if sec.kind == SectionKind::Text && delta != 0 {
            return Translation::Unmappable { symbol: Some(name), reason: "it points into the middle of a function" };
        }
        if sec.kind != SectionKind::Text && delta >= new.size.max(1) {
            return Translation::Unmappable { symbol: Some(name), reason: "the symbol is smaller in the new version" };
        }
        match new.addr + delta {
            same if same == addr => Translation::Unaffected, // adopted memory
            moved => Translation::Moved(moved),
        }
    }

    /// The parts of the OLD crates a running task can depend on: code, and read-only data that
    /// may hold pointers (vtables, jump tables, `.eh_frame`). Constant pools (`.rodata.str*`,
    /// `.rodata.cst*` and their `.lrodata` forms) are left out: a stale `&'static str` left in
    /// an unused stack slot does not mean a task is inside the old code, and the reclaimer,
    /// which scans the whole of OLD, keeps that memory mapped while the word exists anyway.
    /// Sorted, merged `[start, end)` ranges, for [`in_ranges`].
    pub fn old_busy_ranges(&self, l: &Loader) -> Vec<(u64, u64)> {
        let mut ranges: Vec<(u64, u64)> = self
            .pairs
            .iter()
            .filter_map(|p| l.krate(p.old))
            .flat_map(|k| k.sections.iter().filter_map(|id| l.section(*id)))
            .filter(|s| match s.kind {
                SectionKind::Text => true,
                SectionKind::Rodata => !is_constant_pool(&s.name),
                _ => false,
            })
            .filter(|s| s.size > 0)
            .map(|s| (s.addr, s.addr + s.size))
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        merged
    }

    /// The address of a function or static NEW exports under the hash-agnostic `name`.
    pub fn new_export(&self, name: &str) -> Option<u64> {
        self.pairs.iter().find_map(|p| p.syms.globals.get(name).map(|s| s.addr))
    }
}

/// One static of an old version, for a state hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldStatic {
    /// Hash-agnostic name, e.g. `scheduler::QUEUE`.
    pub name: String,
    /// Address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
}

/// OLD's statics, as a state hook sees them (their memory stays mapped during the hook; an
/// adopted static is the very memory NEW uses).
#[derive(Debug, Clone, Default)]
pub struct OldState {
    /// Every data/bss symbol of the OLD crates.
    pub statics: Vec<OldStatic>,
}

impl OldState {
    /// The statics of the OLD crates of a prepared swap.
    pub fn of(l: &Loader, p: &Prepared) -> OldState {
        let mut statics = Vec::new();
        for plan in &p.pairs {
            let Some(k) = l.krate(plan.old) else { continue };
            for sec in k.sections.iter().filter_map(|s| l.section(*s)) {
                if matches!(sec.kind, SectionKind::Data | SectionKind::Bss) {
                    for y in &sec.symbols {
                        statics.push(OldStatic { name: String::from(y.demangled()), addr: sec.addr + y.offset, size: y.size });
                    }
                }
            }
        }
        OldState { statics }
    }

    /// The static `name` (hash-agnostic, e.g. `scheduler::QUEUE`).
    pub fn get(&self, name: &str) -> Option<&OldStatic> {
        self.statics.iter().find(|s| s.name == name)
    }

    /// The bytes of OLD's static `name`.
    pub fn bytes(&self, name: &str) -> Option<&[u8]> {
        let s = self.get(name)?;
        // SAFETY: the address and size come from OLD's loaded data sections, which stay mapped
        // while OLD is loaded or retired — at least until the hook that receives this returns.
        Some(unsafe { core::slice::from_raw_parts(s.addr as *const u8, s.size as usize) })
    }
}

fn is_data(k: SectionKind) -> bool {
    matches!(k, SectionKind::Data | SectionKind::Bss)
}

fn compatible(old: SectionKind, new: SectionKind) -> bool {
    old == new || (is_data(old) && is_data(new))
}

/// The symbol of a section that covers `offset`, preferring one that starts exactly there.
fn symbol_covering(symbols: &[SectionSymbol], offset: u64) -> Option<&SectionSymbol> {
    symbols.iter().filter(|s| s.offset == offset).max_by_key(|s| s.global).or_else(|| {
        let i = symbols.partition_point(|s| s.offset <= offset);
        symbols.get(i.checked_sub(1)?)
    })
}

/// What a retired crate holds, for `ns` and the reclaimer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetiredInfo {
    /// Its id.
    pub id: CrateId,
    /// Its name.
    pub name: String,
    /// Namespace name.
    pub namespace: String,
    /// Memory only retired crates hold (what reclaiming it can free): `[start, end)` ranges.
    pub ranges: Vec<(u64, u64)>,
    /// Bytes in those ranges.
    pub bytes: u64,
    /// When it was retired (loader generation).
    pub generation: u64,
}

impl Loader {
    /// Changes whenever a crate is loaded or unloaded.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn scratch_namespace(&mut self, parent: NamespaceId) -> Result<NamespaceId, LoadError> {
        let name = format!("swap:{}", self.ns(parent)?.name);
        if let Some(n) = self.namespaces.iter().find(|n| !n.dropped && n.name == name && n.parent == Some(parent)) {
            return Ok(n.id);
        }
        self.add_namespace(&name, Some(parent))
    }

    /// Finds NEW's object: a file of that name (with or without `.o`), or the one file of
    /// crate `want`, in the updates, then the directory, of OLD's namespace and its parents.
    /// When several files are of crate `want` (two versions of a crates.io crate), OLD's own
    /// file is meant if it is one of them; otherwise the name is ambiguous.
    fn find_new_object(&self, old: CrateId, want: &str) -> Result<(String, ObjectBytes), SwapError> {
        let k = &self.crates[&old];
        let ns = k.namespace;
        for n in self.chain(ns) {
            let nsr = &self.namespaces[n.0 as usize];
            let with_o = format!("{want}.o");
            for map in [&nsr.updates, &nsr.dir] {
                if let Some((f, b)) = map.get_key_value(want).or_else(|| map.get_key_value(with_o.as_str())) {
                    return Ok((f.clone(), b.clone()));
                }
            }
            for map in [&nsr.updates, &nsr.dir] {
                let hits: Vec<(&String, &ObjectBytes)> = map.iter().filter(|(f, _)| crate_name_of(f) == want).collect();
                match hits.as_slice() {
                    [] => {}
                    [(f, b)] => return Ok(((*f).clone(), (*b).clone())),
                    many => {
                        if let Some((f, b)) = many.iter().find(|(f, _)| **f == k.file) {
                            return Ok(((*f).clone(), (*b).clone()));
                        }
                        let candidates = many.iter().map(|(f, _)| f.strip_suffix(".o").unwrap_or(f).to_string()).collect();
                        return Err(SwapError::Ambiguous { name: want.to_string(), candidates });
                    }
                }
            }
        }
        Err(SwapError::NoSuchObject { file: want.to_string(), namespace: self.namespaces[ns.0 as usize].name.clone() })
    }

    /// The live crate `name` in `ns` or its parents, or why there is none.
    fn old_crate(&self, ns: NamespaceId, name: &str) -> Result<CrateId, SwapError> {
        if let Some(id) = self.crate_by_name(ns, name) {
            return Ok(id);
        }
        // Two versions of one crate: the second is named after its file (`gimli-<hash>`).
        let mut candidates: Vec<String> = Vec::new();
        for n in self.chain(ns) {
            for (cname, id) in &self.namespaces[n.0 as usize].crates {
                if self.crates.get(id).is_some_and(|k| crate_name_of(&k.file) == name) && !candidates.contains(cname) {
                    candidates.push(cname.clone());
                }
            }
        }
        match candidates.len() {
            0 => Err(SwapError::NotLoaded(name.to_string())),
            _ => Err(SwapError::Ambiguous { name: name.to_string(), candidates }),
        }
    }

    fn unload_since(&mut self, first_new: u32) {
        let ids: Vec<CrateId> = self.crates.keys().copied().filter(|c| c.0 >= first_new).collect();
        for id in ids.into_iter().rev() {
            self.remove_crate(id);
        }
    }

    /// Phase 1: loads each NEW beside its OLD (adopting OLD's writable sections) and verifies
    /// the swap (see the module docs). `ns` is where OLD crate names are looked up (and its
    /// parents). With `state_hook`, data of different sizes is left to the hook instead of
    /// refusing the swap.
    pub fn swap_prepare(&mut self, ns: NamespaceId, pairs: &[SwapPair], state_hook: bool) -> Result<Prepared, SwapError> {
        let t0 = self.now();
        let mut olds = Vec::new();
        for p in pairs {
            let id = self.old_crate(ns, &p.old)?;
            if self.crates.get(&id).is_some_and(|k| k.prelinked) {
                let why = if p.old == "nano_core" {
                    "nano_core is the statically linked base every other crate is linked against; it is never swapped"
                } else {
                    "it is registered code (JIT) the loader did not link; WASM modules are swapped with `wasm swap`"
                };
                return Err(SwapError::Incompatible { krate: p.old.clone(), problems: alloc::vec![why.into()] });
            }
            if olds.contains(&id) {
                return Err(SwapError::Duplicate(p.old.clone()));
            }
            olds.push(id);
        }
        let first_new = self.next_crate;
        let mut news = Vec::new();
        for (p, &old) in pairs.iter().zip(&olds) {
            let old_ns = self.crates[&old].namespace;
            let (file, bytes) = match self.find_new_object(old, &p.new_file) {
                Ok(v) => v,
                Err(e) => {
                    self.unload_since(first_new);
                    return Err(e);
                }
            };
            let scratch = self.scratch_namespace(old_ns).map_err(|source| SwapError::Load { file: file.clone(), source })?;
            let mut plan = AdoptPlan::new(self, old);
            match self.load_with(scratch, &file, bytes, Some(&mut plan)) {
                Ok(id) => news.push(id),
                Err(source) => {
                    self.unload_since(first_new);
                    return Err(SwapError::Load { file, source });
                }
            }
        }
        let t1 = self.now();

        let mut plans = Vec::new();
        let mut report = Vec::new();
        let mut incompatible: Option<(String, Vec<String>)> = None;
        let mut size_problems: Option<(String, Vec<String>)> = None;
        for (&old, &new) in olds.iter().zip(&news) {
            let old_name = self.crates[&old].name.clone();
            let syms = NewSymbols::of(self, new);
            let adopted: BTreeMap<SectionId, SectionId> = self.crates[&new].adopted.iter().map(|&(n, o)| (o, n)).collect();
            let mut problems = Vec::new();
            let mut relinks = Vec::new();
            let mut transfers = Vec::new();
            let mut sizes = Vec::new();
            let mut adopted_bytes = 0;
            for sid in self.crates[&old].sections.clone() {
                let old_sec = self.sections.get(&sid).expect("crate sections exist").clone();
                let records: Vec<RelocRecord> = self.deps.relocs_into(sid).copied().collect();
                for rec in records {
                    let user_crate = self.sections.get(&rec.user).map(|s| s.krate);
                    if user_crate.is_some_and(|c| olds.contains(&c)) {
                        continue; // a crate being replaced in the same swap
                    }
                    if let Some(&new_sid) = adopted.get(&sid) {
                        // Adopted: the same memory; only the record moves.
                        relinks.push(Relink { record: rec, new_used: new_sid, new_value: old_sec.addr + rec.target_offset });
                        continue;
                    }
                    let Some(old_sym) = symbol_covering(&old_sec.symbols, rec.target_offset) else {
                        problems.push(format!("a relocation points into {} at {:#x}, where no symbol is", old_sec.name, rec.target_offset));
                        continue;
                    };
                    let name = String::from(old_sym.demangled());
                    let Some(new_sym) = syms.get(self, &name) else {
                        if !problems.iter().any(|p| p == &format!("missing `{name}`")) {
                            problems.push(format!("missing `{name}`"));
                        }
                        continue;
                    };
                    if !compatible(old_sec.kind, new_sym.kind) {
                        problems.push(format!("`{name}` is {:?} in the old version but {:?} in the new", old_sec.kind, new_sym.kind));
                        continue;
                    }
                    if is_data(old_sec.kind) && old_sym.size != new_sym.size {
                        problems.push(format!("`{name}` is {} bytes in the old version but {} in the new", old_sym.size, new_sym.size));
                        continue;
                    }
                    let Some((new_used, _)) = self.index.lookup(new_sym.addr) else { continue };
                    let new_value = new_sym.addr + (rec.target_offset - old_sym.offset);
                    relinks.push(Relink { record: rec, new_used, new_value });
                }
                if !is_data(old_sec.kind) && !old_sec.kind.is_tls() {
                    continue;
                }
                if adopted.contains_key(&sid) {
                    adopted_bytes += old_sec.size;
                    for y in old_sec.symbols.iter().filter(|y| y.size > 0) {
                        report.push(format!("state: {} ({} bytes) shared", y.demangled(), y.size));
                    }
                    continue;
                }
                for y in old_sec.symbols.iter().filter(|y| y.size > 0) {
                    let name = String::from(y.demangled());
                    if old_sec.kind.is_tls() {
                        report.push(format!("state: thread-local {name} ({} bytes) changed shape: tasks keep the old value", y.size));
                        continue;
                    }
                    match syms.get(self, &name) {
                        Some(n) if is_data(n.kind) => {
                            if n.size == y.size {
                                transfers.push(Transfer { from: old_sec.addr + y.offset, to: n.addr, len: y.size });
                                report.push(format!("state: {name} ({} bytes) copied", y.size));
                            } else if state_hook {
                                report.push(format!("state: {name} changes size ({} -> {} bytes): left to the hook", y.size, n.size));
                            } else {
                                sizes.push(format!("{name} (old {} bytes, new {} bytes)", y.size, n.size));
                            }
                        }
                        _ => report.push(format!("state: {name} ({} bytes) is not in the new version: dropped", y.size)),
                    }
                }
            }
            report.push(format!(
                "{old_name}: {} relocations in other crates will point into the new version; {} bytes of state shared",
                relinks.len(),
                adopted_bytes
            ));
            if !problems.is_empty() && incompatible.is_none() {
                incompatible = Some((old_name.clone(), problems));
            }
            if !sizes.is_empty() && size_problems.is_none() {
                size_problems = Some((old_name.clone(), sizes));
            }
            plans.push(PairPlan { old, new, relinks, transfers, syms, adopted_bytes });
        }
        if let Some((krate, problems)) = incompatible {
            self.unload_since(first_new);
            return Err(SwapError::Incompatible { krate, problems });
        }
        if let Some((krate, symbols)) = size_problems {
            self.unload_since(first_new);
            return Err(SwapError::StateSize { krate, symbols });
        }
        let needs_quiescence = state_hook || plans.iter().any(|p| !p.transfers.is_empty());
        let old_ranges =
            olds.iter().filter_map(|o| self.crates.get(o)).flat_map(|k| k.regions().map(|(a, s, _)| (a, a + s as u64))).collect();
        let t2 = self.now();
        Ok(Prepared {
            first_new,
            generation: self.generation,
            pairs: plans,
            times: SwapTimes { load_us: t1.saturating_sub(t0), verify_us: t2.saturating_sub(t1), ..Default::default() },
            report,
            needs_quiescence,
            old_ranges,
        })
    }

    /// Drops a prepared swap: unloads the new versions (and anything loaded for them).
    pub fn swap_abort(&mut self, p: Prepared) {
        self.unload_since(p.first_new);
    }

    /// Makes `len` bytes at `place` writable, runs `f` on them, and puts the permissions back.
    pub(crate) fn write_at(&mut self, place: u64, len: usize, f: impl FnOnce(&mut [u8])) -> Result<(), SwapError> {
        let Some((region, perms)) = self.region_at(place) else { return Ok(()) };
        let (raddr, rsize) = (region.addr(), region.size());
        let page = place & !(crate::loader::PAGE_SIZE - 1);
        let last = (place + len as u64 - 1) & !(crate::loader::PAGE_SIZE - 1);
        let off = (page - raddr) as usize;
        let plen = ((last - page + crate::loader::PAGE_SIZE) as usize).min(rsize - off);
        if perms != Perms::ReadWrite {
            // Writable only while the value is written; code stays executable meanwhile (an NMI
            // may run it: see `Perms::ReadWriteExec`).
            let writable = if perms == Perms::ReadExec { Perms::ReadWriteExec } else { Perms::ReadWrite };
            let region = self.region_at(place).expect("found above").0;
            self.memory.protect(region, off, plen, writable)?;
        }
        // SAFETY: `place..place+len` lies inside a loaded section of a region the loader owns,
        // whose page was just made writable; the caller holds off other tasks (interrupts off),
        // so no task executes or reads it meanwhile (an NMI may execute the page, which stays
        // executable; it runs other bytes than these, unless these are damage being repaired).
        f(unsafe { core::slice::from_raw_parts_mut(place as *mut u8, len) });
        if perms != Perms::ReadWrite {
            let region = self.region_at(place).expect("found above").0;
            self.memory.protect(region, off, plen, perms)?;
        }
        Ok(())
    }

    /// Writes the new value of every recorded relocation in `all`, appending what each place
    /// held to `done`. Places are visited in address order and each page is made writable once
    /// for all the places on it (a page-table update and a TLB flush per place made relinking
    /// a crate with many users cost milliseconds).
    fn rewrite_all(&mut self, all: &[(RelocRecord, u64)], done: &mut Vec<(RelocRecord, [u8; 8])>) -> Result<(), SwapError> {
        const PAGE: u64 = crate::loader::PAGE_SIZE;
        let mut places: Vec<(u64, RelocRecord, u64)> =
            all.iter().filter_map(|(rec, value)| self.sections.get(&rec.user).map(|sec| (sec.addr + rec.offset, *rec, *value))).collect();
        places.sort_unstable_by_key(|p| p.0);
        let mut i = 0;
        while i < places.len() {
            let page = places[i].0 & !(PAGE - 1);
            let mut j = i;
            while j < places.len() && places[j].0 & !(PAGE - 1) == page {
                j += 1;
            }
            let group = &places[i..j];
            let last =
                group.iter().map(|(pl, rec, _)| pl + RelocKind::from_type(rec.r_type).map_or(1, |k| k.width().max(1)) as u64 - 1).max();
            let len = (last.unwrap_or(page) & !(PAGE - 1)) + PAGE - page;
            self.write_at(page, len as usize, |bytes| {
                for (place, rec, value) in group {
                    let kind = RelocKind::from_type(rec.r_type).unwrap_or(RelocKind::None);
                    let at = (place - page) as usize;
                    let width = kind.width();
                    let mut saved = [0u8; 8];
                    saved[..width].copy_from_slice(&bytes[at..at + width]);
                    let _ = reloc::apply(kind, &mut bytes[at..at + width], 0, i128::from(*value), rec.addend, *place);
                    done.push((*rec, saved));
                }
            })?;
            i = j;
        }
        Ok(())
    }

    /// Puts back the bytes `rewrite` replaced (rollback after a failed hook).
    fn restore(&mut self, rec: &RelocRecord, saved: [u8; 8]) {
        let Some(sec) = self.sections.get(&rec.user) else { return };
        let place = sec.addr + rec.offset;
        let width = RelocKind::from_type(rec.r_type).map_or(0, |k| k.width());
        let _ = self.write_at(place, width.max(1), |bytes| bytes.copy_from_slice(&saved[..bytes.len()]));
    }

    /// Phase 2: commits a prepared swap. Run it with other tasks held off (interrupts off on a
    /// single CPU); if [`Prepared::needs_quiescence`], also only while no task is in an OLD
    /// crate. `hook` runs after the relocations point into NEW and the state is in place,
    /// before OLD is retired; if it fails, everything is put back and the new versions are
    /// unloaded. Returns the retired crates with the times.
    pub fn swap_commit(&mut self, p: Prepared, hook: &mut CommitHook<'_>) -> Result<SwapTimes, SwapError> {
        if p.generation != self.generation {
            self.swap_abort(p);
            return Err(SwapError::Stale);
        }
        let mut times = p.times;
        let t0 = self.now();
        let mut done: Vec<(RelocRecord, [u8; 8])> = Vec::new();
        let all: Vec<(RelocRecord, u64)> = p.pairs.iter().flat_map(|plan| plan.relinks.iter().map(|r| (r.record, r.new_value))).collect();
        if let Err(e) = self.rewrite_all(&all, &mut done) {
            for (rec, saved) in done.into_iter().rev() {
                self.restore(&rec, saved);
            }
            self.swap_abort(p);
            return Err(e);
        }
        // The users' code changed where it was relinked: take those words into their sealed
        // copies (rehashing only the pages touched, not whole crates).
        let mut by_user: alloc::collections::BTreeMap<CrateId, Vec<(u64, usize)>> = alloc::collections::BTreeMap::new();
        for (rec, _) in &done {
            if let Some(sec) = self.sections.get(&rec.user) {
                let width = RelocKind::from_type(rec.r_type).map_or(8, |k| k.width());
                by_user.entry(sec.krate).or_default().push((sec.addr + rec.offset, width));
            }
        }
        for (u, places) in by_user {
            self.reseal_places(u, &places);
        }
        let t1 = self.now();
        for plan in &p.pairs {
            for t in &plan.transfers {
                // SAFETY: `from` is a data symbol of OLD and `to` one of NEW (read-write), both
                // loaded and of `len` bytes (checked in prepare); NEW's is fresh memory, so they
                // never overlap.
                unsafe { core::ptr::copy_nonoverlapping(t.from as *const u8, t.to as *mut u8, t.len as usize) };
            }
        }
        let mut switched: Vec<(u64, u64)> = Vec::new();
        for plan in &p.pairs {
            for f in &self.crates[&plan.new].fixups {
                // SAFETY: `place` is an 8-byte pointer field inside an adopted data section
                // (read-write memory that stays mapped); other tasks are held off.
                let cur = unsafe { (f.place as *const u64).read_unaligned() };
                if cur == f.old_value {
                    // SAFETY: as above.
                    unsafe { (f.place as *mut u64).write_unaligned(f.new_value) };
                    switched.push((f.place, cur));
                }
            }
        }
        if let Err(e) = hook(self, &p) {
            for (place, old) in switched.into_iter().rev() {
                // SAFETY: puts back the value just replaced, in the same live data field.
                unsafe { (place as *mut u64).write_unaligned(old) };
            }
            for (rec, saved) in done.into_iter().rev() {
                self.restore(&rec, saved);
            }
            self.swap_abort(p);
            return Err(SwapError::Hook(e));
        }
        let t2 = self.now();
        for plan in &p.pairs {
            self.retire(plan);
        }
        self.generation += 1;
        let t3 = self.now();
        times.relink_us = t1.saturating_sub(t0);
        times.state_us = t2.saturating_sub(t1);
        times.cleanup_us = t3.saturating_sub(t2);
        Ok(times)
    }

    /// NEW takes OLD's place in its namespace; OLD is retired (see the module docs). Costs
    /// O(OLD's exports + adopted sections + relinked records), never O(everything loaded).
    fn retire(&mut self, plan: &PairPlan) {
        let (old_ns, old_name, old_exported) = {
            let k = self.crates.get_mut(&plan.old).expect("old crate exists");
            (k.namespace, k.name.clone(), core::mem::take(&mut k.exported))
        };
        let (new_ns, new_name, exported, adopted) = {
            let k = self.crates.get_mut(&plan.new).expect("new crate exists");
            k.fixups.clear();
            (k.namespace, k.name.clone(), core::mem::take(&mut k.exported), core::mem::take(&mut k.adopted))
        };
        // NEW's exports move into OLD's namespace: a key OLD owns is re-pointed in place (the
        // same build's keys are identical), others are inserted; what OLD still owns goes.
        let mut moved = Vec::new();
        for key in exported {
            let Some(r) = self.namespaces[new_ns.0 as usize].symbols.get_exact(&key) else { continue };
            let map = &mut self.namespaces[old_ns.0 as usize].symbols;
            if map.replace_if_owned(&key, plan.old, r) || map.insert(key.clone(), r) {
                moved.push(key);
            }
        }
        for key in &old_exported {
            self.namespaces[old_ns.0 as usize].symbols.remove_if_owned(key, plan.old);
        }
        self.namespaces[new_ns.0 as usize].crates.remove(&new_name);
        if self.namespaces[new_ns.0 as usize].crates.is_empty() {
            // The scratch namespace held only the new versions: drop its map whole.
            self.namespaces[new_ns.0 as usize].symbols = Default::default();
        } else {
            for key in &moved {
                self.namespaces[new_ns.0 as usize].symbols.remove_if_owned(key, plan.new);
            }
        }
        self.namespaces[old_ns.0 as usize].crates.insert(old_name.clone(), plan.new);
        // Adopted memory now belongs to NEW in the index and the TLS image.
        for (new_sid, old_sid) in adopted {
            let Some(old_sec) = self.sections.get(&old_sid) else { continue };
            if old_sec.kind.is_tls() {
                self.tls.reassign(old_sid, new_sid, None);
            } else {
                let addr = old_sec.addr;
                self.index.reassign(addr, old_sid, new_sid);
            }
        }
        // Edges into OLD move to NEW.
        for sid in self.crates[&plan.old].sections.clone() {
            self.deps.remove_incoming(sid);
        }
        for r in &plan.relinks {
            let base = self.sections.get(&r.new_used).map_or(0, |s| s.addr);
            let rec = RelocRecord { target_offset: r.new_value - base, ..r.record };
            self.deps.add_reloc(r.new_used, rec);
        }
        if let Some(k) = self.crates.get_mut(&plan.new) {
            k.namespace = old_ns;
            k.name = old_name;
            k.exported = moved;
        }
        let generation = self.generation;
        if let Some(k) = self.crates.get_mut(&plan.old) {
            k.retired = Some(Retirement { replaced_by: plan.new, generation });
        }
    }

    /// Retired crates (replaced by a swap, memory not reclaimed yet), oldest first.
    pub fn retired(&self) -> Vec<RetiredInfo> {
        let mut out: Vec<RetiredInfo> = self
            .crates
            .values()
            .filter_map(|k| {
                let r = k.retired.as_ref()?;
                let ranges = self.retired_ranges(k.id);
                Some(RetiredInfo {
                    id: k.id,
                    name: k.name.clone(),
                    namespace: self.namespaces[k.namespace.0 as usize].name.clone(),
                    bytes: ranges.iter().map(|(s, e)| e - s).sum(),
                    ranges,
                    generation: r.generation,
                })
            })
            .collect();
        out.sort_by_key(|r| r.generation);
        out
    }

    /// The memory of a retired crate that no live crate holds: what references must not point
    /// into for it to be reclaimed.
    pub fn retired_ranges(&self, id: CrateId) -> Vec<(u64, u64)> {
        let Some(k) = self.crates.get(&id) else { return Vec::new() };
        k.memory
            .iter()
            .filter(|start| !self.crates.values().any(|c| c.retired.is_none() && c.memory.contains(start)))
            .filter_map(|start| self.regions.get(start).map(|h| (h.region.addr(), h.region.addr() + h.region.size() as u64)))
            .collect()
    }

    /// Removes a retired crate and frees the memory only it held. The caller has established
    /// that nothing refers to [`Loader::retired_ranges`] any more.
    pub fn reclaim(&mut self, id: CrateId) -> Result<u64, LoadError> {
        let k = self.crates.get(&id).ok_or_else(|| LoadError::NoSuchCrate(format!("{id}")))?;
        if k.retired.is_none() {
            return Err(LoadError::InUse { name: k.name.clone(), dependents: alloc::vec!["it is not retired".into()] });
        }
        let before = self.region_bytes();
        self.remove_crate(id);
        Ok((before - self.region_bytes()) as u64)
    }

    /// Prepares and, if that succeeds, commits at once and reclaims the old versions (for
    /// callers that hold no references into them, such as host tools and tests).
    pub fn swap(&mut self, ns: NamespaceId, pairs: &[SwapPair]) -> Result<SwapTimes, SwapError> {
        let p = self.swap_prepare(ns, pairs, false)?;
        let olds: Vec<CrateId> = p.pairs().iter().map(|(o, _)| *o).collect();
        let times = self.swap_commit(p, &mut |_, _| Ok(()))?;
        for o in olds {
            let _ = self.reclaim(o);
        }
        Ok(times)
    }
}

impl From<&str> for SwapPair {
    /// `"OLD=NEW"`.
    fn from(s: &str) -> SwapPair {
        let (old, new) = s.split_once('=').unwrap_or((s, s));
        SwapPair { old: old.to_string(), new_file: new.to_string() }
    }
}

/// Whether a read-only section is a pool of constants (strings, literals) that holds no
/// pointers, judged by the names compilers give such sections.
fn is_constant_pool(name: &str) -> bool {
    let rest = name.strip_prefix(".l").map_or(name, |r| r);
    let rest = rest.strip_prefix(".rodata").or_else(|| rest.strip_prefix("rodata")).unwrap_or("");
    rest.starts_with(".str") || rest.starts_with(".cst")
}

/// Whether `addr` lies in one of `ranges` (sorted, non-overlapping `[start, end)`).
pub fn in_ranges(ranges: &[(u64, u64)], addr: u64) -> bool {
    let i = ranges.partition_point(|r| r.0 <= addr);
    i > 0 && addr < ranges[i - 1].1
}
