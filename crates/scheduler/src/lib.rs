//! scheduler: the round-robin policy.
//!
//! Policy only — a FIFO run queue and a time slice. The mechanism (stacks, switching) is the
//! task crate's; this crate can be swapped for another policy without touching it.
#![no_std]
#![forbid(unsafe_code)]

/// The policy's name, as `ps` shows it.
const POLICY_NAME: &str = "round-robin";
/// Slice length in timer ticks.
const SLICE: u64 = 2;

include!("policy.rs");
