//! The interrupt handlers that sit on task stacks: the stop IPI's (where a CPU waits while the
//! world is stopped, [`crate::stw`]) and a parked CPU's local APIC timer tick (which may switch
//! tasks, leaving its frame on the preempted task's stack until it runs again). They live in
//! nano_core, which is never swapped: in a loaded crate (smp), a swap of that crate would find
//! its old code on the stack of every stopped or preempted task, and wait for it for ever.
//!
//! The smp crate owns the local APIC: it tells nano_core where the end-of-interrupt register is
//! mapped ([`set_eoi_register`]) and installs these handlers in the IDT.

use crate::hooks::Hook;
use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::structures::idt::InterruptStackFrame;

/// The local APIC's end-of-interrupt register (every CPU sees its own APIC at the same address);
/// 0 before the smp crate set it.
static EOI_REGISTER: AtomicU64 = AtomicU64::new(0);

/// A parked CPU's timer tick, for the task layer (`task::ap_tick`), called with interrupts off
/// after the end of interrupt.
pub static AP_TICK_HOOK: Hook<fn()> = Hook::new("nano_core::ap_tick");

/// Sends an NMI to CPU `index` (set by the smp crate); whether it was sent. The watchdog sends
/// one to a parked CPU whose timer stopped ticking: its hang handler ends what it runs.
pub static SEND_NMI: Hook<fn(usize) -> bool> = Hook::new("nano_core::send_nmi");

/// Per CPU index: local APIC timer interrupts taken (the watchdog watches them move).
static AP_TICKS: [AtomicU64; crate::kernel::MAX_CPUS] = [const { AtomicU64::new(0) }; crate::kernel::MAX_CPUS];

/// Timer interrupts CPU `index` has taken (0 for the boot CPU, whose timer is the PIT).
pub fn ap_ticks(index: usize) -> u64 {
    AP_TICKS.get(index).map_or(0, |t| t.load(Ordering::Relaxed))
}

/// Sets where the local APIC's end-of-interrupt register is mapped.
pub fn set_eoi_register(va: u64) {
    EOI_REGISTER.store(va, Ordering::Release);
}

pub(crate) fn end_of_interrupt() {
    let eoi = EOI_REGISTER.load(Ordering::Acquire);
    if eoi != 0 {
        // SAFETY: the smp crate mapped the local APIC's register page and gave this register's
        // address; writing 0 to EOI signals the end of the interrupt in service.
        unsafe { (eoi as *mut u32).write_volatile(0) };
    }
}

/// The stop IPI's handler: waits while the world is stopped (see [`crate::stw`]).
pub extern "x86-interrupt" fn stop_handler(_frame: InterruptStackFrame) {
    crate::stw::on_stop_ipi();
    end_of_interrupt();
}

/// A parked CPU's local APIC timer: the task layer's tick, after the end of interrupt (the tick
/// may switch tasks, and the next task must get its ticks). A job (run by the idle task) is not
/// preempted: it holds the CPU's job context and its deferred TLB flushes, which belong to no
/// task.
pub extern "x86-interrupt" fn ap_timer_handler(_frame: InterruptStackFrame) {
    end_of_interrupt();
    if let Some(t) = AP_TICKS.get(crate::jobs::this_cpu_index()) {
        t.fetch_add(1, Ordering::Relaxed);
    }
    if !crate::jobs::in_job_here()
        && let Some(tick) = AP_TICK_HOOK.get()
    {
        tick();
    }
}
