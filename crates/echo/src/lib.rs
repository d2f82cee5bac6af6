//! `echo`: prints its arguments separated by spaces.
//!
//! A shell command is a crate in the applications namespace whose entry point the shell finds
//! by symbol lookup; this is the smallest one.
#![no_std]
#![forbid(unsafe_code)]

/// Entry point: prints `args` joined by single spaces and a newline; returns 0.
pub fn main(args: &[&str]) -> isize {
    let mut first = true;
    for a in args {
        if !first {
            nano_core::print!(" ");
        }
        nano_core::print!("{a}");
        first = false;
    }
    nano_core::println!();
    0
}
