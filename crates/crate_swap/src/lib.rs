//! crate_swap: swapping crates in the running kernel, and reclaiming the versions they replace.
//!
//! mod_mgmt does the mechanism (load NEW beside OLD adopting its statics, verify, relink,
//! retire OLD). This crate adds what only the running kernel knows:
//!
//! - **Registrations.** Hooks ([`nano_core::hooks`]) and interrupt gates hold addresses of
//!   functions and statics that no relocation records. Before anything changes, every one that
//!   points into an OLD crate must have an equivalent in NEW (same symbol); a swap that would
//!   leave one dangling is refused, naming it. At commit they move to NEW.
//! - **When to commit.** At once, with interrupts off: NEW shares OLD's statics (adoption), so
//!   tasks still inside OLD finish there on the same state, and new calls go to NEW. Only a
//!   swap that copies state (a static changed shape, a `--state` hook) waits until no task is
//!   inside OLD, because such a task would keep using the old copy.
//! - **Function addresses on stacks.** A loop that keeps a function's address in a register
//!   would call the old version forever; stack words holding the exact entry of an OLD
//!   function are rewritten to NEW's entry.
//! - **Conventional re-registration.** If NEW exports `<crate>::swap_init` (`fn()`), it runs
//!   right after the commit, for registrations no facility moves.
//! - **Caches that hold old code.** After every committed swap, each live crate that exports
//!   `<crate>::after_swap` (`fn()`) is called, with the loader released: a crate that keeps
//!   things made by other crates' code (the WASM code cache keeps modules compiled by the
//!   engine, which hold the engine's vtables) drops them there, or they would keep retired
//!   versions alive forever.
//! - **Reclaiming.** A retired crate's memory is freed only when nothing refers to it: a
//!   stop-the-world scan ([`reclaim`]) reads every live crate's writable data, nano_core's
//!   data, the general heap, every task's stack (the scanning task's own return addresses
//!   only), JIT code and the interrupt gates. A reaper task runs it after a swap, off the
//!   swap's critical path, and again with back-off while retired crates remain.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use mod_mgmt::swap::{OldState, Prepared, StateHook, SwapError, SwapPair, SwapTimes, Translation};
use mod_mgmt::{CrateId, Loader, Perms};
use nano_core::hooks::Holder;

/// How to swap.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Stop after phase 1.
    pub dry_run: bool,
    /// Name of the state hook NEW exports (hash-agnostic), e.g. `scheduler::swap_hook`.
    pub state_hook: Option<String>,
    /// How many times to look for a moment with no task inside OLD (2 ms apart), when the swap
    /// copies state.
    pub attempts: u32,
    /// Do not start the reaper (a caller that reclaims itself, like the leak check).
    pub no_reaper: bool,
    /// The namespace whose crates are swapped (default `applications`, which sees the kernel's
    /// crates too); a namespace made at run time swaps only its own crates and dependents.
    pub namespace: Option<String>,
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
    /// Bytes of state the new versions share with the old ones.
    pub adopted_bytes: u64,
    /// Hooks and interrupt gates moved to the new versions.
    pub hooks_moved: usize,
    /// Function addresses on task stacks moved to the new versions.
    pub stack_words: usize,
    /// Attempts that found a task inside OLD (only for swaps that copy state).
    pub waited: u32,
    /// Whether it was only a dry run.
    pub dry_run: bool,
}

