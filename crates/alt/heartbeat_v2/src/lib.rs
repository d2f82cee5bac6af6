//! heartbeat: one beat per call, counted. Version 2 (swap demo).
#![no_std]
#![forbid(unsafe_code)]

/// What each beat prints as its version.
const VERSION: &str = "v2";

include!("../../../heartbeat/src/beat.rs");
