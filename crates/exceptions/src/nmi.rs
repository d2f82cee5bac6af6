//! The NMI's own entry: a naked function that saves every general register and records where
//! (in three copies) while the NMI is handled, so that a fault in the handling — damaged code
//! of the watchdog's path (`exceptions::handle`, `interrupts::ticks`, ...), which runs at every
//! timer period — abandons the NMI instead of being charged to whatever task it interrupted
//! (the fault campaign saw the shell killed that way). [`super::dispatch`] sends such a fault
//! to [`nmi_resume`], on the saved registers, which puts them back and returns from the NMI.

use core::arch::naked_asm;
use nano_core::triple::Triple;
use x86_64::structures::idt::InterruptStackFrame;

/// The interrupted context's saved registers (the entry's stack pointer after pushing them)
/// while an NMI is handled; 0 otherwise.
static CONTEXT: Triple = Triple::new(0);

/// The NMI's entry (vector 2).
#[unsafe(naked)]
pub(crate) extern "C" fn nmi_entry() {
    naked_asm!(
        nano_core::push_general_registers!(),
        nano_core::record_stack_pointer!("ctx"),
        "cld",
        "lea rdi, [rsp + 120]",
        "call {body}",
        nano_core::clear_triple!("ctx"),
        nano_core::load_general_registers_checked_and_return!(),
        ctx = sym CONTEXT,
        body = sym nmi_body,
    )
}

/// What the entry calls, with the CPU's interrupt frame.
extern "C" fn nmi_body(frame: *mut InterruptStackFrame) {
    // SAFETY: the entry passes the address of the frame the CPU pushed for this NMI, on this
    // stack, live until the entry returns from the interrupt.
    let frame = unsafe { &mut *frame };
    super::handle("non-maskable interrupt", 2, None, frame);
}

/// Whether an NMI is being handled (a fault now is the NMI's, not the interrupted task's).
pub(crate) fn in_nmi() -> bool {
    // Only the boot CPU takes the watchdog's NMI: a fault on another CPU meanwhile is not the
    // NMI's.
    nano_core::jobs::this_cpu_index() == 0 && CONTEXT.load().unwrap_or(0) != 0
}

/// Forgets the NMI's context: its handling continues as the interrupted code's own (a hang
/// handled as a fault of the task, which may end it without returning here).
pub(crate) fn leave() {
    CONTEXT.store(0);
}

/// Where a fault in the NMI's handling resumes, with the stack pointer set (by the fault's own
/// return) to the registers the NMI's entry saved: puts every register back and returns from
/// the NMI to the interrupted code. No stack of its own and no slot to read: an NMI arriving
/// here (the next one is usually pending by now) pushes its frame below the saved registers,
/// and returns here with them intact — even if it faults and is abandoned in turn.
#[unsafe(naked)]
pub(crate) extern "C" fn nmi_resume() {
    naked_asm!(nano_core::load_general_registers_and_return!())
}

/// The saved context, taken (cleared): where [`nmi_resume`] is to find the registers.
pub(crate) fn take_context() -> u64 {
    let at = CONTEXT.load().unwrap_or(0);
    CONTEXT.store(0);
    at
}
