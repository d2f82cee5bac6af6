//! Turning a CPU exception in a task into an unwind, as if the faulting instruction had called
//! a function that panics.
//!
//! The exception handler cannot unwind itself (x86-interrupt frames are not unwindable, and it
//! may run on an IST stack), so it only redirects the task: it returns with the task's stack
//! pointer unchanged and the instruction pointer at one of two entry stubs. The stub, now on the
//! task's stack, pushes "faulting rip + 1" as a return address (the unwinder looks up `ra - 1`,
//! which is the faulting instruction itself, so the faulting function's CFI row there applies)
//! and calls [`fault_start`], which starts an ordinary panic. Callee-saved registers still hold
//! their values at the fault, which is all landing pads rely on. The stub's CFI makes the CFA
//! equal to the faulting stack pointer; which stub is used depends on that pointer's alignment
//! mod 16, so the calls keep the ABI's alignment.
//!
//! The faulting instruction is not a call site, so the faulting function's cleanup table has no
//! entry for it: the unwind crate's personality lets that one frame pass (see
//! [`super::unwinding_fault_ip`]) — its own locals are not dropped; every caller's are.

use super::{BEGIN, Exit, TaskId, current, current_stack_bounds, exit, here, tables};
use alloc::string::String;
use x86_64::instructions::interrupts as cpu;

/// Stack the unwind needs below the faulting stack pointer (both unwinder phases, the
/// personality routine and the destructors it runs); with less (a stack overflow) the task is
/// ended without unwinding.
const HEADROOM: u64 = 32 * 1024;

core::arch::global_asm!(
    ".pushsection .text.delos_fault_entry_even,\"ax\",@progbits",
    ".globl delos_fault_entry_even",
    ".type delos_fault_entry_even,@function",
    // rsp = faulting rsp, 0 mod 16.
    "delos_fault_entry_even:",
    ".cfi_startproc",
    "sub rsp, 16",
    "call {ra}",
    "mov [rsp + 8], rax",
    ".cfi_def_cfa_offset 16",
    "call {start}",
    "ud2",
    ".cfi_endproc",
    ".size delos_fault_entry_even, . - delos_fault_entry_even",
    ".popsection",
    ".pushsection .text.delos_fault_entry_odd,\"ax\",@progbits",
    ".globl delos_fault_entry_odd",
    ".type delos_fault_entry_odd,@function",
    // rsp = faulting rsp, 8 mod 16.
    "delos_fault_entry_odd:",
    ".cfi_startproc",
    "sub rsp, 8",
    "call {ra}",
    "mov [rsp], rax",
    ".cfi_def_cfa_offset 8",
    "call {start}",
    "ud2",
    ".cfi_endproc",
    ".size delos_fault_entry_odd, . - delos_fault_entry_odd",
    ".popsection",
    ra = sym fault_return_address,
    start = sym fault_start,
);

unsafe extern "C" {
    fn delos_fault_entry_even();
    fn delos_fault_entry_odd();
}

/// Decides whether the fault `info` of task `cur` unwinds, and if so records it and returns the
/// entry stub where the task continues (on its faulting stack pointer). Runs in the exception
/// handler.
pub(crate) fn prepare(cur: TaskId, info: &exceptions::FaultInfo, what: &str) -> Option<u64> {
    BEGIN.get()?;
    let rsp = info.rsp;
    if rsp & 7 != 0 {
        return None;
    }
    // The running task's stack (the idle task's is nano_core's boot stack), known without the
    // task table, which the faulting code may hold.
    let (bottom, top) = current_stack_bounds();
    if rsp > top || rsp < bottom + HEADROOM {
        return None;
    }
    let mut slot = here().unwinding.try_lock()?;
    // The table, if the faulting code does not hold it, to mark the task as unwinding.
    let mut tasks = tables().lock_unless_held_here();
    let task = tasks.as_mut().and_then(|t| t.get_mut(&cur));
    // A fault during a fault's unwind, or during a panic's: the task ends.
    if slot.is_some() || task.as_ref().is_some_and(|t| t.panicking) {
        return None;
    }
    if let Some(t) = task {
        t.panicking = true;
    }
    *slot = Some((cur, String::from(what), info.rip));
    let entry = if rsp.is_multiple_of(16) { delos_fault_entry_even as *const () } else { delos_fault_entry_odd as *const () };
    Some(entry as u64)
}

/// The return address the entry stub pushes: one past the faulting instruction.
extern "C" fn fault_return_address() -> u64 {
    super::unwinding_fault_ip().map_or(0, |ip| ip + 1)
}

/// Starts the unwind of a fault (called by the entry stubs, "from" the faulting instruction).
extern "C-unwind" fn fault_start() -> ! {
    let cur = current();
    let what = cpu::without_interrupts(|| here().unwinding.lock().as_ref().filter(|f| f.0 == cur).map(|f| f.1.clone()));
    let what = what.unwrap_or_else(|| String::from("CPU exception"));
    if let Some(begin) = BEGIN.get() {
        begin(what.clone());
    }
    // No unwind could start (no unwind information for the code that faulted: a jump to where
    // there is none): a step is escaped instead.
    super::step::escape();
    if cur == super::idle_here() {
        // The idle task cannot end; without the unwind the fault is the kernel's.
        nano_core::serial::emergency_write(format_args!(
            "    (could not unwind the idle task's fault: system halted, exit code failure)\n"
        ));
        nano_core::qemu::exit(nano_core::qemu::ExitCode::Failure);
    }
    nano_core::serial::emergency_write(format_args!("    (could not unwind the fault; ending the task without running destructors)\n"));
    *here().unwinding.lock() = None;
    super::release_table_left_locked();
    exit(Exit::Faulted(what))
}
