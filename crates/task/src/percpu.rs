//! What the task layer keeps for each CPU: its running task, its idle task, its stack bounds,
//! the fault it is unwinding, and the flags of its idle task. Each CPU reads and writes only its
//! own entry (found by its index, `nano_core::jobs::this_cpu_index`), so none of these words
//! needs a lock; a task never changes CPU, so a task's reads of "here" stay valid across a
//! switch.

use super::TaskId;
use alloc::string::String;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use nano_core::triple::Triple;
use spin::Mutex;

/// How many CPUs (indexes `0..TASK_CPUS`) can run tasks; the others only run jobs.
pub const TASK_CPUS: usize = 16;

/// One CPU's task state.
pub(crate) struct PerCpu {
    /// The running task's id, in three copies (a flipped bit would make every switch save the
    /// running task's registers into another task).
    pub(crate) current: Triple,
    /// This CPU's idle task (CPU 0's is task 0, the boot context).
    pub(crate) idle: AtomicU64,
    /// Set when the idle task enters its idle loop: until then (on the boot CPU) it is still
    /// bringing the system up and takes its turn like any task; afterwards it only runs when
    /// nothing else can.
    pub(crate) idling: AtomicBool,
    /// Set by [`super::run_idle`]: the next switch goes to the idle task even if others are
    /// runnable.
    pub(crate) force_idle: AtomicBool,
    /// The task a switch's bookkeeping last marked running, plus one (0: none): what an
    /// abandoned step settles (see [`super::settle_running`]). A stale value is harmless: a task
    /// of this CPU other than its current one marked running is always wrong.
    pub(crate) marked_next: AtomicU64,
    /// The running task's stack (bottom, top), set with `current` at every switch, so that the
    /// fault handler can check a stack pointer without the task table.
    pub(crate) stack: [AtomicU64; 2],
    /// The idle task's stack (bottom, top): nano_core's boot stack on CPU 0, the AP's own stack
    /// on the others. See [`PerCpu::idle_stack`].
    idle_stack: [AtomicU64; 2],
    /// The running task's innermost guarded step's context (0: not in a step), in three copies
    /// (a flipped bit would make a fault escape to a wrong context). Swapped at every task
    /// switch (see `super::step`).
    pub(crate) innermost: Triple,
    /// The CPU exception being unwound here — the task, the kill reason, the faulting
    /// instruction — kept outside the task table: the fault may hit code that holds the table
    /// (the scheduler policy is called under it), and the unwind is what releases it. One at a
    /// time per CPU: unwinding runs with interrupts off until its catch.
    pub(crate) unwinding: Mutex<Option<(TaskId, String, u64)>>,
    /// The task whose [`super::exit`] runs here, plus one (0: none). A fault in that task now
    /// is a fault on its way out. A stale value is harmless: ids are not reused.
    pub(crate) ending: AtomicU64,
    /// The address of the `saving` flag of the task a switch here is leaving (0: none), for
    /// the task switched to to clear (`super::finish_switch`).
    pub(crate) switched_from: AtomicU64,
    /// Halts of this CPU in `super::wait_until` (also shown by `cpus`): a waiting task halts
    /// the CPU only once every waiting task of it has looked at what it waits for since the
    /// last halt.
    pub(crate) halts: AtomicU64,
}

impl PerCpu {
    const fn new() -> PerCpu {
        PerCpu {
            current: Triple::new(0),
            idle: AtomicU64::new(0),
            idling: AtomicBool::new(false),
            force_idle: AtomicBool::new(false),
            marked_next: AtomicU64::new(0),
            stack: [AtomicU64::new(0), AtomicU64::new(0)],
            idle_stack: [AtomicU64::new(0), AtomicU64::new(0)],
            innermost: Triple::new(0),
            unwinding: Mutex::new(None),
            ending: AtomicU64::new(0),
            switched_from: AtomicU64::new(0),
            halts: AtomicU64::new(0),
        }
    }

    /// The idle task's stack (bottom, top).
    pub(crate) fn idle_stack(&self) -> (u64, u64) {
        (self.idle_stack[0].load(Ordering::Relaxed), self.idle_stack[1].load(Ordering::Relaxed))
    }

    /// Records the idle task's stack (when the CPU starts running tasks).
    pub(crate) fn set_idle_stack(&self, (bottom, top): (u64, u64)) {
        self.idle_stack[0].store(bottom, Ordering::Relaxed);
        self.idle_stack[1].store(top, Ordering::Relaxed);
    }
}

/// One entry per CPU that can run tasks, and a last one for every other CPU (which runs no
/// task code but jobs; it is never written).
static PER_CPU: [PerCpu; TASK_CPUS + 1] = [const { PerCpu::new() }; TASK_CPUS + 1];

/// This CPU's index: the word after the running task's TCB self-pointer (`*(tp + 8)`, written
/// by `make_tls`; a task never changes CPU), a load instead of the GS base MSR that
/// `nano_core::jobs::this_cpu_index` reads (under TCG an MSR read made every task switch a
/// quarter slower). Before tasking started on the boot CPU there is no TLS block yet: nano_core
/// is asked. (A parked CPU runs task code only once its idle task's block is in FS: see
/// `start_on_this_cpu`.)
pub(crate) fn this_cpu() -> usize {
    if !super::STARTED.load(core::sync::atomic::Ordering::Acquire) {
        return nano_core::jobs::this_cpu_index();
    }
    let cpu: u64;
    // SAFETY: once tasking started, FS.base on every CPU that runs task code is the running
    // task's TLS block, whose TCB has this word (see `make_tls`); the read has no side effect.
    unsafe { core::arch::asm!("mov {}, qword ptr fs:[8]", out(reg) cpu, options(nostack, readonly, preserves_flags)) };
    cpu as usize
}

/// CPU `cpu`'s entry.
pub(crate) fn of(cpu: usize) -> &'static PerCpu {
    &PER_CPU[cpu.min(TASK_CPUS)]
}

/// This CPU's entry.
pub(crate) fn here() -> &'static PerCpu {
    of(this_cpu())
}
