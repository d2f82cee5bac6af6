//! stw: stopping the world — every other CPU that runs tasks waits at a known point, with
//! interrupts off, while one CPU changes what their tasks may be running (a swap's commit: the
//! reference scan of every stack, the relink, the retiring of old code).
//!
//! A CPU is stopped by an IPI ([`SEND_STOP`], sent by the smp crate, which owns the local
//! APIC). Its handler ([`on_stop_ipi`]) records where its stack pointer is — the registers of
//! the task it interrupted are pushed on that task's stack above it, so a scan of the stack from
//! there sees every reference the task holds — and spins until the world is resumed. An IPI is
//! taken only where interrupts are on, and every kernel lock that a stopper might need (heap,
//! page tables, task table, console, hooks) is held with interrupts off, so a stopped CPU holds
//! none of them. While it waits it answers TLB shootdown requests (the stopper changes page
//! permissions; see `crate::tlb::serve_request`).
//!
//! One stopper at a time; a CPU that wants to stop the world while another does is stopped
//! first (it answers the other's request while it waits for its turn).

use crate::hooks::Hook;
use crate::kernel::MAX_CPUS;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Sends the stop IPI to each CPU in the mask (bit `i` for CPU index `i`); the mask of those it
/// was sent to, or `None` if none could be sent now. Set by the smp crate.
pub static SEND_STOP: Hook<fn(u64) -> Option<u64>> = Hook::new("stw::send_stop");

/// The stopping CPU, plus one (0: the world runs).
static STOPPER: AtomicUsize = AtomicUsize::new(0);
/// Set while the world is to stay stopped.
static REQUESTED: AtomicBool = AtomicBool::new(false);
/// Per CPU index: the stack pointer it waits at while stopped (0: not stopped).
static STOPPED_AT: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Worlds stopped since boot, and CPUs that did not stop in time.
static STOPS: AtomicU64 = AtomicU64::new(0);
static LATE: AtomicU64 = AtomicU64::new(0);

/// How long the stopper waits for every CPU (they take the IPI as soon as interrupts are on;
/// with more virtual CPUs than host cores, when the host runs them).
const STOP_TIMEOUT_MS: u64 = 500;

/// Why the world could not be stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopError {
    /// CPU `cpu` did not stop within the timeout (it runs with interrupts off for that long, or
    /// the host does not run it); the others were let go again.
    Late {
        /// Its index.
        cpu: usize,
        /// The timeout, in milliseconds.
        ms: u64,
    },
}

impl core::fmt::Display for StopError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StopError::Late { cpu, ms } => write!(f, "CPU {cpu} did not stop within {ms} ms (it runs with interrupts off)"),
        }
    }
}

/// The world stopped: resumed when this is dropped. Made by [`stop_others`].
#[must_use = "the world resumes when this is dropped"]
pub struct Stopped {
    /// The CPUs stopped (bit `i` for CPU index `i`).
    pub mask: u64,
}

impl Drop for Stopped {
    fn drop(&mut self) {
        resume(self.mask);
    }
}

/// Lets the CPUs in `mask` go, and waits (briefly: they only spin) until each has left its
/// wait, so that a next stop cannot take a CPU on its way out for one that stopped again.
fn resume(mask: u64) {
    REQUESTED.store(false, Ordering::SeqCst);
    let t0 = crate::time::rdtsc();
    let limit = STOP_TIMEOUT_MS * crate::time::tsc_per_ms().max(1);
    while (0..64).any(|i| mask & (1 << i) != 0 && STOPPED_AT[i].load(Ordering::SeqCst) != 0) && crate::time::rdtsc() - t0 < limit {
        core::hint::spin_loop();
    }
    STOPPER.store(0, Ordering::Release);
}

