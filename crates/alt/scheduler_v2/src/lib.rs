//! scheduler, version 2: round-robin with 1-tick slices (swap demo; see crates/scheduler).
//!
//! Policy only — a FIFO run queue and a time slice. The mechanism (stacks, switching) is the
//! task crate's; this crate can be swapped for another policy without touching it.
#![no_std]
#![forbid(unsafe_code)]

/// The policy's name, as `ps` shows it.
const POLICY_NAME: &str = "round-robin-v2";
/// Slice length in timer ticks.
const SLICE: u64 = 1;

include!("../../../scheduler/src/policy.rs");