/// Why a swap was refused. Nothing changed whenever one is returned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The loader refused it (boxed: a swap error carries a whole load error, and `Result`s of
    /// this type are passed around on every swap path).
    Swap(alloc::boxed::Box<SwapError>),
    /// A registration points into OLD where NEW has no equivalent.
    Dangling {
        /// What holds the address.
        holder: String,
        /// The address.
        addr: u64,
        /// OLD's symbol there.
        symbol: Option<String>,
        /// Why it cannot move.
        reason: &'static str,
    },
    /// `--state` names a hook no NEW exports.
    NoStateHook(String),
    /// A swap scoped to a namespace names a crate that is not loaded in it.
    NotInNamespace {
        /// The crate.
        krate: String,
        /// The namespace.
        namespace: String,
    },
    /// The swap copies state and a task stayed inside OLD.
    Busy {
        /// How often it was tried.
        attempts: u32,
        /// The task.
        task: u64,
        /// Its name.
        name: String,
        /// The word on its stack.
        addr: u64,
        /// What that word names.
        at: String,
    },
    /// Another CPU that runs tasks did not stop for the commit, in every attempt.
    WorldNotStopped {
        /// How often it was tried.
        attempts: u32,
        /// Why the last attempt failed.
        why: String,
    },
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Swap(e) if matches!(**e, SwapError::Stale) => {
                write!(f, "the loaded crates changed during the swap; nothing was changed, try again")
            }
            Error::Swap(e) => write!(f, "{e}"),
            Error::Dangling { holder, addr, symbol, reason } => write!(
                f,
                "{holder} holds {addr:#x} ({}) in the old version, and {reason}; nothing was changed",
                symbol.as_deref().unwrap_or("no symbol")
            ),
            Error::NoStateHook(h) => write!(f, "no new version exports the state hook {h}"),
            Error::NotInNamespace { krate, namespace } => {
                write!(
                    f,
                    "crate {krate} is not loaded in namespace {namespace} (a scoped swap replaces only that namespace's own crates); nothing was changed"
                )
            }
            Error::Busy { attempts, task, name, addr, at } => write!(
                f,
                "this swap copies state, and after {attempts} attempts task {task} ({name}) is still inside the old code at {addr:#x} ({at}); nothing was changed"
            ),
            Error::WorldNotStopped { attempts, why } => {
                write!(f, "the other CPUs must stop for the commit, and after {attempts} attempts: {why}; nothing was changed")
            }
        }
    }
}

impl core::error::Error for Error {}

impl From<SwapError> for Error {
    fn from(e: SwapError) -> Error {
        Error::Swap(alloc::boxed::Box::new(e))
    }
}

fn applications(l: &Loader) -> Result<mod_mgmt::NamespaceId, Error> {
    l.namespace_by_name("applications").map_err(|e| Error::from(SwapError::Load { file: "applications".into(), source: e }))
}

/// Every registration that points into an OLD crate must have an equivalent in NEW.
fn check_registrations(l: &Loader, p: &Prepared) -> Result<(), Error> {
    let mut bad = None;
    nano_core::hooks::references(&mut |holder, addr| {
        if bad.is_none()
            && let Translation::Unmappable { symbol, reason } = p.translate(l, addr)
        {
            bad = Some(Error::Dangling { holder: holder.to_string(), addr, symbol, reason });
        }
    });
    bad.map_or(Ok(()), Err)
}

/// Other tasks' stack words that hold the entry of an OLD function NEW also has, with NEW's
/// entry (function addresses a loop keeps in a register, spilled on its stack).
fn stack_functions(l: &Loader, p: &Prepared, ranges: &[(u64, u64)]) -> BTreeMap<u64, u64> {
    let mut words = alloc::collections::BTreeSet::new();
    let me = task::current();
    task::for_each_stack_word(&mut |id, _, w| {
        if id != me && mod_mgmt::swap::in_ranges(ranges, *w) {
            words.insert(*w);
        }
    });
    words
        .into_iter()
        .filter(|w| {
            l.symbol_at(*w).is_some_and(|(sec, _, sym)| sec.kind == mod_mgmt::SectionKind::Text && sym.is_some_and(|(_, off)| off == 0))
        })
        .filter_map(|w| match p.translate(l, w) {
            Translation::Moved(n) => Some((w, n)),
            _ => None,
        })
        .collect()
}

/// The first other task whose stack points into `ranges` other than at a function in `moved`.
fn busy(ranges: &[(u64, u64)], moved: &BTreeMap<u64, u64>) -> Option<(task::TaskId, String, u64)> {
    let mut found = None;
    let me = task::current();
    task::for_each_stack_word(&mut |id, name, w| {
        if found.is_none() && id != me && mod_mgmt::swap::in_ranges(ranges, *w) && !moved.contains_key(w) {
            found = Some((id, String::from(name), *w));
        }
    });
    found
}

