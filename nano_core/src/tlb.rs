//! tlb: the other CPUs' translation caches, after a mapping is removed or its permissions are
//! reduced.
//!
//! A CPU caches translations: after the boot CPU unmaps a page (a crate unloaded, a stack freed)
//! or takes a permission away (W^X after a relocation rewrite), another CPU may still use the
//! old translation — read a frame that now belongs to someone else, write a page that is now
//! code. Each change flushes the changing CPU's own entry ([`crate::paging`] does), and then
//! calls [`changed`], which makes every other CPU drop its translations:
//!
//! - a **halted** CPU gets a shootdown IPI ([`SEND_SHOOTDOWN`], sent by the smp crate, which owns
//!   the local APIC) and flushes everything in its handler ([`on_shootdown_ipi`]); the boot CPU
//!   waits until each has, and only then is the change done (a frame is freed after its page's
//!   round, not before). Halted CPUs are not left to flush when they wake, as Linux's lazy mode
//!   does: a CPU wakes into an IPI handler, code of a loaded crate, and a translation left over
//!   for an address range the loader has since reused could send it into the wrong frame
//!   before it could check anything;
//! - a CPU **running a job** is not interrupted: it owes a flush ([`OWED`]) and flushes when the
//!   job ends, before it halts. A job touches only memory that stays mapped while it runs (the
//!   contract of `smp::post`), so an old translation of anything else is never used meanwhile.
//!   This is what keeps the boot from waiting: the parked CPUs hash the large objects while the
//!   loader changes permissions, and with more virtual CPUs than host cores each IPI to a busy
//!   one waited for the host to schedule it (5–17 ms a round, measured).
//!
//! The marks are sequentially consistent on both sides — the CPU marks itself running (or not)
//! before it reads what it owes, and the sender marks the debt before it looks at the CPU again
//! — so a CPU that stops running during a round either sees its debt or gets the IPI.
//!
//! Several changes in a row (a crate's pages protected one by one, a whole loader operation)
//! send one round at the end ([`batch`], per CPU). Any CPU that runs tasks changes mappings (a
//! task on an AP frees its stack, loads a crate, maps JIT code), so the targets are every other
//! CPU, the boot CPU included, and one round runs at a time ([`SENDING`]): a CPU that wants to
//! send while another does waits with interrupts off and answers the other's request meanwhile
//! ([`REQUEST`]), as does any code that spins for a lock another CPU holds (the loader's). A CPU
//! whose round timed out owes a flush and pays it at its next task switch. A change made inside an NMI that
//! interrupted a round in progress sends nothing and leaves every CPU owing a flush (the only
//! such change is the repair of damaged code, which makes a page writable and then read-only
//! again, and leaves no address range to reuse).

use crate::hooks::Hook;
use crate::kernel::MAX_CPUS;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// How long the sender waits for the CPUs it interrupted to flush, in milliseconds: they run
/// with interrupts on, so this is long only when one is stuck (then it flushes at its next job,
/// and [`Stats::timeouts`] counts it) — or when the host does not run its virtual CPU: with 4
/// vCPUs on 2 host cores that were busy with two other QEMUs and a build, one flush took more
/// than 50 ms (the limit before). Well below the watchdog's 2 s, since the sender waits with
/// interrupts off.
const ACK_TIMEOUT_MS: u64 = 500;

/// Sends the shootdown IPI to each CPU whose index is set in the mask (bit `i` for CPU index
/// `i`) and returns the mask of those it was sent to (`None` if no IPI can be sent now: the CPU
/// was interrupted while it wrote another). Set by the smp crate once the APs are up: it owns
/// the local APIC, the IPI's vector and the list of CPUs (indexes of CPUs that are not up it
/// skips).
pub static SEND_SHOOTDOWN: Hook<fn(u64) -> Option<u64>> = Hook::new("tlb::send_shootdown");

/// Per CPU index: set while the CPU runs a job.
static RUNNING: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Per CPU index: a round passed it by (it was running a job, or no IPI could be sent); it
/// flushes at its next job boundary.
static OWED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Flushes done by CPUs in their shootdown handler.
static ACKS: AtomicU64 = AtomicU64::new(0);
/// Per CPU index: depth of [`batch`] (interrupts are off inside).
static BATCH_DEPTH: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];
/// Per CPU index: a change happened inside the current batch.
static PENDING: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// The CPU sending a round of IPIs, plus one (0: none). One round at a time: another CPU that
/// wants to send waits (serving the round's request to itself meanwhile, see [`REQUEST`]); an
/// NMI on the sending CPU itself sends none.
static SENDING: AtomicUsize = AtomicUsize::new(0);
/// Per CPU index: the round in progress asks this CPU to flush. Its shootdown handler answers
/// it, or, with interrupts off, the CPU's own wait for [`SENDING`] or a stopped world's wait
/// ([`serve_request`]) does: a CPU waiting for a round of its own with interrupts off would
/// otherwise never take the IPI of the round it waits for.
static REQUEST: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Rounds that could send no IPI (made inside an NMI during a round, or while the ICR was busy).
static NOT_SENT: AtomicU64 = AtomicU64::new(0);
/// Flushes a round left to a CPU running a job.
static DEFERRED: AtomicU64 = AtomicU64::new(0);

