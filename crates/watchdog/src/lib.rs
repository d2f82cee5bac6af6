//! watchdog: notices the CPU running with interrupts off and not coming back.
//!
//! Everything else that watches the kernel — the supervisor, the scrubber, preemption itself —
//! runs on timer interrupts. Damaged code that loops with interrupts off (in the scheduler, the
//! task switch, the timer's own entry: the fault campaign found such hangs) stops all of them,
//! and on one CPU nothing noticed. The watchdog needs an interrupt that interrupts-off code
//! cannot hold back: an NMI. The PIT's line reaches the I/O APIC as well as the 8259 PIC, so
//! [`arm`] routes it there as an NMI to the boot CPU (`smp::route_isa_irq_as_nmi`): every
//! timer period brings an NMI as well as the timer interrupt. At each NMI the watchdog compares
//! the timer's tick count with the last one it saw; when no tick has come for the limit
//! (`watchdog_ms=N`, default [`DEFAULT_LIMIT_MS`]; 0 for no watchdog), it tells the exceptions
//! crate, which repairs damaged code or ends the hung step or task (see `exceptions::hang`).
//!
//! The same NMIs watch the scheduler: when ticks come but no task has been switched to for the
//! limit, every crate's code is checked and repaired from the NMI (`exceptions::NmiVerdict::
//! Stalled`). Usually one task simply runs alone, and the check finds nothing; but a damaged
//! decision that picks the same task every time (the fault campaign found one: the idle task,
//! for good) looks the same, and then the scrubber, a task, never runs to repair it.
//!
//! The limit must stay above what the kernel legitimately does with interrupts off. Measured
//! over the QEMU tests (`cpus` shows the longest stretch since boot): up to 1 s while the
//! loader is held (it runs with interrupts off, and loading the 9 MiB cranelift_codegen takes
//! that long under TCG), up to 210 ms while a fault report builds a crate's DWARF line tables,
//! under 80 ms otherwise. So the limit is 2 s, and [`LONG_WORK_FACTOR`] times that during such
//! known-long work (`nano_core::kernel::long_work_running`: the loader held, or a fault report
//! reading debug information — on an overloaded host one took 3.7 s, and the watchdog, which
//! then gave it only the plain limit, ended a healthy task's report as a hang).
#![no_std]

extern crate alloc;

use alloc::string::String;
use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::instructions::interrupts::without_interrupts;

/// The limit: milliseconds without a timer interrupt that make a hang (0: not armed).
static LIMIT_MS: AtomicU64 = AtomicU64::new(0);
/// The timer's tick count, as the NMIs see it move.
static TICKS: Progress = Progress::new();
/// The task switch count, as the NMIs see it move.
static SWITCHES: Progress = Progress::new();
/// The scrubber's passes, as the NMIs see them move.
static SCRUBS: Progress = Progress::new();
/// The scrubber's period in milliseconds (0: no scrubber, nothing to watch).
static SCRUB_PERIOD_MS: AtomicU64 = AtomicU64::new(0);
/// How many scrub periods without a pass make the scrubber starved.
pub const STARVED_PERIODS: u64 = 3;
/// Starvation checks made (the scrubber made no pass for [`STARVED_PERIODS`] periods).
static STARVATION_CHECKS: AtomicU64 = AtomicU64::new(0);

/// A count the NMIs watch: the value the last NMI saw, and since when (microseconds since
/// nano_core's entry) it has not moved — or since the watchdog last acted on it.
struct Progress {
    count: AtomicU64,
    since_us: AtomicU64,
}

/// What an NMI saw of a [`Progress`].
enum Seen {
    /// The count moved; it had stood still for `stretch_us` before.
    Moved { stretch_us: u64 },
    /// The count has not moved for `for_us`.
    Still { for_us: u64 },
}

impl Progress {
    const fn new() -> Progress {
        Progress { count: AtomicU64::new(0), since_us: AtomicU64::new(0) }
    }

    /// Starts watching from `count` at `now`.
    fn reset(&self, count: u64, now: u64) {
        self.count.store(count, Ordering::Relaxed);
        self.since_us.store(now, Ordering::Relaxed);
    }

