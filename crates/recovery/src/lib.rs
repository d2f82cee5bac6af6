//! recovery: bringing the work back after a fault, not just surviving it.
//!
//! Mechanism lives elsewhere — the task crate starts restartable tasks and reports their
//! deaths, the loader knows each crate's integrity hash, the swap reloads a crate from its
//! object. This crate is the policy:
//! - a **supervisor** task takes the deaths of restartable tasks (a CPU exception or a panic),
//!   verifies every crate the task was running (the code on its stack when it died) — and, if
//!   those are intact, every other crate, since corrupted code may have jumped anywhere —
//!   reloads a corrupted one from its object (its statics are kept: a hash tells code corruption, not
//!   data corruption, and the state is what the restarted task continues from), and starts the
//!   task again with the same entry and argument — the current version of the entry, if its
//!   crate was reloaded. A task that dies [`GIVE_UP_AFTER`] times within [`WINDOW_MS`] is given
//!   up, with a message; after the kernel abandoned a timer tick or a scheduling decision
//!   (damage in their code, see the task crate's `step`), it verifies and repairs every crate;
//! - a **scrubber** task verifies every crate's code and read-only data periodically (the
//!   `scrub_ms=N` kernel option, default 1000; 0 turns it off) and reloads what changed —
//!   corruption in code that has not run yet is repaired before it runs; and when the
//!   supervisor itself has died, the scrubber takes the deaths, which restarts the supervisor.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use mod_mgmt::swap::SwapPair;

/// Deaths within [`WINDOW_MS`] after which a task is given up.
pub const GIVE_UP_AFTER: usize = 5;
/// See [`GIVE_UP_AFTER`].
pub const WINDOW_MS: u64 = 10_000;

static SCRUB_PASSES: AtomicU64 = AtomicU64::new(0);
static SCRUB_US: AtomicU64 = AtomicU64::new(0);
static REPAIRS: AtomicU64 = AtomicU64::new(0);
static RESTARTS: AtomicU64 = AtomicU64::new(0);
/// The supervisor's task id (it writes its own at its start: a restart or a hand-over gives it
/// another); the scrubber takes the deaths when it is gone.
static SUPERVISOR: AtomicU64 = AtomicU64::new(0);
/// Set by [`inject_supervisor_fault`]: the supervisor panics at its next round.
static SUPERVISOR_FAULT: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
/// The scrubber's task id (written at its start, as the supervisor's), 0 if there is none.
static SCRUBBER: AtomicU64 = AtomicU64::new(0);
/// Set by [`inject_supervisor_fault`] with the scrubber too: it panics at its next pass.
static SCRUBBER_FAULT: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Recent deaths per task name (milliseconds since boot).
static DEATHS: spin::Mutex<BTreeMap<String, Vec<u64>>> = spin::Mutex::new(BTreeMap::new());

/// A corrupted crate, repaired.
#[derive(Debug, Clone)]
pub struct Repaired {
    /// The crate.
    pub name: String,
    /// How: `restored N bytes in place` or `reloaded from FILE`.
    pub how: String,
}

/// What a verification pass found.
#[derive(Debug, Clone, Default)]
pub struct Verified {
    /// Crates checked.
    pub crates: usize,
    /// Bytes of code and read-only data hashed.
    pub bytes: u64,
    /// Microseconds it took (with the loader held).
    pub us: u64,
    /// Crates whose code or read-only data changed.
    pub corrupted: Vec<String>,
    /// Of those, the repaired ones.
    pub repaired: Vec<Repaired>,
    /// Repairs that failed, with why.
    pub failed: Vec<String>,
}

