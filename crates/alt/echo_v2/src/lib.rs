//! `echo`, version 2 (swap demo): prefixes its output with "echo v2:".
#![no_std]
#![forbid(unsafe_code)]

/// One line for `help`.
pub static DESCRIPTION: &str = "print the arguments (version 2)";

/// Entry point.
pub fn main(args: &[&str]) -> isize {
    nano_core::print!("echo v2:");
    for a in args.iter().skip(1) {
        nano_core::print!(" {a}");
    }
    nano_core::println!();
    0
}
