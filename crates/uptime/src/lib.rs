//! `uptime`: time since nano_core's entry, timer ticks and task switches.
#![no_std]
#![forbid(unsafe_code)]

/// One line for `help`.
pub static DESCRIPTION: &str = "time since boot";

/// Entry point.
pub fn main(_args: &[&str]) -> isize {
    let us = nano_core::time::micros_since_entry();
    nano_core::println!(
        "up {}.{:06} s; {} timer ticks at {} Hz; {} task switches",
        us / 1_000_000,
        us % 1_000_000,
        interrupts::ticks(),
        interrupts::TICK_HZ,
        task::switches()
    );
    0
}