/// Verifies every live crate, one at a time (the loader is held for one crate's hash, never for
/// the whole pass, so a pass never stalls a swap or a load for long); with `repair`, reloads
/// the corrupted ones.
pub fn verify_all(repair: bool) -> Verified {
    let mut v = Verified::default();
    let mut bad_ids = Vec::new();
    // A cursor over crate ids, not a list made up front: between two loader holds the pass
    // keeps nothing on the heap, so it never shows up in another task's memory figures (the
    // swap and WASM leak checks compare the whole heap before and after).
    let mut after: Option<mod_mgmt::CrateId> = None;
    loop {
        let t0 = nano_core::time::micros_since_entry();
        let step = nano_core::kernel::with_loader_ref(|l| {
            let k = l
                .crates()
                .filter(|k| !k.prelinked && !k.is_retired() && k.integrity.is_some() && after.is_none_or(|a| k.id > a))
                .min_by_key(|k| k.id)?;
            let bytes: u64 = k.regions().filter(|r| r.2 != mod_mgmt::Perms::ReadWrite).map(|r| r.1 as u64).sum();
            let bad = l.verify(k.id).is_err();
            Some((k.id, bytes, bad.then(|| k.name.clone())))
        });
        let Some((id, bytes, bad)) = step else { break };
        after = Some(id);
        v.us += nano_core::time::micros_since_entry() - t0;
        v.crates += 1;
        v.bytes += bytes;
        if let Some(name) = bad {
            v.corrupted.push(name);
            bad_ids.push(id);
        }
    }
    if repair {
        for id in bad_ids {
            match repair_crate(id) {
                Ok(r) => v.repaired.push(r),
                Err(e) => v.failed.push(e),
            }
        }
    }
    v
}

/// Repairs corrupted crate `id`: in place from its sealed copy (same addresses, nothing to
/// relink), or, if that copy is damaged too, by reloading it from its object.
fn repair_crate(id: mod_mgmt::CrateId) -> Result<Repaired, String> {
    let restored = nano_core::kernel::with_loader_mut(|l| {
        let name = l.krate(id).map(|k| k.name.clone())?;
        Some((name, l.restore_code(id)))
    });
    match restored {
        Some((name, Ok(r))) => {
            REPAIRS.fetch_add(1, Ordering::Relaxed);
            log::warn!("recovery: crate {name} was corrupted; restored {} bytes in place from its sealed copy", r.bytes);
            Ok(Repaired { name, how: format!("restored {} bytes in place", r.bytes) })
        }
        _ => reload(id),
    }
}

/// Reloads crate `id` from the object it was loaded from (a swap with that same object:
/// dependents relinked, statics kept, the corrupted copy retired).
fn reload(id: mod_mgmt::CrateId) -> Result<Repaired, String> {
    let (name, file) =
        nano_core::kernel::with_loader_ref(|l| l.krate(id).filter(|k| !k.is_retired()).map(|k| (k.name.clone(), k.file.clone())))
            .ok_or_else(|| String::from("it was swapped or unloaded meanwhile"))?;
    let opts = crate_swap::Options { attempts: 250, ..Default::default() };
    crate_swap::swap(&[SwapPair { old: name.clone(), new_file: file.clone() }], &opts).map_err(|e| format!("{name}: {e}"))?;
    REPAIRS.fetch_add(1, Ordering::Relaxed);
    log::warn!("recovery: crate {name} was corrupted and its sealed copy too; reloaded it from {file} (its statics kept)");
    Ok(Repaired { name, how: format!("reloaded from {file}") })
}

/// Names of the loaded crates (not nano_core, not JIT code) that contain any of `pcs`.
fn crates_of(pcs: &[u64]) -> Vec<(String, mod_mgmt::CrateId)> {
    nano_core::kernel::with_loader_ref(|l| {
        let mut out: Vec<(String, mod_mgmt::CrateId)> = Vec::new();
        for pc in pcs {
            // A return address belongs to the call one byte back; a faulting instruction is at
            // the address itself. Both are checked (verifying one crate too many costs a hash).
            for a in [pc.saturating_sub(1), *pc] {
                let Some((sid, _)) = l.locate(a) else { continue };
                let Some(k) = l.section(sid).and_then(|s| l.krate(s.krate)) else { continue };
                if !k.prelinked && !k.is_retired() && !out.iter().any(|(_, id)| *id == k.id) {
                    out.push((k.name.clone(), k.id));
                }
            }
        }
        out
    })
}