    /// Takes the count an NMI reads at `now`.
    fn observe(&self, count: u64, now: u64) -> Seen {
        let for_us = now.saturating_sub(self.since_us.load(Ordering::Relaxed));
        if self.count.swap(count, Ordering::Relaxed) != count {
            self.since_us.store(now, Ordering::Relaxed);
            return Seen::Moved { stretch_us: for_us };
        }
        Seen::Still { for_us }
    }

    /// Counts the stillness from `now` again (the watchdog acted on it).
    fn restart(&self, now: u64) {
        self.since_us.store(now, Ordering::Relaxed);
    }
}
/// Stall checks made (no task switch for the limit).
static STALL_CHECKS: AtomicU64 = AtomicU64::new(0);
/// NMIs taken.
static NMIS: AtomicU64 = AtomicU64::new(0);
/// The longest stretch between NMIs that saw the tick count move, in microseconds.
static LONGEST_US: AtomicU64 = AtomicU64::new(0);
/// The longest an NMI saw the tick count stand still outside known-long work: how close
/// the kernel came to the limit that applies then (the margin `poweroff` reports).
static LONGEST_OUTSIDE_LONG_WORK_US: AtomicU64 = AtomicU64::new(0);
/// Where the PIT's line was routed as an NMI.
static ROUTE: spin::Mutex<Option<smp::IsaRoute>> = spin::Mutex::new(None);

/// The default limit: ten times the longest stretch with interrupts off the QEMU tests showed
/// outside the loader (a fault report that builds debug information: about 200 ms).
pub const DEFAULT_LIMIT_MS: u64 = 2000;
/// During known-long work (the loader held — a load or a swap, which run with interrupts off:
/// about 1 s for cranelift_codegen under TCG — or a fault report building debug information),
/// the limit is this many times longer.
pub const LONG_WORK_FACTOR: u64 = 5;

/// What `cpus` shows.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    /// The limit in milliseconds (0: not armed).
    pub limit_ms: u64,
    /// Where the PIT's line arrives as an NMI.
    pub route: Option<smp::IsaRoute>,
    /// NMIs taken since boot.
    pub nmis: u64,
    /// The longest stretch between two NMIs that saw the tick count move, in milliseconds, not
    /// counting stretches ended by a hang report: the longest the kernel ran with interrupts off
    /// and came back by itself (one timer period when it never does).
    pub longest_ms: u64,
    /// The longest an NMI saw no tick outside known-long work, in milliseconds (the limit
    /// itself applies there; [`LONG_WORK_FACTOR`] times it during such work).
    pub longest_outside_long_work_ms: u64,
    /// Hangs reported.
    pub hangs: u64,
    /// Stall checks made (no task switch for the limit: every crate's code verified).
    pub stall_checks: u64,
    /// Stall checks that repaired damaged code.
    pub stalls_repaired: u64,
    /// Starvation checks made (the scrubber made no pass for [`STARVED_PERIODS`] periods:
    /// every crate's code verified from the NMI).
    pub starvation_checks: u64,
}

/// The watchdog's figures.
pub fn stats() -> Stats {
    Stats {
        limit_ms: LIMIT_MS.load(Ordering::Relaxed),
        route: without_interrupts(|| *ROUTE.lock()),
        nmis: NMIS.load(Ordering::Relaxed),
        longest_ms: LONGEST_US.load(Ordering::Relaxed) / 1000,
        longest_outside_long_work_ms: LONGEST_OUTSIDE_LONG_WORK_US.load(Ordering::Relaxed) / 1000,
        hangs: exceptions::hangs(),
        stall_checks: STALL_CHECKS.load(Ordering::Relaxed),
        stalls_repaired: exceptions::stalls_repaired(),
        starvation_checks: STARVATION_CHECKS.load(Ordering::Relaxed),
    }
}

/// Arms the watchdog at boot (captain calls it once the I/O APIC is known): the `watchdog_ms`
/// kernel option, default [`DEFAULT_LIMIT_MS`]. A machine without an I/O APIC runs without a
/// watchdog, which is logged.
pub fn init() {
    let limit = boot_info::cmdline::get(&nano_core::kernel::boot_state().cmdline, "watchdog_ms")
        .and_then(command::parse_u64)
        .unwrap_or(DEFAULT_LIMIT_MS);
    if limit == 0 {
        log::info!("watchdog: off (watchdog_ms=0)");
        return;
    }
    match arm(limit) {
        Ok(r) => log::info!(
            "watchdog: the PIT's IRQ {} arrives at I/O APIC input {} (GSI {}) as an NMI to APIC {}; a hang is {limit} ms without a timer interrupt",
            r.irq,
            r.input,
            r.gsi,
            r.apic_id
        ),
        Err(e) => log::warn!("watchdog: not armed: {e}"),
    }
}

