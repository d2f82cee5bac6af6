//! `echo`: prints its arguments separated by spaces.
#![no_std]
#![forbid(unsafe_code)]

/// One line for `help`.
pub static DESCRIPTION: &str = "print the arguments";

/// Entry point: prints the arguments (after the command name) joined by single spaces.
pub fn main(args: &[&str]) -> isize {
    let mut first = true;
    for a in args.iter().skip(1) {
        if !first {
            nano_core::print!(" ");
        }
        nano_core::print!("{a}");
        first = false;
    }
    nano_core::println!();
    0
}
