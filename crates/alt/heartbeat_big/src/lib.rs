//! heartbeat whose state changed shape (two counters): a swap needs a state hook.
#![no_std]
#![forbid(unsafe_code)]

use nano_core::triple::Triple;

/// Beats so far, and a second counter: a different size than version 1's.
pub static BEATS: [Triple; 2] = [Triple::new(0), Triple::new(0)];

/// Prints one beat and returns its number.
#[inline(never)]
pub fn beat() -> u64 {
    let n = BEATS[0].fetch_add(1).unwrap_or(0) + 1;
    nano_core::println!("heartbeat big: beat #{n}");
    n
}
