//! `mem`: physical frames and kernel heap in use.
#![no_std]
#![forbid(unsafe_code)]

/// One line for `help`.
pub static DESCRIPTION: &str = "physical frames and heap in use";

/// Entry point.
pub fn main(_args: &[&str]) -> isize {
    let f = nano_core::frames::stats();
    let h = nano_core::heap::stats();
    nano_core::println!("frames: {} used of {} ({} KiB used, {} KiB free)", f.used, f.total, f.used * 4, (f.total - f.used) * 4);
    nano_core::println!("heap:   {} KiB used of {} KiB mapped", h.used / 1024, h.mapped / 1024);
    0
}