/// The entry point's current address: the same symbol in the crate's current version (the
/// crate may have been reloaded since the task was started).
fn current_entry(entry: fn(u64) -> isize) -> fn(u64) -> isize {
    let addr = entry as usize as u64;
    let now = nano_core::kernel::with_loader_ref(|l| {
        let info = l.addr2sym(addr).filter(|i| i.symbol_offset == 0)?;
        let raw = info.raw?;
        let ns = l.namespace_by_name(&info.namespace).ok()?;
        l.lookup(ns, &raw).ok().or_else(|| l.lookup(ns, info.symbol.as_deref()?).ok()).map(|s| s.addr)
    });
    match now {
        Some(a) if a != addr => nano_core::kernel::restartable_entry(a),
        _ => entry,
    }
}

/// Handles one death: verify and repair what the task ran, then restart it (or give up).
fn recover(d: task::Death) {
    let now = nano_core::time::micros_since_entry() / 1000;
    let crates = crates_of(&d.pcs);
    let mut repaired = Vec::new();
    for (name, id) in &crates {
        let bad = nano_core::kernel::with_loader_ref(|l| l.verify(*id).is_err());
        if bad {
            match repair_crate(*id) {
                Ok(r) => repaired.push(r.name),
                Err(e) => nano_core::println!("recovery: crate {name} is corrupted and could not be repaired: {e}"),
            }
        }
    }
    // Nothing on its stack was corrupted; but corrupted code can jump anywhere, and a wild jump
    // leaves no trace of where it came from (the frames are garbage): verify every crate.
    let everything = repaired.is_empty();
    if everything {
        let v = verify_all(true);
        repaired.extend(v.repaired.into_iter().map(|r| r.name));
        for f in &v.failed {
            nano_core::println!("recovery: a corrupted crate could not be reloaded: {f}");
        }
    }
    let recent = {
        let mut deaths = DEATHS.lock();
        let v = deaths.entry(d.name.clone()).or_default();
        v.retain(|t| now.saturating_sub(*t) < WINDOW_MS);
        v.push(now);
        v.len()
    };
    let checked: Vec<&str> = crates.iter().map(|(n, _)| n.as_str()).collect();
    if recent >= GIVE_UP_AFTER {
        nano_core::println!(
            "recovery: task {} ({}) died {recent} times within {} s ({:?}); given up, not restarted",
            d.id,
            d.name,
            WINDOW_MS / 1000,
            d.exit
        );
        return;
    }
    let r = task::Restartable { entry: current_entry(d.restart.entry), restarts: d.restart.restarts + 1, ..d.restart };
    // On the CPU it died on; if that one runs no tasks any more (stopped), on this one.
    let spawned = task::spawn_restartable_on(d.cpu, &d.name, r).or_else(|_| task::spawn_restartable(&d.name, r));
    match spawned {
        Ok(id) => {
            RESTARTS.fetch_add(1, Ordering::Relaxed);
            nano_core::println!(
                "recovery: task {} ({}) died ({}); verified {} ({}); restarted as task {id} (restart {})",
                d.id,
                d.name,
                match &d.exit {
                    task::Exit::Faulted(w) | task::Exit::Panicked(w) => w.as_str(),
                    _ => "?",
                },
                match (checked.is_empty(), everything) {
                    (true, _) => String::from("every crate (none on its stack)"),
                    (false, true) => format!("{} and then every crate", checked.join(" ")),
                    (false, false) => checked.join(" "),
                },
                if repaired.is_empty() { String::from("all intact") } else { format!("repaired {}", repaired.join(" ")) },
                r.restarts
            );
        }
        Err(e) => nano_core::println!("recovery: task {} ({}) could not be restarted: {e}", d.id, d.name),
    }
}

