//! crate_swap: swapping crates in the running kernel.
//!
//! mod_mgmt does the mechanism (load NEW beside OLD, verify, relink, transfer state). This
//! crate adds what only the running kernel can: the safe point. Commit happens with interrupts
//! off (no other task runs) and only when no task's stack holds a word pointing into an OLD
//! crate — a resume point, a return address, a saved register — except pointers to the start
//! of an OLD symbol (function or static) that NEW also defines: those are pointers a task
//! hoisted into a register (a loop calling the same function keeps its address in a
//! callee-saved register, which the relinked call instruction no longer feeds; a scheduler
//! keeps `&POLICY`), and they are rewritten to NEW's symbol along with the relocations. Otherwise it waits a little and tries again, and
//! reports the busy task if that never happens. OLD is therefore never executing, returning
//! into, or referenced from a stack when it is unloaded, so its memory is freed at once.
//!
//! A state hook is a function NEW exports, `fn(&OldState) -> Result<(), String>`, called after
//! the relink and the by-name state copy, still at the safe point: it converts state whose
//! layout changed and re-registers anything OLD registered by address (a scheduler policy, for
//! example). It must not use the loader (which is locked meanwhile).
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use mod_mgmt::swap::{Prepared, SwapError, SwapPair, SwapTimes};
use mod_mgmt::{CrateId, Loader};

/// Crates the swapping task is executing while it swaps.
const SELF: &[&str] = &["crate_swap", "swap", "shell", "task", "nano_core"];

/// OLD's statics, for a state hook: `(hash-agnostic name, address, size)`.
pub struct OldState {
    /// Every data/bss symbol of the OLD crates.
    pub statics: Vec<(String, u64, u64)>,
}

impl OldState {
    /// The bytes of OLD's static `name` (hash-agnostic, e.g. `scheduler::QUEUE`).
    pub fn bytes(&self, name: &str) -> Option<&[u8]> {
        let &(_, addr, size) = self.statics.iter().find(|(n, _, _)| n == name)?;
        // SAFETY: the address and size come from OLD's loaded data sections, which stay mapped
        // until the hook returns (OLD is unloaded after it).
        Some(unsafe { core::slice::from_raw_parts(addr as *const u8, size as usize) })
    }
}

/// A state hook's signature.
pub type StateHook = fn(&OldState) -> Result<(), String>;

/// How to swap.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Stop after phase 1.
    pub dry_run: bool,
    /// Name of the state hook NEW exports (hash-agnostic), e.g. `scheduler::swap_hook`.
    pub state_hook: Option<String>,
    /// How many times to look for a safe point (2 ms apart).
    pub attempts: u32,
}

/// What a swap did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Per-phase times.
    pub times: SwapTimes,
    /// The plan, one line per item.
    pub report: Vec<String>,
    /// Relocations rewritten.
    pub relinked: usize,
    /// Bytes of state copied by name.
    pub state_bytes: u64,
    /// Safe-point attempts that found a task inside OLD.
    pub waited: u32,
    /// Whether it was only a dry run.
    pub dry_run: bool,
}

fn applications(l: &Loader) -> Result<mod_mgmt::NamespaceId, String> {
    l.namespace_by_name("applications").map_err(|e| format!("{e}"))
}

/// Start addresses of OLD's symbols (functions and statics) that NEW defines too: OLD address
/// → NEW address.
fn moved_symbols(l: &Loader, pairs: &[(CrateId, CrateId)]) -> alloc::collections::BTreeMap<u64, u64> {
    let mut out = alloc::collections::BTreeMap::new();
    for (old, new) in pairs {
        let mut new_fns = alloc::collections::BTreeMap::new();
        for (k, map) in [(new, &mut new_fns)] {
            let Some(c) = l.krate(*k) else { continue };
            for sec in c.sections.iter().filter_map(|s| l.section(*s)).filter(|s| !s.kind.is_tls()) {
                for y in &sec.symbols {
                    map.insert((mod_mgmt::agnostic_key(&y.raw), sec.kind == mod_mgmt::SectionKind::Text), sec.addr + y.offset);
                }
            }
        }
        let Some(c) = l.krate(*old) else { continue };
        for sec in c.sections.iter().filter_map(|s| l.section(*s)).filter(|s| !s.kind.is_tls()) {
            for y in &sec.symbols {
                if let Some(&n) = new_fns.get(&(mod_mgmt::agnostic_key(&y.raw), sec.kind == mod_mgmt::SectionKind::Text)) {
                    out.insert(sec.addr + y.offset, n);
                }
            }
        }
    }
    out
}

/// The first task (id, name, word) whose stack points into `ranges` other than at a function
/// in `moved`, if any.
fn busy(ranges: &[(u64, u64)], moved: &alloc::collections::BTreeMap<u64, u64>) -> Option<(task::TaskId, String, u64)> {
    let mut found = None;
    let me = task::current();
    task::for_each_stack_word(&mut |id, name, w| {
        // The swapping task itself runs only this crate, mod_mgmt and the swap command (which
        // cannot be swapped while in use); its dead stack slots may hold addresses computed
        // during verification.
        if found.is_none() && id != me && ranges.iter().any(|&(s, e)| *w >= s && *w < e) && !moved.contains_key(w) {
            found = Some((id, String::from(name), *w));
        }
    });
    found
}

