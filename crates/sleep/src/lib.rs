//! `sleep MS`: waits (yielding the CPU); Ctrl-C in the shell ends it early.
#![no_std]
#![forbid(unsafe_code)]

/// One line for `help`.
pub static DESCRIPTION: &str = "wait MS milliseconds";

/// Entry point.
pub fn main(args: &[&str]) -> isize {
    let Some(ms) = args.get(1).and_then(|a| command::parse_u64(a)) else {
        nano_core::println!("usage: sleep MS");
        return 2;
    };
    task::sleep_ms(ms);
    0
}