/// After a swap replaced this crate, starts the new version of task `name` (entry `symbol`)
/// and tells the caller to end, so the old version's code runs nowhere and is reclaimed.
fn handed_over(name: &str, me: fn(u64) -> isize, symbol: &str, arg: u64) -> bool {
    match nano_core::kernel::current_version("kernel", symbol) {
        Some(cur) if cur != me as usize as u64 => {
            let entry = nano_core::kernel::restartable_entry(cur);
            match task::spawn_restartable(name, task::Restartable { entry, arg, restarts: 0 }) {
                Ok(_) => true,
                Err(e) => {
                    log::warn!("recovery: cannot start the new version's {name}: {e}");
                    false
                }
            }
        }
        _ => false,
    }
}

/// After the kernel abandoned a timer tick or a scheduling decision (a fault or a panic in its
/// code, which no task is blamed for and no restart follows): verifies every crate — the damage
/// may lie in any of the scheduler's, the timer's or the task layer's — and repairs what
/// changed, so the next tick or decision runs intact code.
fn after_abandoned_steps() {
    let v = verify_all(true);
    for r in &v.repaired {
        nano_core::println!("recovery: after an abandoned kernel step, crate {} was corrupted: {}", r.name, r.how);
    }
    for f in &v.failed {
        nano_core::println!("recovery: after an abandoned kernel step, a corrupted crate could not be reloaded: {f}");
    }
}

/// The supervisor's body (a task): forever takes deaths and recovers from them.
pub fn supervise(_: u64) -> isize {
    SUPERVISOR.store(task::current(), Ordering::Relaxed);
    let mut steps_seen = task::steps_abandoned();
    let mut next_look = 0;
    loop {
        if SUPERVISOR_FAULT.swap(false, Ordering::Relaxed) {
            supervisor_fault();
        }
        for d in task::take_deaths() {
            recover(d);
        }
        let steps = task::steps_abandoned();
        if steps != steps_seen {
            steps_seen = steps;
            after_abandoned_steps();
        }
        // Every 100 ms: has a swap replaced this crate?
        let now = nano_core::time::micros_since_entry();
        if now >= next_look && handed_over("supervisor", supervise, "recovery::supervise", 0) {
            return 0;
        }
        if now >= next_look {
            next_look = now + 100_000;
        }
        // Until there is something to do or the next look (the CPU may halt meanwhile: a death
        // is seen at the first interrupt after it, a tick at the latest).
        task::wait_until(
            || SUPERVISOR_FAULT.load(Ordering::Relaxed) || task::deaths_waiting() || task::steps_abandoned() != steps_seen,
            Some(next_look),
        );
    }
}

/// For `crash supervisor [--and-scrubber]`: the supervisor panics at its next round, as damaged
/// code or data on its path would make it; it dies, and only the scrubber can see to its
/// restart — or, when the scrubber dies too, idle time ([`keep`]).
pub fn inject_supervisor_fault(and_scrubber: bool) {
    SCRUBBER_FAULT.store(and_scrubber, Ordering::Relaxed);
    SUPERVISOR_FAULT.store(true, Ordering::Relaxed);
}

#[inline(never)]
fn scrubber_fault() {
    panic!("injected into the scrubber (crash supervisor --and-scrubber)");
}

#[inline(never)]
fn supervisor_fault() {
    panic!("injected into the supervisor (crash supervisor)");
}

/// The scrubber's second duty: the supervisor takes the deaths of restartable tasks, its own
/// included — so when it is dead, nobody would restart it (nor anything else) again. The
/// scrubber then takes the deaths itself, the supervisor's first, which restarts it.
fn stand_in_for_a_dead_supervisor() {
    let id = SUPERVISOR.load(Ordering::Relaxed);
    if id == 0 || !task::has_exited(id) {
        return;
    }
    take_deaths_for_the_supervisor(id, "the scrubber takes the deaths");
}

/// Takes the deaths in place of dead supervisor `id`, its own first: the new supervisor then
/// takes any that come later.
fn take_deaths_for_the_supervisor(id: task::TaskId, who: &str) {
    let deaths = task::take_deaths();
    if deaths.is_empty() {
        return;
    }
    nano_core::println!("recovery: the supervisor (task {id}) is gone: {who}");
    let (own, others): (Vec<task::Death>, Vec<task::Death>) = deaths.into_iter().partition(|d| d.id == id);
    for d in own.into_iter().chain(others) {
        recover(d);
    }
}

