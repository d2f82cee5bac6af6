//! Memory use for the leak checks of repeated work; the decision is the host-tested
//! [`leakcheck`](::leakcheck) crate's.

pub use ::leakcheck::{LeakCheck, Usage};

/// Memory in use now: frames and heap bytes.
pub fn usage() -> Usage {
    Usage { frames: crate::frames::stats().used, heap: crate::heap::stats().used }
}
