// heartbeat's items, shared with crates/alt/heartbeat_v2 (which sets another VERSION).

use core::sync::atomic::{AtomicU64, Ordering};

/// Beats so far: state that a swap carries over to the new version.
pub static BEATS: AtomicU64 = AtomicU64::new(0);

/// Prints one beat and returns its number.
#[inline(never)]
pub fn beat() -> u64 {
    let n = BEATS.fetch_add(1, Ordering::Relaxed) + 1;
    nano_core::println!("heartbeat {VERSION}: beat #{n}");
    n
}
