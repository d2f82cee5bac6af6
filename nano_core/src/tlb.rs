//! tlb: the other CPUs' translation caches, after a mapping is removed or its permissions are
//! reduced.
//!
//! A CPU caches translations: after the boot CPU unmaps a page (a crate unloaded, a stack freed)
//! or takes a permission away (W^X after a relocation rewrite), another CPU may still use the
//! old translation — read a frame that now belongs to someone else, write a page that is now
//! code. Each change flushes the boot CPU's own entry ([`crate::paging`] does), and then calls
//! [`changed`], which sends a shootdown IPI to every parked CPU ([`SEND_SHOOTDOWN`], sent by the
//! smp crate, which owns the local APIC) and waits until each has flushed everything in its
//! handler ([`on_shootdown_ipi`]). Only then is the change done: a frame is freed after its
//! page's shootdown, not before. Several changes in a row (a crate's pages protected one by
//! one) send one round at the end ([`batch`]).
//!
//! Halted CPUs are interrupted too (Linux's lazy mode skips idle CPUs and flushes them when they
//! wake): a halted CPU wakes into an IPI handler, which is code of a loaded crate, and a
//! translation left over for an address range the loader has since reused could send it into
//! the wrong frame before it could check anything.
//!
//! Today only the boot CPU changes mappings (the APs run plain jobs, which never map or
//! allocate), so there is one sender at a time. A change made inside an NMI that interrupted a
//! round in progress sends nothing (the only such change is the repair of damaged code, which
//! makes a page writable and then read-only again, and leaves no address range to reuse); for
//! that case a parked CPU also flushes before each job if the page tables' generation moved
//! since its last job.

use crate::hooks::Hook;
use crate::kernel::MAX_CPUS;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// How long the sender waits for the CPUs it interrupted to flush, in milliseconds: they run
/// with interrupts on, so this is long only when one is stuck (then it flushes at its next job,
/// and [`Stats::timeouts`] counts it).
const ACK_TIMEOUT_MS: u64 = 50;

/// Sends the shootdown IPI to every parked CPU and returns how many were sent (`None` if no IPI
/// can be sent now: the CPU was interrupted while it wrote another). Set by the smp crate once
/// the APs are up: it owns the local APIC, the IPI's vector and the list of CPUs.
pub static SEND_SHOOTDOWN: Hook<fn() -> Option<u64>> = Hook::new("tlb::send_shootdown");

/// The page tables' generation: moved by every removal or reduction of a mapping.
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// Per CPU index: the generation at its last job's start (see [`before_job`]).
static LAST_JOB: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Flushes done by CPUs in their shootdown handler.
static ACKS: AtomicU64 = AtomicU64::new(0);
/// Depth of [`batch`] on the boot CPU (interrupts are off inside).
static BATCH_DEPTH: AtomicUsize = AtomicUsize::new(0);
/// A change happened inside the current batch.
static PENDING: AtomicBool = AtomicBool::new(false);
/// A round of IPIs is being sent (an NMI arriving meanwhile sends none).
static SENDING: AtomicBool = AtomicBool::new(false);
/// Changes that sent no IPI (made inside an NMI during a round).
static NOT_SENT: AtomicU64 = AtomicU64::new(0);

static CHANGES: AtomicU64 = AtomicU64::new(0);
static ROUNDS: AtomicU64 = AtomicU64::new(0);
static IPIS: AtomicU64 = AtomicU64::new(0);
static TIMEOUTS: AtomicU64 = AtomicU64::new(0);
static LAZY_FLUSHES: AtomicU64 = AtomicU64::new(0);
static WAIT_CYCLES: AtomicU64 = AtomicU64::new(0);

/// What the shootdowns did since boot (`cpus` prints it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Mappings removed or reduced (each moved the generation).
    pub changes: u64,
    /// Rounds of IPIs (one per change, or per batch of changes).
    pub rounds: u64,
    /// Shootdown IPIs sent.
    pub ipis: u64,
    /// Flushes in the shootdown handler.
    pub acks: u64,
    /// CPUs that did not flush within the timeout.
    pub timeouts: u64,
    /// Flushes made by a parked CPU before a job because a change sent it no IPI.
    pub lazy_flushes: u64,
    /// TSC cycles the sender spent waiting for flushes, in all.
    pub wait_cycles: u64,
}

/// The counts since boot.
pub fn stats() -> Stats {
    Stats {
        changes: CHANGES.load(Ordering::Relaxed),
        rounds: ROUNDS.load(Ordering::Relaxed),
        ipis: IPIS.load(Ordering::Relaxed),
        acks: ACKS.load(Ordering::Relaxed),
        timeouts: TIMEOUTS.load(Ordering::Relaxed),
        lazy_flushes: LAZY_FLUSHES.load(Ordering::Relaxed),
        wait_cycles: WAIT_CYCLES.load(Ordering::Relaxed),
    }
}