/// The last resort, run by idle time (`nano_core::kernel::idle_work`: the shell waiting for a
/// key) every 100 ms: when the supervisor and the scrubber are both dead —
/// each restarts the other, so one fault that kills both at once (seed 28, trial 57: a flip in
/// the timer's entry put back damaged registers into both) left nothing to restart anything
/// again — the deaths are taken here, the supervisor's first, which restarts both.
fn keep() {
    let sup = SUPERVISOR.load(Ordering::Relaxed);
    if sup == 0 || !task::has_exited(sup) {
        return;
    }
    let scrubber = SCRUBBER.load(Ordering::Relaxed);
    if scrubber != 0 && !task::has_exited(scrubber) {
        return; // it stands in for the supervisor
    }
    take_deaths_for_the_supervisor(sup, "and so is the scrubber: idle time takes the deaths");
}

/// The scrubber's body (a task): verifies and repairs every `period_ms`, and stands in for a
/// dead supervisor.
pub fn scrub(period_ms: u64) -> isize {
    SCRUBBER.store(task::current(), Ordering::Relaxed);
    loop {
        task::sleep_ms(period_ms);
        if SCRUBBER_FAULT.swap(false, Ordering::Relaxed) {
            scrubber_fault();
        }
        if handed_over("scrubber", scrub, "recovery::scrub", period_ms) {
            return 0;
        }
        stand_in_for_a_dead_supervisor();
        let v = verify_all(true);
        SCRUB_PASSES.fetch_add(1, Ordering::Relaxed);
        SCRUB_US.fetch_add(v.us, Ordering::Relaxed);
        for r in &v.repaired {
            nano_core::println!("recovery: the scrubber found crate {} corrupted: {}", r.name, r.how);
        }
        for f in &v.failed {
            nano_core::println!("recovery: the scrubber found a corrupted crate it could not reload: {f}");
        }
    }
}

/// What the recovery policy has done since boot.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    /// Scrubber passes over every crate.
    pub scrub_passes: u64,
    /// Microseconds the scrubber spent hashing (loader held).
    pub scrub_us: u64,
    /// Crates reloaded because their code was corrupted.
    pub repairs: u64,
    /// Restartable tasks started again.
    pub restarts: u64,
}

/// What the recovery policy has done since boot.
pub fn stats() -> Stats {
    Stats {
        scrub_passes: SCRUB_PASSES.load(Ordering::Relaxed),
        scrub_us: SCRUB_US.load(Ordering::Relaxed),
        repairs: REPAIRS.load(Ordering::Relaxed),
        restarts: RESTARTS.load(Ordering::Relaxed),
    }
}

/// The scrubber's period: the `scrub_ms=N` kernel option, default 1000 ms, 0 for none.
pub fn scrub_period_ms() -> u64 {
    boot_info::cmdline::get(&nano_core::kernel::boot_state().cmdline, "scrub_ms").and_then(command::parse_u64).unwrap_or(1000)
}

/// Starts the supervisor and the scrubber (captain calls this once).
pub fn start() {
    nano_core::kernel::KEEPER_HOOK.set(keep);
    let sup = task::spawn_restartable("supervisor", task::Restartable { entry: supervise, arg: 0, restarts: 0 });
    let period = scrub_period_ms();
    let scrubber = if period > 0 {
        task::spawn_restartable("scrubber", task::Restartable { entry: scrub, arg: period, restarts: 0 }).map(Some)
    } else {
        Ok(None)
    };
    match (sup, scrubber) {
        (Ok(s), Ok(Some(c))) => log::info!("recovery: supervisor task {s}, scrubber task {c} (every {period} ms)"),
        (Ok(s), Ok(None)) => log::info!("recovery: supervisor task {s}; no scrubber (scrub_ms=0)"),
        (Err(e), _) | (_, Err(e)) => log::warn!("recovery: cannot start: {e}"),
    }
}
