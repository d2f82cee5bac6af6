//! `poweroff`: ends the machine with the success exit code (what `make session` waits for).
#![no_std]
#![forbid(unsafe_code)]

/// One line for `help`.
pub static DESCRIPTION: &str = "power off (QEMU exits with the success code)";

/// Entry point.
pub fn main(_args: &[&str]) -> isize {
    nano_core::println!("powering off");
    nano_core::qemu::exit(nano_core::qemu::ExitCode::Success)
}
