//! Swapping crates: replacing loaded crates with new versions while their dependents keep
//! running.
//!
//! Two phases, so that a swap that cannot succeed changes nothing:
//! 1. [`Loader::swap_prepare`] loads each NEW into a scratch namespace whose parent is OLD's
//!    namespace, then checks that every symbol any other crate uses from OLD (every cross-crate
//!    relocation recorded into OLD's sections) exists in NEW under the same hash-agnostic name,
//!    with a compatible kind (code for code, data for data) and, for data, the same size; and
//!    plans the state transfer: each `.data`/`.bss` symbol of OLD is copied to NEW's symbol of
//!    the same name, which must have the same size unless the caller brings a state hook. On
//!    any failure the scratch crates are unloaded and the error lists every problem.
//! 2. [`Loader::swap_commit`] — which the caller runs at a safe point, with no task inside OLD
//!    — copies the state, rewrites every dependent's relocations to point into NEW (making
//!    their pages writable just for the write: W^X holds throughout), runs the caller's hook
//!    (for state that is not plain bytes, such as function pointers OLD registered somewhere),
//!    moves NEW into OLD's namespace under OLD's name, and unloads OLD. If the hook fails, the
//!    relocations are put back and nothing changed.
//!
//! Thread-local variables are not transferred (each task keeps OLD's TLS values in space NEW
//! does not use); references to OLD held in data (function pointers stored at run time) are
//! the hook's job.

use crate::crates::SectionSymbol;
use crate::deps::RelocRecord;
use crate::elf::SectionKind;
use crate::error::LoadError;
use crate::ids::{CrateId, NamespaceId, SectionId};
use crate::loader::Loader;
use crate::memory::{MemoryError, Perms};
use crate::namespace::{ObjectBytes, crate_name_of};
use crate::reloc::{self, RelocKind};
use crate::symbols::agnostic_key;
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
    /// The caller's state hook failed; the swap was rolled back.
    #[error("state hook failed: {0}")]
    Hook(String),
    /// Changing page permissions failed.
    #[error("memory: {0}")]
    Memory(#[from] MemoryError),
}

/// What [`Loader::swap_commit`] calls between relinking and unloading OLD, with the (OLD, NEW)
/// crate pairs; an error rolls the swap back.
pub type CommitHook<'a> = dyn FnMut(&Loader, &[(CrateId, CrateId)]) -> Result<(), String> + 'a;

/// One OLD → NEW replacement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapPair {
    /// OLD's crate name.
    pub old: String,
    /// NEW: an object file name among the namespace's updates or in its directory; `X` also
    /// finds `X.o`, or the single file of crate `X`.
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
    /// Copying state and running the hook.
    pub state_us: u64,
    /// Moving symbols and edges, unloading OLD.
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

#[derive(Debug, Clone)]
struct PairPlan {
    old: CrateId,
    new: CrateId,
    relinks: Vec<Relink>,
    /// (from address, to address, length)
    transfers: Vec<(u64, u64, u64)>,
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
        self.pairs.iter().flat_map(|p| p.transfers.iter().map(|t| t.2)).sum()
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

impl Loader {
    /// Changes whenever a crate is loaded or unloaded.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn scratch_namespace(&mut self, parent: NamespaceId) -> Result<NamespaceId, LoadError> {
        let name = format!("swap:{}", self.ns(parent)?.name);
        if let Some(n) = self.namespaces.iter().find(|n| n.name == name && n.parent == Some(parent)) {
            return Ok(n.id);
        }
        self.add_namespace(&name, Some(parent))
    }

    fn find_new_object(&self, ns: NamespaceId, want: &str) -> Option<(String, ObjectBytes)> {
        for n in self.chain(ns) {
            let nsr = self.namespaces.get(n.0 as usize)?;
            let with_o = format!("{want}.o");
            for map in [&nsr.updates, &nsr.dir] {
                if let Some((f, b)) = map.get_key_value(want).or_else(|| map.get_key_value(with_o.as_str())) {
                    return Some((f.clone(), b.clone()));
                }
            }
            for map in [&nsr.updates, &nsr.dir] {
                let mut hits = map.iter().filter(|(f, _)| crate_name_of(f) == want);
                if let (Some((f, b)), None) = (hits.next(), hits.next()) {
                    return Some((f.clone(), b.clone()));
                }
            }
        }
        None
    }