/// Arms (or re-arms) the watchdog with a limit of `limit_ms`.
pub fn arm(limit_ms: u64) -> Result<smp::IsaRoute, String> {
    let now = nano_core::time::micros_since_entry();
    TICKS.reset(interrupts::ticks(), now);
    SWITCHES.reset(task::switches_on(0), now);
    SCRUBS.reset(recovery::stats().scrub_passes, now);
    SCRUB_PERIOD_MS.store(recovery::scrub_period_ms(), Ordering::Relaxed);
    LIMIT_MS.store(limit_ms, Ordering::Relaxed);
    exceptions::set_nmi_hook(on_nmi);
    match smp::route_isa_irq_as_nmi(0) {
        Ok(r) => {
            without_interrupts(|| *ROUTE.lock() = Some(r));
            Ok(r)
        }
        Err(e) => {
            disarm();
            Err(e)
        }
    }
}

/// Switches the watchdog off: the PIT's line masked at the I/O APIC, the NMI hook removed.
pub fn disarm() {
    if let Some(r) = without_interrupts(|| ROUTE.lock().take()) {
        smp::unroute(&r);
    }
    LIMIT_MS.store(0, Ordering::Relaxed);
    exceptions::clear_nmi_hook();
}

/// Every NMI: has the timer ticked since the last one? If not for the limit, the CPU hangs with
/// interrupts off (counting starts again, so that a hang that goes on after the exceptions
/// crate's repair is reported once more a limit later). If ticks come but no task switch for
/// the limit, a stall: the exceptions crate checks every crate's code (see `NmiVerdict`).
fn on_nmi() -> exceptions::NmiVerdict {
    NMIS.fetch_add(1, Ordering::Relaxed);
    let now = nano_core::time::micros_since_entry();
    let ticks = ticks_since(now);
    watch_parked_cpus(now, &ticks);
    match ticks {
        Ticks::Hang { ms } => exceptions::NmiVerdict::Hang { ms },
        // A stall is judged only while ticks come: without them it may be a hang in the making,
        // which the hang check reports (and a quiet repair by the stall check would hide).
        Ticks::Moved => match (stall_for(now), scrubber_starved_for(now)) {
            (Some(ms), _) => exceptions::NmiVerdict::Stalled { ms },
            (None, Some(ms)) => exceptions::NmiVerdict::Starved { what: "the scrubber", ms },
            (None, None) => exceptions::NmiVerdict::Nothing,
        },
        Ticks::Still => exceptions::NmiVerdict::Nothing,
    }
}

/// What an NMI saw of the timer.
enum Ticks {
    /// It ticked since the last NMI.
    Moved,
    /// It did not, for less than the limit.
    Still,
    /// It did not, for the limit: a hang of `ms` milliseconds.
    Hang { ms: u64 },
}

/// How long no task switch has come, if that reached the limit (and starts counting again).
fn stall_for(now: u64) -> Option<u64> {
    let Seen::Still { for_us } = SWITCHES.observe(task::switches_on(0), now) else { return None };
    let limit = LIMIT_MS.load(Ordering::Relaxed);
    if limit == 0 || for_us < limit * 1000 || nano_core::kernel::long_work_running() {
        return None;
    }
    SWITCHES.restart(now);
    STALL_CHECKS.fetch_add(1, Ordering::Relaxed);
    Some(for_us / 1000)
}