/// Rewrites other tasks' stack words that hold moved function entries; returns how many.
fn relink_stacks(moved: &BTreeMap<u64, u64>) -> usize {
    let mut n = 0;
    let me = task::current();
    task::for_each_stack_word(&mut |id, _, w| {
        if id != me
            && let Some(&new) = moved.get(w)
        {
            *w = new;
            n += 1;
        }
    });
    n
}

/// What one attempt at committing found.
enum Attempt {
    Done(Outcome),
    Busy(Prepared, task::TaskId, String, u64),
    /// Another CPU did not stop (see `nano_core::stw`).
    Late(Prepared, String),
}

/// Commits `p` now, with interrupts off (the caller holds the loader), with every other CPU that
/// runs tasks stopped (`nano_core::stw`) from the scan of the stacks to the relink of their
/// words: their tasks can neither enter the old code after the scan nor keep a word the relink
/// missed. The new versions' `swap_init` runs after they go on.
fn commit(l: &mut Loader, p: Prepared, state_hook: Option<u64>, recheck: bool) -> Result<Attempt, Error> {
    let world = match nano_core::stw::stop_others() {
        Ok(w) => w,
        Err(e) => return Ok(Attempt::Late(p, e.to_string())),
    };
    let ranges = p.old_busy_ranges(l);
    let moved = stack_functions(l, &p, &ranges);
    if p.needs_quiescence
        && let Some((id, name, addr)) = busy(&ranges, &moved)
    {
        return Ok(Attempt::Busy(p, id, name, addr));
    }
    let (report, relinked, state_bytes, adopted_bytes) = (p.report.clone(), p.relink_count(), p.state_bytes(), p.adopted_bytes());
    let inits: Vec<u64> = p
        .pairs()
        .iter()
        .filter_map(|(old, _)| l.krate(*old).map(|k| format!("{}::swap_init", k.name)))
        .filter_map(|name| p.new_export(&name))
        .collect();
    let mut hooks_moved = 0;
    let times = l.swap_commit(p, &mut |l, p| {
        if let Some(addr) = state_hook {
            // SAFETY: the symbol is a function NEW exports with the `StateHook` signature (the
            // contract of `--state`); same build as this crate.
            let f: StateHook = unsafe { core::mem::transmute::<usize, StateHook>(addr as usize) };
            f(&OldState::of(l, p)).map_err(|e| format!("state hook failed: {e}"))?;
        }
        // Checked in prepare; re-checked if other tasks ran since (they may have registered more).
        if recheck {
            check_registrations(l, p).map_err(|e| e.to_string())?;
        }
        hooks_moved = nano_core::hooks::relink(&mut |a| match p.translate(l, a) {
            Translation::Moved(n) => Some(n),
            _ => None,
        });
        Ok(())
    })?;
    let stack_words = relink_stacks(&moved);
    drop(world);
    for addr in inits {
        // SAFETY: `<crate>::swap_init` is, by convention, a `fn()` the new version exports.
        let f: fn() = unsafe { core::mem::transmute::<usize, fn()>(addr as usize) };
        f();
    }
    Ok(Attempt::Done(Outcome { times, report, relinked, state_bytes, adopted_bytes, hooks_moved, stack_words, waited: 0, dry_run: false }))
}

