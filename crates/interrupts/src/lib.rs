//! interrupts: the legacy 8259 PIC pair remapped to vectors 32..47, and the PIT as the timer
//! until the smp crate moves the boot CPU's tick to its local APIC timer (the same vector and
//! this crate's same entry; `mask_pit_tick` then masks the PIT at the 8259).
//!
//! The timer ticks at [`TICK_HZ`]; each tick bumps a counter and calls the tick hook a higher
//! layer registered (the task crate's preemption). Lower layers offer hooks instead of calling
//! upward, so the scheduler can be swapped without touching this crate.
#![no_std]
#![feature(abi_x86_interrupt)]
#![deny(unsafe_op_in_unsafe_fn)]

include!("pic.rs");

/// The timer's interrupt entry (vector 32): see `timer_entry_asm!`.
#[unsafe(naked)]
extern "C" fn timer() {
    timer_entry_asm!()
}

/// What `init` installs for the timer.
// SAFETY: `timer` is an interrupt entry: it saves what it uses and ends in `iretq`, which is
// what an `x86-interrupt` handler is to the IDT (only its address is used).
const TIMER_ENTRY: x86_64::structures::idt::HandlerFunc =
    unsafe { core::mem::transmute::<extern "C" fn(), x86_64::structures::idt::HandlerFunc>(timer) };