static CHANGES: AtomicU64 = AtomicU64::new(0);
static ROUNDS: AtomicU64 = AtomicU64::new(0);
static IPIS: AtomicU64 = AtomicU64::new(0);
static TIMEOUTS: AtomicU64 = AtomicU64::new(0);
static LAZY_FLUSHES: AtomicU64 = AtomicU64::new(0);
static WAIT_CYCLES: AtomicU64 = AtomicU64::new(0);

/// What the shootdowns did since boot (`cpus` prints it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Mappings removed or reduced.
    pub changes: u64,
    /// Rounds of IPIs (one per change, or per batch of changes).
    pub rounds: u64,
    /// Shootdown IPIs sent.
    pub ipis: u64,
    /// Flushes in the shootdown handler.
    pub acks: u64,
    /// CPUs that did not flush within the timeout.
    pub timeouts: u64,
    /// Flushes left to a CPU that was running a job (it flushes when the job ends).
    pub deferred: u64,
    /// Flushes made at a job boundary because a round passed the CPU by.
    pub lazy_flushes: u64,
    /// Rounds that could send no IPI at all (every CPU then owes a flush).
    pub not_sent: u64,
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
        deferred: DEFERRED.load(Ordering::Relaxed),
        lazy_flushes: LAZY_FLUSHES.load(Ordering::Relaxed),
        not_sent: NOT_SENT.load(Ordering::Relaxed),
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
    CHANGES.fetch_add(1, Ordering::Relaxed);
    let me = crate::jobs::this_cpu_index();
    if BATCH_DEPTH[me].load(Ordering::Relaxed) > 0 {
        PENDING[me].store(true, Ordering::Relaxed);
        return;
    }
    shoot_down();
}

/// Runs `f` (which changes several mappings) with interrupts off, and makes the other CPUs drop
/// their translations once, at the end.
pub fn batch<T>(f: impl FnOnce() -> T) -> T {
    /// Leaves the batch even when `f` panics and unwinds (the round owed is sent then too).
    struct Depth(usize);
    impl Drop for Depth {
        fn drop(&mut self) {
            if BATCH_DEPTH[self.0].fetch_sub(1, Ordering::Relaxed) == 1 && PENDING[self.0].swap(false, Ordering::Relaxed) {
                shoot_down();
            }
        }
    }
    x86_64::instructions::interrupts::without_interrupts(|| {
        // With interrupts off a task stays on its CPU (tasks never migrate anyway).
        let me = crate::jobs::this_cpu_index();
        BATCH_DEPTH[me].fetch_add(1, Ordering::Relaxed);
        let _depth = Depth(me);
        f()
    })
}

/// Called when a task ends: no task is switched away inside a [`batch`] (interrupts are off
/// there), so a non-zero depth means a task died inside one without unwinding. Sends the round
/// it owed and says whether it had to.
pub fn leave_batch_if_dead() -> bool {
    if BATCH_DEPTH[crate::jobs::this_cpu_index()].swap(0, Ordering::Relaxed) == 0 {
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
        if PENDING[crate::jobs::this_cpu_index()].swap(false, Ordering::Relaxed) {
            shoot_down();
        }
    })
}

/// Leaves every CPU owing a flush, paid at its next job boundary or task switch.
fn owe_everyone() {
    for owed in OWED.iter() {
        owed.store(true, Ordering::SeqCst);
    }
}

/// Answers the round in progress if it asks this CPU to flush (see [`REQUEST`]); pays a flush
/// this CPU owes. For code that waits with interrupts off for another CPU (a stopped world).
pub fn serve_request() {
    let me = crate::jobs::this_cpu_index();
    if REQUEST[me].swap(false, Ordering::SeqCst) {
        flush_everything();
        ACKS.fetch_add(1, Ordering::SeqCst);
    }
    pay_owed(me);
}

/// Pays a flush CPU `index` owes (a round that timed out, or passed it by): called on that CPU
/// at every task switch, with the index the task layer already has (asking for it here would
/// read the GS-base MSR on every switch).
pub fn pay_owed_by(index: usize) {
    pay_owed(index);
}

