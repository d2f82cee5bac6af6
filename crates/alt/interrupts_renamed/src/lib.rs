//! interrupts, with the timer's interrupt entry under another name. Every symbol other crates
//! link to is still there, but IDT vector 32 holds the old `interrupts::timer`, which this
//! version lacks: swapping it in must be refused, naming the gate, with nothing changed.
#![no_std]
#![feature(abi_x86_interrupt)]
#![deny(unsafe_op_in_unsafe_fn)]

include!("../../../interrupts/src/pic.rs");

/// The timer's interrupt entry, renamed.
#[unsafe(naked)]
extern "C" fn timer_entry() {
    timer_entry_asm!()
}

/// What `init` installs for the timer.
// SAFETY: as in the interrupts crate: an interrupt entry, used only for its address.
const TIMER_ENTRY: x86_64::structures::idt::HandlerFunc =
    unsafe { core::mem::transmute::<extern "C" fn(), x86_64::structures::idt::HandlerFunc>(timer_entry) };