/// Swaps each OLD crate (looked up from the applications namespace, so kernel crates are found
/// too) for NEW. On error nothing changed.
pub fn swap(pairs: &[SwapPair], opts: &Options) -> Result<Outcome, Error> {
    let hook_wanted = opts.state_hook.is_some();
    let first = nano_core::kernel::with_loader_mut(|l| -> Result<Attempt, Error> {
        let ns = match &opts.namespace {
            Some(n) => {
                let ns = l.namespace_by_name(n).map_err(|e| Error::from(SwapError::Load { file: n.clone(), source: e }))?;
                if let Some(p) = pairs.iter().find(|p| l.namespace(ns).is_none_or(|n| !n.crates.contains_key(&p.old))) {
                    return Err(Error::NotInNamespace { krate: p.old.clone(), namespace: n.clone() });
                }
                ns
            }
            None => applications(l)?,
        };
        let p = l.swap_prepare(ns, pairs, hook_wanted)?;
        if let Err(e) = check_registrations(l, &p) {
            l.swap_abort(p);
            return Err(e);
        }
        let state_hook = match &opts.state_hook {
            Some(h) => match p.new_export(h) {
                Some(a) => Some(a),
                None => {
                    l.swap_abort(p);
                    return Err(Error::NoStateHook(h.clone()));
                }
            },
            None => None,
        };
        if opts.dry_run {
            let o = Outcome {
                times: p.times,
                report: p.report.clone(),
                relinked: p.relink_count(),
                state_bytes: p.state_bytes(),
                adopted_bytes: p.adopted_bytes(),
                hooks_moved: 0,
                stack_words: 0,
                waited: 0,
                dry_run: true,
            };
            l.swap_abort(p);
            return Ok(Attempt::Done(o));
        }
        commit(l, p, state_hook, false)
    })?;
    let mut waited = 0;
    let mut attempt = first;
    loop {
        match attempt {
            Attempt::Done(mut o) => {
                o.waited = waited;
                if !o.dry_run {
                    // Looked up after the commit: a swapped crate's new version is the one called.
                    nano_core::kernel::call_crate_hooks("after_swap", &|_| true);
                }
                if !o.dry_run && !opts.no_reaper {
                    start_reaper();
                }
                return Ok(o);
            }
            Attempt::Late(p, why) => {
                waited += 1;
                if waited >= opts.attempts.max(1) {
                    nano_core::kernel::with_loader_mut(|l| l.swap_abort(p));
                    return Err(Error::WorldNotStopped { attempts: waited, why });
                }
                attempt = retry(p, opts)?;
            }
            Attempt::Busy(p, id, name, addr) => {
                waited += 1;
                if waited >= opts.attempts.max(1) {
                    let at = nano_core::kernel::with_loader_mut(|l| {
                        let at = l.addr2sym(addr).and_then(|i| i.symbol).unwrap_or_default();
                        l.swap_abort(p);
                        at
                    });
                    return Err(Error::Busy { attempts: waited, task: id, name, addr, at });
                }
                attempt = retry(p, opts)?;
            }
        }
    }
}

/// Another attempt at committing `p`, 2 ms after the last (the other tasks run meanwhile).
fn retry(p: Prepared, opts: &Options) -> Result<Attempt, Error> {
    task::sleep_ms(2);
    let hook = opts.state_hook.clone();
    nano_core::kernel::with_loader_mut(|l| {
        let state_hook = hook.as_deref().and_then(|h| p.new_export(h));
        commit(l, p, state_hook, true)
    })
}

/// A retired crate the scan found still referenced, and by what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Crate name.
    pub name: String,
    /// Its id.
    pub id: u32,
    /// Bytes it keeps.
    pub bytes: u64,
    /// The first reference found: what holds it and where.
    pub holder: String,
}

/// What a reclaim pass did.
#[derive(Debug, Clone, Default)]
pub struct ReclaimReport {
    /// Crates freed, with their bytes.
    pub freed: Vec<(String, u64)>,
    /// Crates still referenced.
    pub kept: Vec<Held>,
    /// Bytes of memory scanned.
    pub scanned: u64,
    /// Microseconds the scan (with interrupts off) took.
    pub scan_us: u64,
}

/// One retired crate during a scan.
struct Target {
    id: mod_mgmt::CrateId,
    name: String,
    bytes: u64,
    holder: Option<String>,
}

/// The references into retired crates (`targets`) found in memory.
struct Scan<'a> {
    /// (start, end, index into `targets`), sorted by start.
    ranges: Vec<(u64, u64, usize)>,
    lo: u64,
    hi: u64,
    targets: &'a mut Vec<Target>,
    scanned: u64,
}