/// One round: a CPU running a job owes a flush; every other CPU gets the IPI, and the sender
/// waits until each flushed (or the timeout). Any CPU may send, one round at a time.
fn shoot_down() {
    let Some(send) = SEND_SHOOTDOWN.get() else { return };
    let me = crate::jobs::this_cpu_index();
    // Interrupts are off here (every caller changes mappings with them off): the CPU that holds
    // SENDING cannot be this one unless an NMI interrupted its round.
    loop {
        match SENDING.compare_exchange(0, me + 1, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => break,
            Err(holder) if holder == me + 1 => {
                // An NMI inside a round (see the module docs).
                NOT_SENT.fetch_add(1, Ordering::Relaxed);
                owe_everyone();
                return;
            }
            Err(_) => {
                // Another CPU's round: answer it (it may be waiting for this CPU), then try again.
                serve_request();
                core::hint::spin_loop();
            }
        }
    }
    let mut mask = 0u64;
    for index in 0..MAX_CPUS.min(64) {
        if index == me || crate::jobs::stopped(index) {
            // Itself (its own entry is flushed already), or halted for good with interrupts off
            // after an exception: it runs nothing, and would never answer.
            continue;
        }
        if RUNNING[index].load(Ordering::SeqCst) {
            OWED[index].store(true, Ordering::SeqCst);
            // Stopped meanwhile: it may have looked at its debt before it was set.
            if RUNNING[index].load(Ordering::SeqCst) {
                DEFERRED.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        }
        mask |= 1 << index;
    }
    let acks_before = ACKS.load(Ordering::SeqCst);
    for (index, request) in REQUEST.iter().enumerate().take(64) {
        if mask & (1 << index) != 0 {
            request.store(true, Ordering::SeqCst);
        }
    }
    let Some(sent_mask) = send(mask) else {
        NOT_SENT.fetch_add(1, Ordering::Relaxed);
        withdraw_requests();
        owe_everyone();
        SENDING.store(0, Ordering::Release);
        return;
    };
    // Requests to CPUs that were not sent an IPI (not up) are taken back before they could be
    // answered: only CPUs in the sent mask look at theirs.
    for (index, request) in REQUEST.iter().enumerate().take(64) {
        if mask & !sent_mask & (1 << index) != 0 {
            request.store(false, Ordering::SeqCst);
        }
    }
    let sent = u64::from(sent_mask.count_ones());
    if sent > 0 {
        ROUNDS.fetch_add(1, Ordering::Relaxed);
        IPIS.fetch_add(sent, Ordering::Relaxed);
        let t0 = crate::time::rdtsc();
        let limit = ACK_TIMEOUT_MS * crate::time::tsc_per_ms().max(1);
        while ACKS.load(Ordering::SeqCst) - acks_before < sent {
            if crate::time::rdtsc() - t0 > limit {
                TIMEOUTS.fetch_add(sent - (ACKS.load(Ordering::SeqCst) - acks_before).min(sent), Ordering::Relaxed);
                // Which one is late is not known: every CPU flushes at its next job boundary or
                // task switch.
                withdraw_requests();
                owe_everyone();
                break;
            }
            core::hint::spin_loop();
        }
        WAIT_CYCLES.fetch_add(crate::time::rdtsc() - t0, Ordering::Relaxed);
    } else {
        withdraw_requests();
    }
    SENDING.store(0, Ordering::Release);
}

/// Takes back the requests of a round that ends without every answer (they owe instead).
fn withdraw_requests() {
    for r in &REQUEST {
        r.store(false, Ordering::SeqCst);
    }
}

/// The shootdown IPI's work, on the CPU it interrupted (called by the smp crate's handler):
/// flushes, and answers the round if it has not already (see [`serve_request`]).
pub fn on_shootdown_ipi() {
    flush_everything();
    if REQUEST[crate::jobs::this_cpu_index()].swap(false, Ordering::SeqCst) {
        ACKS.fetch_add(1, Ordering::SeqCst);
    }
}

/// On parked CPU `index`, before a job: marks it running, then pays a flush it owes.
pub(crate) fn before_job(index: usize) {
    if let Some(running) = RUNNING.get(index) {
        running.store(true, Ordering::SeqCst);
        pay_owed(index);
    }
}

/// On parked CPU `index`, after a job (before it halts): marks it not running, then pays the
/// flush the rounds during the job left it.
pub(crate) fn after_job(index: usize) {
    if let Some(running) = RUNNING.get(index) {
        running.store(false, Ordering::SeqCst);
        pay_owed(index);
    }
}

fn pay_owed(index: usize) {
    if OWED.get(index).is_some_and(|o| o.swap(false, Ordering::SeqCst)) {
        flush_everything();
        LAZY_FLUSHES.fetch_add(1, Ordering::Relaxed);
    }
}
