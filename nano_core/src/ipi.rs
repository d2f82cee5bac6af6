//! The interrupt handlers that sit on task stacks: the stop IPI's (where a CPU waits while the
//! world is stopped, [`crate::stw`]) and a parked CPU's local APIC timer tick (which may switch
//! tasks, leaving its frame on the preempted task's stack until it runs again). They live in
//! nano_core, which is never swapped: in a loaded crate (smp), a swap of that crate would find
//! its old code on the stack of every stopped or preempted task, and wait for it for ever.
//!
//! The smp crate owns the local APIC: it tells nano_core where the end-of-interrupt register is
//! mapped ([`set_eoi_register`]) and installs these handlers in the IDT.

use crate::hooks::Hook;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// Local APIC timer interrupts parked CPU `index` has taken (0 for the boot CPU, whose ticks
/// the interrupts crate counts, whichever timer gives them).
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

/// Set once the boot CPU's scheduling tick comes from its local APIC timer (the smp crate moves
/// it there from the PIT): the tick's end of interrupt then goes to the local APIC. Kept here,
/// in nano_core, so that it outlives swaps of the crates that read it (interrupts, exceptions).
static BOOT_TICK_BY_LOCAL_APIC: AtomicBool = AtomicBool::new(false);

/// Records that the boot CPU's tick now comes from its local APIC timer (see
/// [`boot_tick_end_of_interrupt`]). Call with interrupts off, after [`set_eoi_register`] and
/// before the timer starts.
pub fn set_boot_tick_by_local_apic() {
    BOOT_TICK_BY_LOCAL_APIC.store(true, Ordering::Release);
}

/// Whether the boot CPU's tick comes from its local APIC timer (else the PIT, through the 8259).
pub fn boot_tick_by_local_apic() -> bool {
    BOOT_TICK_BY_LOCAL_APIC.load(Ordering::Acquire)
}

/// Ends the boot CPU's timer interrupt where it came from: the local APIC, or the master 8259
/// (a non-specific end of interrupt).
pub fn boot_tick_end_of_interrupt() {
    if boot_tick_by_local_apic() {
        end_of_interrupt();
    } else {
        // SAFETY: OCW2 to the master 8259's command port: no memory effects.
        unsafe { x86_64::instructions::port::Port::<u8>::new(0x20).write(0x20) }
    }
}

/// The boot CPU's local APIC timer as a hang report needs it: whether the tick's vector is in
/// service (taken, its end of interrupt not sent) and whether the timer is masked.
#[derive(Debug, Clone, Copy)]
pub struct LocalTimerState {
    /// The tick's vector is in service.
    pub in_service: bool,
    /// The timer's local vector table entry is masked.
    pub masked: bool,
}

/// [`LocalTimerState`] for the tick's `vector`, read on the boot CPU; `None` while its tick is
/// the PIT's. Reads two registers and changes nothing (for an NMI handler).
pub fn boot_local_timer_state(vector: u8) -> Option<LocalTimerState> {
    let eoi = EOI_REGISTER.load(Ordering::Acquire);
    if !boot_tick_by_local_apic() || eoi == 0 {
        return None;
    }
    let base = eoi - 0xB0;
    // SAFETY: the smp crate mapped the local APIC's register page (EOI_REGISTER lies in it);
    // the in-service registers (0x100 + 0x10 per 32 vectors) and the timer's LVT entry (0x320)
    // are plain reads without side effects.
    let (isr, lvt) = unsafe {
        (((base + 0x100 + u64::from(vector / 32) * 0x10) as *const u32).read_volatile(), ((base + 0x320) as *const u32).read_volatile())
    };
    Some(LocalTimerState { in_service: isr & (1 << (vector % 32)) != 0, masked: lvt & (1 << 16) != 0 })
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
