//! `poweroff`: ends the machine with the success exit code (what `make session` waits for),
//! after one line on the watchdog's margin.
#![no_std]
#![forbid(unsafe_code)]

/// One line for `help`.
pub static DESCRIPTION: &str = "power off (QEMU exits with the success code)";

/// Entry point.
pub fn main(_args: &[&str]) -> isize {
    // How close the run came to the watchdog's limit: every test session ends here, so each
    // log says it (a margin that shrinks shows before a false hang report does).
    let w = watchdog::stats();
    if w.limit_ms > 0 {
        nano_core::println!(
            "watchdog at power-off: {} NMIs; longest stretch without a tick {} ms ({} ms seen outside the loader and fault reports; a hang is {} ms); {} hangs",
            w.nmis,
            w.longest_ms,
            w.longest_outside_long_work_ms,
            w.limit_ms,
            w.hangs
        );
    }
    nano_core::println!("powering off");
    nano_core::qemu::exit(nano_core::qemu::ExitCode::Success)
}