impl Scan<'_> {
    fn hit(&mut self, w: u64, holder: &dyn Fn() -> String) {
        if w < self.lo || w >= self.hi {
            return;
        }
        let i = self.ranges.partition_point(|r| r.0 <= w);
        if let Some(&(_, end, t)) = i.checked_sub(1).and_then(|j| self.ranges.get(j))
            && w < end
            && self.targets[t].holder.is_none()
        {
            self.targets[t].holder = Some(holder());
        }
    }

    /// Every aligned word of `[start, end)` (mapped, readable memory).
    fn words(&mut self, start: u64, end: u64, what: &dyn Fn(u64) -> String) {
        let mut a = (start + 7) & !7;
        self.scanned += end.saturating_sub(start);
        while a + 8 <= end {
            // SAFETY: callers pass mapped, readable ranges (crate data parts, nano_core's data,
            // the general heap's mapped pages); interrupts are off, so nothing unmaps them.
            let w = unsafe { (a as *const u64).read() };
            if w >= self.lo && w < self.hi {
                self.hit(w, &|| format!("{} (value {w:#x})", what(a)));
            }
            a += 8;
        }
    }

    /// Every 8-byte window of `[start, end)`, aligned or not (machine code holds absolute
    /// addresses at any offset).
    fn bytes(&mut self, start: u64, end: u64, what: &dyn Fn(u64) -> String) {
        let mut a = start;
        self.scanned += end.saturating_sub(start);
        while a + 8 <= end {
            // SAFETY: as in `words`; JIT code sections are mapped readable while registered.
            let w = unsafe { (a as *const u64).read_unaligned() };
            if w >= self.lo && w < self.hi {
                self.hit(w, &|| what(a));
            }
            a += 1;
        }
    }
}

