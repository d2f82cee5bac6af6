//! `echo`, version 3 (make push demo): prefixes its output with "echo v3:".
#![no_std]
#![forbid(unsafe_code)]

/// One line for `help`.
pub static DESCRIPTION: &str = "print the arguments (version 3)";

/// Entry point.
pub fn main(args: &[&str]) -> isize {
    nano_core::print!("echo v3:");
    for a in args.iter().skip(1) {
        nano_core::print!(" {a}");
    }
    nano_core::println!();
    0
}
