// The round-robin policy's items, shared with crates/alt/scheduler_v2, which includes this
// file with other POLICY_NAME and SLICE values.

extern crate alloc;

use alloc::collections::VecDeque;
use spin::Mutex;
use task::{Policy, TaskId};

/// Timer ticks a task may run before it is preempted.
pub const SLICE_TICKS: u64 = SLICE;

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

static ROUND_ROBIN: Policy = Policy { name: POLICY_NAME, enqueue, remove, pick_next, should_preempt };

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
    log::info!("scheduler: {POLICY_NAME} policy, {SLICE_TICKS}-tick slices");
}