/// Rewrites stack words that hold moved function addresses; returns how many.
fn relink_stacks(moved: &alloc::collections::BTreeMap<u64, u64>) -> usize {
    let mut n = 0;
    let me = task::current();
    task::for_each_stack_word(&mut |id, _, w| {
        if id == me {
            return;
        }
        if let Some(&new) = moved.get(w) {
            *w = new;
            n += 1;
        }
    });
    n
}

fn old_ranges(l: &Loader, pairs: &[(CrateId, CrateId)]) -> Vec<(u64, u64)> {
    pairs
        .iter()
        .filter_map(|(old, _)| l.krate(*old))
        .flat_map(|k| k.regions().map(|(a, s, _)| (a, a + s as u64)).collect::<Vec<_>>())
        .collect()
}

fn find_hook(l: &Loader, new: CrateId, name: &str) -> Option<u64> {
    let k = l.krate(new)?;
    k.sections
        .iter()
        .filter_map(|s| l.section(*s))
        .find_map(|sec| sec.symbols.iter().find(|y| y.global && mod_mgmt::agnostic_key(&y.raw) == name).map(|y| sec.addr + y.offset))
}

fn old_statics(l: &Loader, pairs: &[(CrateId, CrateId)]) -> OldState {
    let mut statics = Vec::new();
    for (old, _) in pairs {
        let Some(k) = l.krate(*old) else { continue };
        for sec in k.sections.iter().filter_map(|s| l.section(*s)) {
            if matches!(sec.kind, mod_mgmt::SectionKind::Data | mod_mgmt::SectionKind::Bss) {
                for y in &sec.symbols {
                    statics.push((mod_mgmt::agnostic_key(&y.raw), sec.addr + y.offset, y.size));
                }
            }
        }
    }
    OldState { statics }
}

/// Swaps each OLD crate (looked up from the applications namespace, so kernel crates are found
/// too) for NEW. On error nothing changed.
pub fn swap(pairs: &[SwapPair], opts: &Options) -> Result<Outcome, String> {
    if let Some(p) = pairs.iter().find(|p| SELF.contains(&p.old.as_str())) {
        return Err(format!("{} runs the swap itself and cannot be swapped by it", p.old));
    }
    let hook_wanted = opts.state_hook.is_some();
    let prepared: Prepared = nano_core::kernel::with_loader(|l| {
        let ns = applications(l)?;
        l.swap_prepare(ns, pairs, hook_wanted).map_err(|e| format!("{e}"))
    })?;
    let report = prepared.report.clone();
    let (relinked, state_bytes) = (prepared.relink_count(), prepared.state_bytes());
    if opts.dry_run {
        let times = prepared.times;
        nano_core::kernel::with_loader(|l| l.swap_abort(prepared));
        return Ok(Outcome { times, report, relinked, state_bytes, waited: 0, dry_run: true });
    }
    if let Some(h) = &opts.state_hook {
        let missing = nano_core::kernel::with_loader(|l| prepared.pairs().iter().all(|(_, new)| find_hook(l, *new, h).is_none()));
        if missing {
            nano_core::kernel::with_loader(|l| l.swap_abort(prepared));
            return Err(format!("no new version exports the state hook {h}"));
        }
    }
    let mut prepared = Some(prepared);
    let mut waited = 0;
    let attempts = opts.attempts.max(1);
    loop {
        let attempt = x86_64::instructions::interrupts::without_interrupts(|| {
            nano_core::kernel::with_loader(|l| {
                let p = prepared.take().expect("prepared swap is present until committed");
                let moved = moved_symbols(l, &p.pairs());
                if let Some((id, name, addr)) = busy(&old_ranges(l, &p.pairs()), &moved) {
                    let at = l.addr2sym(addr).and_then(|i| i.symbol).unwrap_or_default();
                    prepared = Some(p);
                    return Err((id, name, addr, at));
                }
                let hook_name = opts.state_hook.clone();
                let result = l.swap_commit(p, &mut |l, pairs| {
                    let Some(h) = &hook_name else { return Ok(()) };
                    let state = old_statics(l, pairs);
                    for (_, new) in pairs {
                        if let Some(addr) = find_hook(l, *new, h) {
                            // SAFETY: the symbol is a function of a loaded NEW crate with the
                            // StateHook signature (the contract of `--state`); same build.
                            let f: StateHook = unsafe { core::mem::transmute::<usize, StateHook>(addr as usize) };
                            f(&state)?;
                        }
                    }
                    Ok(())
                });
                let stack_words = if result.is_ok() { relink_stacks(&moved) } else { 0 };
                Ok(result.map(|t| (t, stack_words)))
            })
        });
        match attempt {
            Ok(Ok((times, stack_words))) => {
                let mut report = report;
                if stack_words > 0 {
                    report.push(format!("{stack_words} pointers on task stacks now point into the new version"));
                }
                return Ok(Outcome { times, report, relinked: relinked + stack_words, state_bytes, waited, dry_run: false });
            }
            Ok(Err(SwapError::Stale)) => {
                return Err("the loaded crates changed during the swap; nothing was changed, try again".to_string());
            }
            Ok(Err(e)) => return Err(format!("{e}")),
            Err((id, name, addr, at)) => {
                waited += 1;
                if waited >= attempts {
                    if let Some(p) = prepared.take() {
                        nano_core::kernel::with_loader(|l| l.swap_abort(p));
                    }
                    return Err(format!(
                        "no safe point after {waited} attempts: task {id} ({name}) is inside the old code at {addr:#x} ({at}); nothing was changed"
                    ));
                }
                task::sleep_ms(2);
            }
        }
    }
}
