//! Adoption: a new version of a crate takes over the writable sections of the version it
//! replaces, in place.
//!
//! A swap used to copy each static of OLD into NEW. That is wrong whenever anything still runs
//! in OLD after the commit (a task preempted inside it, the base frame of every task, a loop
//! that never returns): OLD's code keeps using its own copy and the two diverge — worse, a
//! lock held by a preempted task is copied *locked* into NEW and never released. So NEW does not
//! get copies: when NEW is loaded for a swap, each of its data, bss and TLS sections that has an
//! exact counterpart in OLD (same size, same symbols at the same offsets with the same sizes,
//! matched by hash-agnostic name) is placed *at OLD's address* (or TLS offset). NEW's code is
//! relocated against that memory, nothing is copied, and old and new code share one state.
//!
//! The memory holding the adopted sections is shared by both crates (the loader's region table
//! counts holders) and outlives OLD's code. An adopted section's own initializer is not written
//! (the memory is live state); its pointer fields are switched at commit only where they still
//! hold what OLD's initializer put there ([`crate::crates::FieldFixup`]).

use crate::crates::LoadedSection;
use crate::elf::SectionKind;
use crate::ids::{CrateId, SectionId};
use crate::loader::Loader;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;

/// A symbol of a section as adoption compares it: hash-agnostic name, offset, size.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SymShape {
    pub name: String,
    pub offset: u64,
    pub size: u64,
}

/// One writable section of OLD that NEW may adopt.
#[derive(Debug, Clone)]
pub(crate) struct OldData {
    pub id: SectionId,
    /// Address, or for TLS sections the thread-pointer offset (two's complement).
    pub addr: u64,
    pub size: u64,
    pub tls: bool,
    pub symbols: Vec<SymShape>,
}

/// What NEW may adopt from OLD, and how to find OLD's counterpart of any of NEW's sections.
#[derive(Debug)]
pub(crate) struct AdoptPlan {
    /// The crate being replaced.
    old: CrateId,
    /// OLD's writable sections that have sized symbols, by the name of the first of them.
    by_key: BTreeMap<String, OldData>,
    /// Every OLD section by its identity ([`identity`]): its address. Built on first need
    /// (only pointer initializers of adopted sections need it).
    identity: Option<BTreeMap<String, u64>>,
    /// OLD sections already adopted during this load.
    claimed: BTreeSet<SectionId>,
}

fn writable(kind: SectionKind) -> bool {
    matches!(kind, SectionKind::Data | SectionKind::Bss | SectionKind::TlsData | SectionKind::TlsBss)
}

/// The identity of a placed section across two builds of one crate: the hash-agnostic name of
/// its first symbol; for an anonymous constant (no symbols, a name like
/// `.lrodata..Lanon.<build hash>.12`, where the hash differs between builds), its name without
/// the hash, its size and a hash of its bytes.
pub(crate) fn identity(sec: &LoadedSection) -> String {
    if let Some(s) = sec.symbols.first() {
        return String::from(s.demangled());
    }
    let stem = match sec.name.find("..Lanon.") {
        Some(i) => &sec.name[..i + 8],
        None => sec.name.as_str(),
    };
    if sec.kind.is_tls() || sec.size == 0 || sec.size > 64 * 1024 {
        return String::from(stem);
    }
    // SAFETY: a placed, non-TLS section of a loaded crate: `size` bytes at `addr` are mapped
    // and readable (its crate's memory is held while it is loaded or being loaded).
    let bytes = unsafe { core::slice::from_raw_parts(sec.addr as *const u8, sec.size as usize) };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    alloc::format!("{stem}#{}#{h:016x}", sec.size)
}

impl AdoptPlan {
    /// The plan for replacing `old`: its writable sections, by the names of their symbols
    /// (demangled once per symbol and cached by the loader).
    pub fn new(l: &Loader, old: CrateId) -> AdoptPlan {
        let mut plan = AdoptPlan { old, by_key: BTreeMap::new(), identity: None, claimed: BTreeSet::new() };
        let Some(k) = l.krate(old) else { return plan };
        for sid in &k.sections {
            let Some(sec) = l.section(*sid) else { continue };
            if !writable(sec.kind) || sec.size == 0 || !sec.symbols.iter().any(|y| y.size > 0) {
                continue;
            }
            let symbols: Vec<SymShape> =
                sec.symbols.iter().map(|y| SymShape { name: String::from(y.demangled()), offset: y.offset, size: y.size }).collect();
            let key = symbols.iter().find(|s| s.size > 0).map(|s| s.name.clone()).unwrap_or_default();
            plan.by_key.entry(key).or_insert(OldData { id: *sid, addr: sec.addr, size: sec.size, tls: sec.kind.is_tls(), symbols });
        }
        plan
    }

    /// The OLD section that NEW's section (of `kind` and `size`, with `symbols` sorted by
    /// offset) adopts, if it has an exact counterpart not adopted yet; claims it.
    pub fn adopt(&mut self, kind: SectionKind, size: u64, symbols: &[SymShape]) -> Option<OldData> {
        if !writable(kind) || size == 0 {
            return None;
        }
        let key = &symbols.iter().find(|s| s.size > 0)?.name;
        let old = self.by_key.get(key)?;
        let same_shape = {
            let mine: BTreeSet<&SymShape> = symbols.iter().filter(|s| s.size > 0).collect();
            let theirs: BTreeSet<&SymShape> = old.symbols.iter().filter(|s| s.size > 0).collect();
            mine == theirs
        };
        if old.size != size || old.tls != kind.is_tls() || !same_shape || self.claimed.contains(&old.id) {
            return None;
        }
        self.claimed.insert(old.id);
        Some(old.clone())
    }

    /// OLD's address of the section with this identity.
    pub fn old_address(&mut self, l: &Loader, identity_of_new: &str) -> Option<u64> {
        let old = self.old;
        let map = self.identity.get_or_insert_with(|| {
            let mut m = BTreeMap::new();
            for sec in l.krate(old).into_iter().flat_map(|k| k.sections.iter()).filter_map(|s| l.section(*s)) {
                if !sec.kind.is_tls() {
                    m.entry(identity(sec)).or_insert(sec.addr);
                }
            }
            m
        });
        map.get(identity_of_new).copied()
    }
}
