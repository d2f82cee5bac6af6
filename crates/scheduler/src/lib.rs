//! scheduler: the round-robin policy.
//!
//! Policy only — a FIFO run queue and a time slice. The mechanism (stacks, switching) is the
//! task crate's; this crate can be swapped for another policy without touching it.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::VecDeque;
use spin::Mutex;
use task::{Policy, TaskId};

/// Timer ticks a task may run before it is preempted.
pub const SLICE_TICKS: u64 = 2;

static QUEUE: Mutex<VecDeque<TaskId>> = Mutex::new(VecDeque::new());

fn enqueue(id: TaskId) {
    let mut q = QUEUE.lock();
    if !q.contains(&id) {
        q.push_back(id);
    }
}

fn remove(id: TaskId) {
    QUEUE.lock().retain(|&t| t != id);
}

fn pick_next() -> Option<TaskId> {
    QUEUE.lock().pop_front()
}

fn should_preempt(ticks_run: u64) -> bool {
    ticks_run >= SLICE_TICKS
}

static ROUND_ROBIN: Policy = Policy { name: "round-robin", enqueue, remove, pick_next, should_preempt };

/// State hook for `swap scheduler NEW --state scheduler::swap_hook`: the run queue was already
/// copied by name; what remains is to register this version's policy with the task crate,
/// which still points at the old version's.
pub fn swap_hook(_old: &crate_swap::OldState) -> Result<(), alloc::string::String> {
    task::set_policy(&ROUND_ROBIN);
    Ok(())
}

/// Registers this policy with the task crate.
pub fn init() {
    task::set_policy(&ROUND_ROBIN);
    log::info!("scheduler: round-robin policy, {SLICE_TICKS}-tick slices");
}
