//! interrupts, with the timer's interrupt entry under another name. Every symbol other crates
//! link to is still there, but IDT vector 32 holds the old `interrupts::timer`, which this
//! version lacks: swapping it in must be refused, naming the gate, with nothing changed.
#![no_std]
#![feature(abi_x86_interrupt)]
#![deny(unsafe_op_in_unsafe_fn)]

include!("../../../interrupts/src/pic.rs");

/// The timer's interrupt entry, renamed.
extern "x86-interrupt" fn timer_entry(_frame: InterruptStackFrame) {
    timer_tick()
}

/// What `init` installs for the timer.
const TIMER_ENTRY: x86_64::structures::idt::HandlerFunc = timer_entry;