/// Finds what refers to each retired crate; with `free`, reclaims those nothing refers to.
fn scan(free: bool) -> ReclaimReport {
    nano_core::kernel::with_loader_mut(|l| {
        let t0 = nano_core::time::micros_since_entry();
        let retired = l.retired();
        if retired.is_empty() {
            return ReclaimReport::default();
        }
        // The other CPUs' tasks stopped while their stacks are read: a word moved from a
        // register to a stack the scan has passed would otherwise be missed. If one does not
        // stop, the scan still reports, but frees nothing.
        let world = nano_core::stw::stop_others();
        let free = free && world.is_ok();
        let mut targets: Vec<Target> =
            retired.iter().map(|r| Target { id: r.id, name: r.name.clone(), bytes: r.bytes, holder: None }).collect();
        let mut ranges: Vec<(u64, u64, usize)> =
            retired.iter().enumerate().flat_map(|(i, r)| r.ranges.iter().map(move |&(s, e)| (s, e, i))).collect();
        ranges.sort_unstable();
        let (lo, hi) = (ranges.first().map_or(0, |r| r.0), ranges.iter().map(|r| r.1).max().unwrap_or(0));
        let mut s = Scan { ranges, lo, hi, targets: &mut targets, scanned: 0 };

        // Roots: live crates' writable data, and JIT code.
        for k in l.crates() {
            let name = k.name.clone();
            for (a, size, perms) in k.regions() {
                if perms == Perms::ReadWrite {
                    s.words(a, a + size as u64, &|at| format!("crate {name}'s data at {at:#x}"));
                }
            }
            if k.prelinked && k.name != "nano_core" {
                for sec in k.sections.iter().filter_map(|id| l.section(*id)) {
                    s.bytes(sec.addr, sec.addr + sec.size, &|at| format!("JIT code of {name} at {at:#x}"));
                }
            }
        }
        let layout = nano_core::paging::kernel_layout();
        s.words(layout.data.0, layout.data.1, &|at| format!("nano_core's data at {at:#x}"));
        let (h0, h1) = nano_core::heap::general_range();
        // A heap holder is named with the words around it: the heap has no types, and its
        // neighbours (a length, a capacity, other addresses) tell what kind of object it is.
        s.words(h0, h1, &|at| {
            let mut around = String::new();
            for a in (at.saturating_sub(32)..at + 40).step_by(8).filter(|&a| a >= h0 && a + 8 <= h1) {
                // SAFETY: `a` lies in the general heap's mapped range, which the scan reads
                // anyway (interrupts off, nothing unmaps it).
                let w = unsafe { (a as *const u64).read() };
                around.push_str(&format!(" {w:#x}"));
            }
            format!("the heap at {at:#x} [words from {:#x}:{around}]", at.saturating_sub(32).max(h0))
        });
        // Stacks: every word of other tasks' live stacks; of this task, only its return
        // addresses (its frames hold the scan's own values).
        let me = task::current();
        task::for_each_stack_word(&mut |id, name, w| {
            if id != me {
                s.scanned += 8;
                let v = *w;
                s.hit(v, &|| format!("the stack of task {id} ({name}) (value {v:#x})"));
            }
        });
        if let Some((bottom, top)) = task::current_stack() {
            let mut rbp = nano_core::kernel::current_frame_pointer();
            for _ in 0..256 {
                if rbp < bottom || rbp + 16 > top {
                    break;
                }
                let Some((next, ret)) = nano_core::kernel::read_frame_record(rbp) else { break };
                s.hit(ret, &|| format!("a return address of task {me} (the scan itself)"));
                if next <= rbp {
                    break;
                }
                rbp = next;
            }
        }
        nano_core::hooks::references(&mut |holder, addr| {
            if matches!(holder, Holder::Gate(_)) {
                s.hit(addr, &|| holder.to_string());
            }
        });
        // Retired crates still referenced keep what their own data refers to.
        let mut alive: Vec<bool> = s.targets.iter().map(|t| t.holder.is_some()).collect();
        loop {
            let before = alive.iter().filter(|a| **a).count();
            for (i, r) in retired.iter().enumerate() {
                if !alive[i] {
                    continue;
                }
                let Some(k) = l.krate(r.id) else { continue };
                let name = r.name.clone();
                for (a, size, perms) in k.regions() {
                    if perms == Perms::ReadWrite {
                        s.words(a, a + size as u64, &|at| format!("retired crate {name}'s data at {at:#x}"));
                    }
                }
            }
            alive = s.targets.iter().map(|t| t.holder.is_some()).collect();
            if alive.iter().filter(|a| **a).count() == before {
                break;
            }
        }
        let scanned = s.scanned;
        // Name what each holding value points at (a function, a vtable, a string...).
        for t in s.targets.iter_mut() {
            if let Some(h) = &mut t.holder
                && let Some(v) = h.rsplit("value ").next().and_then(|v| v.strip_suffix(')')).and_then(command::parse_u64)
                && let Some(info) = l.addr2sym(v)
            {
                h.push_str(&format!(
                    " -> {} + {:#x} in {}",
                    info.symbol.as_deref().unwrap_or(&info.section),
                    info.symbol_offset,
                    info.krate
                ));
            }
        }
        let mut report = ReclaimReport { scanned, scan_us: nano_core::time::micros_since_entry() - t0, ..Default::default() };
        for t in targets {
            match t.holder {
                Some(holder) => report.kept.push(Held { name: t.name, id: t.id.0, bytes: t.bytes, holder }),
                None if free => {
                    let bytes = l.reclaim(t.id).unwrap_or(0);
                    report.freed.push((t.name, bytes));
                }
                None => report.freed.push((t.name, t.bytes)),
            }
        }
        report
    })
}

/// Frees every retired crate nothing refers to any more (one stop-the-world scan).
pub fn reclaim() -> ReclaimReport {
    scan(true)
}

/// Like [`reclaim`], but first lets the idle task run (twice: once to leave the code it was
/// parked in, once to park in current code) — it runs only when nothing else can, which under
/// a busy-polling shell is never, so a replaced task crate would stay referenced by it.
pub fn reclaim_thorough() -> ReclaimReport {
    task::run_idle();
    task::run_idle();
    scan(true)
}

/// What refers to each retired crate, without freeing anything (for `ns`); crates listed as
/// freed would be freed by [`reclaim`].
pub fn holders() -> ReclaimReport {
    scan(false)
}

static REAPER: AtomicBool = AtomicBool::new(false);
/// How often a sleeping reaper looks for new versions of itself and of the task crate.
const REAPER_SLICE_MS: u64 = 20;
/// The loader generation at which the running reaper last found itself current (its own
/// crate and the task crate under it); `u64::MAX` before its first look. See [`settle_reaper`].
static REAPER_CURRENT_AT: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(u64::MAX);