/// Stops every other CPU that runs tasks (call with interrupts off: the caller keeps this CPU
/// until the [`Stopped`] is dropped). Without the smp crate, or with no other such CPU, nothing
/// is sent and the world counts as stopped.
pub fn stop_others() -> Result<Stopped, StopError> {
    let me = crate::jobs::this_cpu_index();
    // One stopper at a time; while another stops the world, this CPU is one it stops.
    while STOPPER.compare_exchange(0, me + 1, Ordering::Acquire, Ordering::Relaxed).is_err() {
        stop_here_if_asked(me);
        core::hint::spin_loop();
    }
    let mut mask = 0u64;
    for index in 0..MAX_CPUS.min(64) {
        if index != me && crate::jobs::runs_tasks(index) && !crate::jobs::stopped(index) {
            mask |= 1 << index;
        }
    }
    let Some(send) = SEND_STOP.get().filter(|_| mask != 0) else {
        // Nothing to stop; the stopper's turn still ends when the guard is dropped.
        return Ok(Stopped { mask: 0 });
    };
    REQUESTED.store(true, Ordering::SeqCst);
    let sent = send(mask).unwrap_or(0);
    if let Some(cpu) = (0..64).find(|&i| mask & !sent & (1 << i) != 0) {
        resume(sent);
        return Err(StopError::Late { cpu, ms: 0 });
    }
    let t0 = crate::time::rdtsc();
    let limit = STOP_TIMEOUT_MS * crate::time::tsc_per_ms().max(1);
    loop {
        let waiting = (0..64).find(|&i| mask & (1 << i) != 0 && STOPPED_AT[i].load(Ordering::SeqCst) == 0);
        let Some(cpu) = waiting else { break };
        if crate::time::rdtsc() - t0 > limit {
            LATE.fetch_add(1, Ordering::Relaxed);
            resume(mask);
            return Err(StopError::Late { cpu, ms: STOP_TIMEOUT_MS });
        }
        crate::tlb::serve_request();
        core::hint::spin_loop();
    }
    STOPS.fetch_add(1, Ordering::Relaxed);
    Ok(Stopped { mask })
}

/// The stop IPI's work, on the CPU it interrupted (called by the smp crate's handler, with
/// interrupts off): waits until the world is resumed.
pub fn on_stop_ipi() {
    stop_here_if_asked(crate::jobs::this_cpu_index());
}

/// Waits while the world is stopped, unless this CPU (`me`) is the one stopping it.
fn stop_here_if_asked(me: usize) {
    if REQUESTED.load(Ordering::SeqCst) && STOPPER.load(Ordering::Acquire) != me + 1 {
        wait_while_stopped(me);
    }
}

fn wait_while_stopped(me: usize) {
    let rsp: u64;
    // SAFETY: reads the stack pointer register; no memory is touched.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack)) };
    STOPPED_AT[me].store(rsp, Ordering::SeqCst);
    while REQUESTED.load(Ordering::SeqCst) {
        crate::tlb::serve_request();
        core::hint::spin_loop();
    }
    STOPPED_AT[me].store(0, Ordering::SeqCst);
    // Whatever the stopper changed, this CPU's translations are dropped before it goes on.
    crate::tlb::serve_request();
}

/// For code that spins with interrupts off waiting for another CPU (a lock it holds): answers a
/// TLB shootdown request, and stops here if the world is being stopped — what this CPU would do
/// in the IPIs' handlers if interrupts were on. Safe wherever the spinner holds no lock that
/// the stopper needs (it is waiting for one).
pub fn serve_while_waiting() {
    crate::tlb::serve_request();
    stop_here_if_asked(crate::jobs::this_cpu_index());
}

/// Where CPU `cpu` waits while the world is stopped (its stack pointer), if it does.
pub fn stopped_at(cpu: usize) -> Option<u64> {
    STOPPED_AT.get(cpu).map(|s| s.load(Ordering::SeqCst)).filter(|&s| s != 0)
}

/// Worlds stopped since boot, and stops abandoned because a CPU was late.
pub fn counts() -> (u64, u64) {
    (STOPS.load(Ordering::Relaxed), LATE.load(Ordering::Relaxed))
}
