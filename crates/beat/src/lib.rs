//! `beat N [MS]`: starts a background task that calls `heartbeat::beat()` N times, MS
//! milliseconds apart (default 100), and returns at once — so the shell can `swap heartbeat`
//! while the task keeps calling it.
#![no_std]
#![forbid(unsafe_code)]

/// One line for `help`.
pub static DESCRIPTION: &str = "background task calling heartbeat::beat N times, MS ms apart";

/// Entry point.
pub fn main(args: &[&str]) -> isize {
    let Some(n) = args.get(1).and_then(|a| nano_core::kernel::parse_u64(a)) else {
        nano_core::println!("usage: beat N [MS]");
        return 2;
    };
    let ms = args.get(2).and_then(|a| nano_core::kernel::parse_u64(a)).unwrap_or(100);
    match task::spawn_detached("beat", move || {
        for _ in 0..n {
            heartbeat::beat();
            task::sleep_ms(ms);
        }
        0
    }) {
        Ok(id) => {
            nano_core::println!("beat: task {id} started");
            0
        }
        Err(e) => {
            nano_core::println!("beat: {e}");
            1
        }
    }
}