fn loader_generation() -> u64 {
    nano_core::kernel::with_loader_ref(|l| l.generation())
}

/// Before an explicit reclaim: waits (at most 100 reaper slices, 2 s) until the running reaper, if
/// any, is one of the current versions of this crate and of the task crate, and is the only
/// reaper left — a reaper of older versions hands over within a slice and ends — so that a
/// reaper's own stack does not keep a version the caller just replaced.
pub fn settle_reaper() {
    let end = nano_core::time::micros_since_entry() + 100 * REAPER_SLICE_MS * 1000;
    while nano_core::time::micros_since_entry() < end {
        let reapers = task::list().iter().filter(|t| t.name == "reaper" && !matches!(t.state, task::State::Exited(_))).count();
        if reapers == 0 || (reapers == 1 && REAPER_CURRENT_AT.load(Ordering::Acquire) == loader_generation()) {
            return;
        }
        task::sleep_ms(1);
    }
}

/// Starts the reaper task unless one runs: it reclaims after a short delay, then with back-off
/// while retired crates remain (up to about 10 s), then ends; the next swap starts it again.
pub fn start_reaper() {
    if REAPER.swap(true, Ordering::AcqRel) {
        return;
    }
    // The task crate's version that starts the reaper: its `task_main` is the reaper's bottom
    // frame, so while the reaper runs, that version cannot be reclaimed. Taken without
    // preemption together with the spawn, so that no swap comes between them.
    let spawned = task::without_preemption(|| {
        // Its crate id, not an address: a copy of an address in the heap (the task's entry
        // closure) would itself look like a reference to that version.
        let my_task_crate = task_crate_now();
        task::spawn_detached("reaper", move || reaper(my_task_crate))
    });
    if spawned.is_err() {
        REAPER.store(false, Ordering::Release);
    }
}

/// The task crate's version that `task::current` resolves to now.
fn task_crate_now() -> Option<CrateId> {
    nano_core::kernel::with_loader_ref(|l| {
        let kernel = l.namespace_by_name("kernel").ok()?;
        l.lookup(kernel, "task::current").ok().map(|s| s.krate)
    })
}

/// The reaper's body (see [`start_reaper`]).
fn reaper(my_task_crate: Option<CrateId>) -> isize {
    let me = start_reaper as fn() as usize as u64;
    let replaced = |symbol: &str, mine: u64| nano_core::kernel::current_version("kernel", symbol).is_some_and(|cur| cur != mine);
    let stale = || {
        let generation = loader_generation();
        let stale = replaced("crate_swap::start_reaper", me) || task_crate_now() != my_task_crate;
        REAPER_CURRENT_AT.store(if stale { u64::MAX } else { generation }, Ordering::Release);
        stale
    };
    let mut delay = 20;
    for _ in 0..10 {
        // Sleep in short slices, looking for a new version each time: a sleeping reaper of old
        // versions would keep them alive for up to its whole back-off.
        let mut slept = 0;
        let handover = loop {
            if stale() {
                break true;
            }
            if slept >= delay {
                break false;
            }
            task::sleep_ms(REAPER_SLICE_MS.min(delay - slept));
            slept += REAPER_SLICE_MS;
        };
        if handover {
            // This crate, or the task crate under this task, was replaced: a reaper of the
            // current versions takes over.
            let cur = nano_core::kernel::current_version("kernel", "crate_swap::start_reaper").unwrap_or(me);
            REAPER.store(false, Ordering::Release);
            // SAFETY: `crate_swap::start_reaper` is a `fn()` in every version of this crate.
            let start: fn() = unsafe { core::mem::transmute::<usize, fn()>(cur as usize) };
            start();
            return 0;
        }
        let r = reclaim_thorough();
        for (name, bytes) in &r.freed {
            log::debug!("reaper: reclaimed the retired {name} ({bytes} bytes) after a {} us scan", r.scan_us);
        }
        if r.kept.is_empty() {
            break;
        }
        delay = (delay * 2).min(2000);
    }
    REAPER.store(false, Ordering::Release);
    0
}
