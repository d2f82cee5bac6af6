//! interrupts: the legacy 8259 PIC pair remapped to vectors 32..47, and the PIT as the timer.
//!
//! The timer ticks at [`TICK_HZ`]; each tick bumps a counter and calls the tick hook a higher
//! layer registered (the task crate's preemption). Lower layers offer hooks instead of calling
//! upward, so the scheduler can be swapped without touching this crate.
#![no_std]
#![feature(abi_x86_interrupt)]
#![deny(unsafe_op_in_unsafe_fn)]

include!("pic.rs");

/// The timer's interrupt entry (vector 32).
extern "x86-interrupt" fn timer(_frame: InterruptStackFrame) {
    timer_tick()
}

/// What `init` installs for the timer.
const TIMER_ENTRY: x86_64::structures::idt::HandlerFunc = timer;