/// How long the scrubber has made no pass, if that reached [`STARVED_PERIODS`] of its periods
/// (and starts counting again). Tasks switch, ticks come, and yet the scrubber never runs: a
/// damaged policy that queues some tasks and silently drops others looks like this — the
/// fault campaign found one (seed 22, trial 30: a flip in `scheduler::enqueue` dropped the
/// beat task, and the `sleep` the shell waited for, for good), which the stall check (no
/// switch at all) does not see, and the scrubber, starved itself, could not repair.
fn scrubber_starved_for(now: u64) -> Option<u64> {
    let period = SCRUB_PERIOD_MS.load(Ordering::Relaxed);
    let Seen::Still { for_us } = SCRUBS.observe(recovery::stats().scrub_passes, now) else { return None };
    let limit_ms = (period * STARVED_PERIODS).max(LIMIT_MS.load(Ordering::Relaxed));
    if period == 0 || LIMIT_MS.load(Ordering::Relaxed) == 0 || for_us < limit_ms * 1000 || nano_core::kernel::long_work_running() {
        return None;
    }
    SCRUBS.restart(now);
    STARVATION_CHECKS.fetch_add(1, Ordering::Relaxed);
    Some(for_us / 1000)
}

/// Each parked CPU's timer ticks, as the NMIs see them move.
static AP_TICKS: [Progress; task::TASK_CPUS] = [const { Progress::new() }; task::TASK_CPUS];
/// NMIs sent to parked CPUs whose timer stopped.
static AP_HANGS: AtomicU64 = AtomicU64::new(0);

/// NMIs sent to parked CPUs that hung (their timer stood still for the limit).
pub fn parked_cpu_hangs() -> u64 {
    AP_HANGS.load(Ordering::Relaxed)
}

/// A parked CPU that runs tasks and whose local APIC timer has not ticked for the limit (the
/// longer one while any CPU does long work: the loader runs with interrupts off) hangs with
/// interrupts off: it is sent an NMI, whose handler there ends what it runs as a hang
/// (`exceptions`; its idle task's hang stops that CPU). Without this, a task looping with
/// interrupts off on an AP went unnoticed, and every TLB round and stop of the world waited for
/// that CPU until its timeout, for good.
///
/// The parked CPUs are judged only when the boot CPU ticked since the last NMI (`boot`): a
/// boot CPU that runs with interrupts off may hold what they wait for — the task table, the
/// loader — and then they wait with interrupts off too. After a hang of the boot CPU their
/// stillness counts afresh. (Before, a hang of the boot CPU inside the scheduler, with the
/// task table held, had every AP's idle task sent an NMI at the same moment, and every AP
/// stopped.) A boot CPU that is merely still (waiting for a hung AP's TLB flush, 500 ms at a
/// time) keeps the windows running.
fn watch_parked_cpus(now: u64, boot: &Ticks) {
    match boot {
        Ticks::Moved => {}
        Ticks::Still => return,
        Ticks::Hang { .. } => {
            for seen in AP_TICKS.iter().skip(1) {
                seen.restart(now);
            }
            return;
        }
    }
    let limit = match LIMIT_MS.load(Ordering::Relaxed) {
        0 => return,
        l if nano_core::kernel::long_work_running() => l * LONG_WORK_FACTOR,
        l => l,
    };
    for (cpu, seen) in AP_TICKS.iter().enumerate().skip(1) {
        if !nano_core::jobs::runs_tasks(cpu) || nano_core::jobs::stopped(cpu) {
            continue;
        }
        if let Seen::Still { for_us } = seen.observe(nano_core::ipi::ap_ticks(cpu), now)
            && for_us >= limit * 1000
            && nano_core::ipi::SEND_NMI.get().is_some_and(|send| send(cpu))
        {
            seen.restart(now);
            AP_HANGS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Whether the timer ticked since the last NMI; if not for the limit, a hang (and counting
/// starts again).
fn ticks_since(now: u64) -> Ticks {
    let for_us = match TICKS.observe(interrupts::ticks(), now) {
        Seen::Moved { stretch_us } => {
            // Ticks again: the stretch since the last NMI that saw one ended by itself.
            LONGEST_US.fetch_max(stretch_us, Ordering::Relaxed);
            return Ticks::Moved;
        }
        Seen::Still { for_us } => for_us,
    };
    let held = nano_core::kernel::long_work_running();
    if !held {
        LONGEST_OUTSIDE_LONG_WORK_US.fetch_max(for_us, Ordering::Relaxed);
    }
    let limit = match LIMIT_MS.load(Ordering::Relaxed) {
        l if held => l * LONG_WORK_FACTOR,
        l => l,
    };
    if limit == 0 || for_us < limit * 1000 {
        return Ticks::Still;
    }
    TICKS.restart(now);
    Ticks::Hang { ms: for_us / 1000 }
}
