//! heartbeat without `beat`: swapping it in must be refused (beat's task uses `beat`).
#![no_std]
#![forbid(unsafe_code)]

use nano_core::triple::Triple;

/// Beats so far.
pub static BEATS: Triple = Triple::new(0);
