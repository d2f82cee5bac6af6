// heartbeat's items, shared with crates/alt/heartbeat_v2 (which sets another VERSION).

use nano_core::triple::Triple;

/// Beats so far: state that a swap carries over to the new version. Kept in three copies
/// (`nano_core::triple`): a bit flipped in it is repaired at the next beat instead of
/// changing the count for good (nothing else knows the right value).
pub static BEATS: Triple = Triple::new(0);

/// Prints one beat and returns its number.
#[inline(never)]
pub fn beat() -> u64 {
    let n = match BEATS.fetch_add(1) {
        Some(before) => before + 1,
        None => {
            // Two copies changed at once: the count is lost (reported); start again.
            BEATS.store(1);
            1
        }
    };
    nano_core::println!("heartbeat {VERSION}: beat #{n}");
    n
}