/// Drops every translation this CPU caches, global ones included.
fn flush_everything() {
    use x86_64::registers::control::{Cr4, Cr4Flags};
    let cr4 = Cr4::read();
    if cr4.contains(Cr4Flags::PAGE_GLOBAL) {
        // SAFETY: clearing and setting PGE again changes no mapping; it flushes the TLB,
        // global entries too.
        unsafe {
            Cr4::write(cr4 - Cr4Flags::PAGE_GLOBAL);
            Cr4::write(cr4);
        }
    } else {
        x86_64::instructions::tlb::flush_all();
    }
}

/// A mapping was removed or its permissions reduced (this CPU's entry is already flushed): the
/// other CPUs drop theirs before this returns — or, inside a [`batch`], when it ends.
pub(crate) fn changed() {
    GENERATION.fetch_add(1, Ordering::SeqCst);
    CHANGES.fetch_add(1, Ordering::Relaxed);
    if BATCH_DEPTH.load(Ordering::Relaxed) > 0 {
        PENDING.store(true, Ordering::Relaxed);
        return;
    }
    shoot_down();
}

/// Runs `f` (which changes several mappings) with interrupts off, and makes the other CPUs drop
/// their translations once, at the end.
pub fn batch<T>(f: impl FnOnce() -> T) -> T {
    /// Leaves the batch even when `f` panics and unwinds (the round owed is sent then too).
    struct Depth;
    impl Drop for Depth {
        fn drop(&mut self) {
            if BATCH_DEPTH.fetch_sub(1, Ordering::Relaxed) == 1 && PENDING.swap(false, Ordering::Relaxed) {
                shoot_down();
            }
        }
    }
    x86_64::instructions::interrupts::without_interrupts(|| {
        BATCH_DEPTH.fetch_add(1, Ordering::Relaxed);
        let _depth = Depth;
        f()
    })
}

/// Called when a task ends: no task is switched away inside a [`batch`] (interrupts are off
/// there), so a non-zero depth means a task died inside one without unwinding. Sends the round
/// it owed and says whether it had to.
pub fn leave_batch_if_dead() -> bool {
    if BATCH_DEPTH.swap(0, Ordering::Relaxed) == 0 {
        return false;
    }
    sync();
    true
}

/// Sends the round that changes inside the current [`batch`] owe, now: before the frames of
/// pages unmapped in it are given back (an outer batch, such as a whole loader operation, would
/// otherwise hold it back until its end).
pub fn sync() {
    x86_64::instructions::interrupts::without_interrupts(|| {
        if PENDING.swap(false, Ordering::Relaxed) {
            shoot_down();
        }
    })
}

/// Interrupts every parked CPU and waits until each flushed (or the timeout).
fn shoot_down() {
    let Some(send) = SEND_SHOOTDOWN.get() else { return };
    if SENDING.swap(true, Ordering::Acquire) {
        NOT_SENT.fetch_add(1, Ordering::Relaxed);
        return; // an NMI inside a round (see the module docs)
    }
    let acks_before = ACKS.load(Ordering::SeqCst);
    let Some(sent) = send() else {
        NOT_SENT.fetch_add(1, Ordering::Relaxed);
        SENDING.store(false, Ordering::Release);
        return;
    };
    if sent > 0 {
        ROUNDS.fetch_add(1, Ordering::Relaxed);
        IPIS.fetch_add(sent, Ordering::Relaxed);
        let t0 = crate::time::rdtsc();
        let limit = ACK_TIMEOUT_MS * crate::time::tsc_per_ms().max(1);
        while ACKS.load(Ordering::SeqCst) - acks_before < sent {
            if crate::time::rdtsc() - t0 > limit {
                TIMEOUTS.fetch_add(sent - (ACKS.load(Ordering::SeqCst) - acks_before).min(sent), Ordering::Relaxed);
                break;
            }
            core::hint::spin_loop();
        }
        WAIT_CYCLES.fetch_add(crate::time::rdtsc() - t0, Ordering::Relaxed);
    }
    SENDING.store(false, Ordering::Release);
}

/// The shootdown IPI's work, on the CPU it interrupted (called by the smp crate's handler).
pub fn on_shootdown_ipi() {
    flush_everything();
    ACKS.fetch_add(1, Ordering::SeqCst);
}

/// On parked CPU `index`, before a job: flushes everything if a change was made since its last
/// job that sent no IPI (see the module docs); otherwise the IPIs already flushed it.
pub(crate) fn before_job(index: usize) {
    let Some(last) = LAST_JOB.get(index) else { return };
    let now = GENERATION.load(Ordering::SeqCst);
    if last.swap(now, Ordering::Relaxed) != now && NOT_SENT.load(Ordering::Relaxed) != 0 {
        flush_everything();
        LAZY_FLUSHES.fetch_add(1, Ordering::Relaxed);
    }
}
