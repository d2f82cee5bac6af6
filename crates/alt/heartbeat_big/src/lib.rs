//! heartbeat whose state changed shape (two counters): a swap needs a state hook.
#![no_std]
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};

/// Beats so far, and a second counter: a different size than version 1's.
pub static BEATS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// Prints one beat and returns its number.
#[inline(never)]
pub fn beat() -> u64 {
    let n = BEATS[0].fetch_add(1, Ordering::Relaxed) + 1;
    nano_core::println!("heartbeat big: beat #{n}");
    n
}
