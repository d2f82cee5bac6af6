//! heartbeat: one beat per call, counted. Version 1 (crates/alt has others for the swap tests).
#![no_std]
#![forbid(unsafe_code)]

/// What each beat prints as its version.
const VERSION: &str = "v1";

include!("beat.rs");
