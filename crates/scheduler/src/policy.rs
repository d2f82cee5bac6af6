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

/// State hook for `swap scheduler NEW --state scheduler::swap_hook` (an example: a swap moves
/// the policy registration by itself). It checks that the run queue it inherits is the old
/// version's, then registers this version's policy with the task crate.
pub fn swap_hook(old: &mod_mgmt::swap::OldState) -> Result<(), alloc::string::String> {
    if old.get("scheduler::QUEUE").is_none() {
        return Err("the old version has no run queue".into());
    }
    task::set_policy(&ROUND_ROBIN);
    Ok(())
}

/// Registers this policy with the task crate.
pub fn init() {
    task::set_policy(&ROUND_ROBIN);
    log::info!("scheduler: {POLICY_NAME} policy, {SLICE_TICKS}-tick slices");
}