    fn unload_since(&mut self, first_new: u32) {
        let ids: Vec<CrateId> = self.crates.keys().copied().filter(|c| c.0 >= first_new).collect();
        for id in ids.into_iter().rev() {
            self.remove_crate(id);
        }
    }

    /// Phase 1: loads each NEW beside its OLD and verifies the swap (see the module docs).
    /// `ns` is where OLD crate names are looked up (and its parents). With `state_hook`, data
    /// of different sizes is left to the hook instead of refusing the swap.
    pub fn swap_prepare(&mut self, ns: NamespaceId, pairs: &[SwapPair], state_hook: bool) -> Result<Prepared, SwapError> {
        let t0 = self.now();
        let mut olds = Vec::new();
        for p in pairs {
            let id = self.crate_by_name(ns, &p.old).ok_or_else(|| SwapError::NotLoaded(p.old.clone()))?;
            if self.crates.get(&id).is_some_and(|k| k.prelinked) {
                return Err(SwapError::Incompatible {
                    krate: p.old.clone(),
                    problems: alloc::vec!["prelinked crates (nano_core) cannot be swapped".into()],
                });
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
            let found = self.find_new_object(old_ns, &p.new_file);
            let Some((file, bytes)) = found else {
                self.unload_since(first_new);
                let namespace = self.namespaces[old_ns.0 as usize].name.clone();
                return Err(SwapError::NoSuchObject { file: p.new_file.clone(), namespace });
            };
            let scratch = self.scratch_namespace(old_ns).map_err(|source| SwapError::Load { file: file.clone(), source })?;
            // A file of the same crate name may still sit in the scratch namespace's map from a
            // failed attempt; the load below reports that as AlreadyLoaded.
            match self.load(scratch, &file, bytes) {
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
            // NEW's symbols by hash-agnostic name; globals win over locals of the same name.
            let mut new_syms: BTreeMap<String, (SectionId, u64, u64, bool)> = BTreeMap::new();
            for sid in &self.crates[&new].sections {
                let sec = &self.sections.get(sid).expect("crate sections exist");
                for y in &sec.symbols {
                    let e = new_syms.entry(agnostic_key(&y.raw)).or_insert((*sid, y.offset, y.size, y.global));
                    if y.global && !e.3 {
                        *e = (*sid, y.offset, y.size, y.global);
                    }
                }
            }
            let mut problems = Vec::new();
            let mut relinks = Vec::new();
            let mut transfers = Vec::new();
            let mut sizes = Vec::new();
            for sid in self.crates[&old].sections.clone() {
                let old_sec = self.sections.get(&sid).expect("crate sections exist").clone();
                for rec in self.deps.relocs_into(sid).to_vec() {
                    let user_crate = self.sections.get(&rec.user).map(|s| s.krate);
                    if user_crate.is_some_and(|c| olds.contains(&c)) {
                        continue; // a crate being replaced in the same swap
                    }
                    let Some(old_sym) = symbol_covering(&old_sec.symbols, rec.target_offset) else {
                        problems.push(format!("a relocation points into {} at {:#x}, where no symbol is", old_sec.name, rec.target_offset));
                        continue;
                    };
                    let name = agnostic_key(&old_sym.raw);
                    let Some(&(new_sid, new_off, new_size, _)) = new_syms.get(&name) else {
                        if !problems.iter().any(|p| p == &format!("missing `{name}`")) {
                            problems.push(format!("missing `{name}`"));
                        }
                        continue;
                    };
                    let new_sec = self.sections.get(&new_sid).expect("new sections exist");
                    if !compatible(old_sec.kind, new_sec.kind) {
                        problems.push(format!("`{name}` is {:?} in the old version but {:?} in the new", old_sec.kind, new_sec.kind));
                        continue;
                    }
                    if is_data(old_sec.kind) && old_sym.size != new_size {
                        problems.push(format!("`{name}` is {} bytes in the old version but {new_size} in the new", old_sym.size));
                        continue;
                    }
                    let new_value = new_sec.addr + new_off + (rec.target_offset - old_sym.offset);
                    relinks.push(Relink { record: rec, new_used: new_sid, new_value });
                }
                if is_data(old_sec.kind) {
                    for y in old_sec.symbols.iter().filter(|y| y.size > 0) {
                        let name = agnostic_key(&y.raw);
                        match new_syms.get(&name) {
                            Some(&(nsid, noff, nsize, _)) if self.sections.get(&nsid).is_some_and(|s| is_data(s.kind)) => {
                                if nsize == y.size {
                                    let to = self.sections.get(&nsid).expect("exists").addr + noff;
                                    transfers.push((old_sec.addr + y.offset, to, y.size));
                                    report.push(format!("state: {name} ({} bytes) copied", y.size));
                                } else if state_hook {
                                    report.push(format!("state: {name} changes size ({} -> {nsize} bytes): left to the hook", y.size));
                                } else {
                                    sizes.push(format!("{name} (old {} bytes, new {nsize} bytes)", y.size));
                                }
                            }
                            _ => report.push(format!("state: {name} ({} bytes) is not in the new version: dropped", y.size)),
                        }
                    }
                }
            }
            report.push(format!("{old_name}: {} relocations in other crates will point into the new version", relinks.len()));
            if !problems.is_empty() && incompatible.is_none() {
                incompatible = Some((old_name.clone(), problems));
            }
            if !sizes.is_empty() && size_problems.is_none() {
                size_problems = Some((old_name.clone(), sizes));
            }
            plans.push(PairPlan { old, new, relinks, transfers });
        }
        if let Some((krate, problems)) = incompatible {
            self.unload_since(first_new);
            return Err(SwapError::Incompatible { krate, problems });
        }
        if let Some((krate, symbols)) = size_problems {
            self.unload_since(first_new);
            return Err(SwapError::StateSize { krate, symbols });
        }
        let t2 = self.now();
        Ok(Prepared {
            first_new,
            generation: self.generation,
            pairs: plans,
            times: SwapTimes { load_us: t1.saturating_sub(t0), verify_us: t2.saturating_sub(t1), ..Default::default() },
            report,
        })
    }

    /// Drops a prepared swap: unloads the new versions (and anything loaded for them).
    pub fn swap_abort(&mut self, p: Prepared) {
        self.unload_since(p.first_new);
    }

    /// Writes `value` for one recorded relocation, making the page writable for the write.
    /// Returns the bytes that were there.
    fn rewrite(&mut self, rec: &RelocRecord, value: u64) -> Result<[u8; 8], SwapError> {
        let sec = self.sections.get(&rec.user).expect("users of live sections exist");
        let place = sec.addr + rec.offset;
        let k = self.crates.get(&sec.krate).expect("section's crate exists");
        let kind = RelocKind::from_type(rec.r_type).unwrap_or(RelocKind::None);
        let Some(region) = k.memory.as_ref() else { return Ok([0; 8]) };
        let Some(&(_, _, perms)) = k.parts.iter().find(|(a, l, _)| place >= *a && place < a + l) else { return Ok([0; 8]) };
        let page = place & !(crate::loader::PAGE_SIZE - 1);
        let last = (place + kind.width() as u64 - 1) & !(crate::loader::PAGE_SIZE - 1);
        let (off, len) = ((page - region.addr()) as usize, (last - page + crate::loader::PAGE_SIZE) as usize);
        if perms != Perms::ReadWrite {
            // Writable (and not executable) only while the value is written.
            self.memory.protect(region, off, len, Perms::ReadWrite)?;
        }
        let mut saved = [0u8; 8];
        // SAFETY: `place..place+width` lies inside the user section of a loaded crate, whose
        // page was just made writable; interrupts/other tasks are held off by the caller (the
        // safe point), so nothing executes or reads it meanwhile.
        let bytes = unsafe { core::slice::from_raw_parts_mut(place as *mut u8, kind.width()) };
        saved[..bytes.len()].copy_from_slice(bytes);
        let _ = reloc::apply(kind, bytes, 0, i128::from(value), rec.addend, place);
        if perms != Perms::ReadWrite {
            self.memory.protect(region, off, len, perms)?;
        }
        Ok(saved)
    }

    fn restore(&mut self, rec: &RelocRecord, saved: [u8; 8]) {
        // Puts back the bytes `rewrite` replaced (rollback after a failed hook).
        let Some(sec) = self.sections.get(&rec.user) else { return };
        let place = sec.addr + rec.offset;
        let Some(k) = self.crates.get(&sec.krate) else { return };
        let width = RelocKind::from_type(rec.r_type).map_or(0, |k| k.width());
        let (Some(region), Some(&(_, _, perms))) = (k.memory.as_ref(), k.parts.iter().find(|(a, l, _)| place >= *a && place < a + l))
        else {
            return;
        };
        let page = place & !(crate::loader::PAGE_SIZE - 1);
        let off = (page - region.addr()) as usize;
        let len = crate::loader::PAGE_SIZE as usize * 2;
        let len = len.min(region.size() - off);
        let _ = self.memory.protect(region, off, len, Perms::ReadWrite);
        // SAFETY: as in `rewrite`: inside a loaded section, page writable, caller holds others.
        unsafe { core::ptr::copy_nonoverlapping(saved.as_ptr(), place as *mut u8, width) };
        let _ = self.memory.protect(region, off, len, perms);
    }

    /// Phase 2: commits a prepared swap (call it at a safe point: no task executing, or
    /// returning into, an OLD crate). `hook` runs after the relocations point into NEW and the
    /// state is copied, before OLD is unloaded; if it fails, everything is put back and the
    /// new versions are unloaded.
    pub fn swap_commit(&mut self, p: Prepared, hook: &mut CommitHook<'_>) -> Result<SwapTimes, SwapError> {
        if p.generation != self.generation {
            self.swap_abort(p);
            return Err(SwapError::Stale);
        }
        let mut times = p.times;
        let t0 = self.now();
        let mut done: Vec<(RelocRecord, [u8; 8])> = Vec::new();
        for plan in &p.pairs {
            for r in &plan.relinks {
                match self.rewrite(&r.record, r.new_value) {
                    Ok(saved) => done.push((r.record, saved)),
                    Err(e) => {
                        for (rec, saved) in done.into_iter().rev() {
                            self.restore(&rec, saved);
                        }
                        self.swap_abort(p);
                        return Err(e);
                    }
                }
            }
        }
        let t1 = self.now();
        for plan in &p.pairs {
            for &(from, to, len) in &plan.transfers {
                // SAFETY: `from` is a data symbol of OLD and `to` one of NEW (read-write), both
                // loaded and of `len` bytes (checked in prepare); they never overlap.
                unsafe { core::ptr::copy_nonoverlapping(from as *const u8, to as *mut u8, len as usize) };
            }
        }
        let pairs = p.pairs();
        if let Err(e) = hook(self, &pairs) {
            for (rec, saved) in done.into_iter().rev() {
                self.restore(&rec, saved);
            }
            self.swap_abort(p);
            return Err(SwapError::Hook(e));
        }
        let t2 = self.now();
        for plan in &p.pairs {
            let old_name = self.crates[&plan.old].name.clone();
            let old_ns = self.crates[&plan.old].namespace;
            self.remove_crate(plan.old);
            // Move NEW into OLD's namespace under OLD's name, with its symbols.
            let (new_ns, new_name, exported) = {
                let k = self.crates.get(&plan.new).expect("new crate exists");
                (k.namespace, k.name.clone(), k.exported.clone())
            };
            let mut moved = Vec::new();
            for key in exported {
                if let Some(r) = self.namespaces[new_ns.0 as usize].symbols.get_exact(&key) {
                    self.namespaces[new_ns.0 as usize].symbols.remove_if_owned(&key, plan.new);
                    if self.namespaces[old_ns.0 as usize].symbols.insert(key.clone(), r) {
                        moved.push(key);
                    }
                }
            }
            self.namespaces[new_ns.0 as usize].crates.remove(&new_name);
            self.namespaces[old_ns.0 as usize].crates.insert(old_name.clone(), plan.new);
            if let Some(k) = self.crates.get_mut(&plan.new) {
                k.namespace = old_ns;
                k.name = old_name;
                k.exported = moved;
            }
            for r in &plan.relinks {
                let base = self.sections.get(&r.new_used).map_or(0, |s| s.addr);
                let rec = RelocRecord { target_offset: r.new_value - base, ..r.record };
                self.deps.add_reloc(r.new_used, rec);
            }
        }
        self.generation += 1;
        let t3 = self.now();
        times.relink_us = t1.saturating_sub(t0);
        times.state_us = t2.saturating_sub(t1);
        times.cleanup_us = t3.saturating_sub(t2);
        Ok(times)
    }

    /// Prepares and, if that succeeds, commits at once (for callers that need no safe point,
    /// such as host tools and tests).
    pub fn swap(&mut self, ns: NamespaceId, pairs: &[SwapPair]) -> Result<SwapTimes, SwapError> {
        let p = self.swap_prepare(ns, pairs, false)?;
        self.swap_commit(p, &mut |_, _| Ok(()))
    }
}

impl From<&str> for SwapPair {
    /// `"OLD=NEW"`.
    fn from(s: &str) -> SwapPair {
        let (old, new) = s.split_once('=').unwrap_or((s, s));
        SwapPair { old: old.to_string(), new_file: new.to_string() }
    }
}
