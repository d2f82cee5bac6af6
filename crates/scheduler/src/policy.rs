// The round-robin policy's items, shared with crates/alt/scheduler_v2, which includes this
// file with other POLICY_NAME and SLICE values.
//
// The run queue is a fixed ring of atomics in this crate's bss, not a heap `VecDeque` behind a
// lock, so that no value of its memory can make the policy fault or hang: a flipped bit (the
// fault campaign flips them) in a slot yields a task id the task crate does not run (it checks
// every id it is given), in the head or the length at worst a scrambled order, and a lost
// entry is put back by the task crate's periodic re-enqueue of every runnable task
// (`task::requeue_runnable`). A `VecDeque`'s pointer, capacity or lock word, flipped, took the
// kernel down inside the scheduler's critical section.
//
// No lock: the task crate calls the policy with interrupts off on the one CPU that runs tasks,
// so calls never overlap. (When tasks run on several CPUs this needs a per-CPU queue.)

extern crate alloc;

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use task::{Policy, TaskId};

/// Timer ticks a task may run before it is preempted.
pub const SLICE_TICKS: u64 = SLICE;

/// Slots in the run queue: more runnable tasks than this are still run, because the task crate
/// re-enqueues every runnable task periodically; they only wait longer.
const CAPACITY: usize = 256;

/// A FIFO of task ids in a fixed ring (see the module comment for why).
struct RunQueue {
    slots: [AtomicU64; CAPACITY],
    head: AtomicUsize,
    len: AtomicUsize,
}

/// The free-slot marker (no task has this id).
const EMPTY: u64 = u64::MAX;

impl RunQueue {
    const fn new() -> Self {
        Self { slots: [const { AtomicU64::new(EMPTY) }; CAPACITY], head: AtomicUsize::new(0), len: AtomicUsize::new(0) }
    }

    /// The head and length, brought back in range whatever their bits say.
    fn bounds(&self) -> (usize, usize) {
        (self.head.load(Ordering::Relaxed) % CAPACITY, self.len.load(Ordering::Relaxed).min(CAPACITY))
    }

    fn slot(&self, head: usize, i: usize) -> &AtomicU64 {
        &self.slots[(head + i) % CAPACITY]
    }

    fn contains(&self, id: TaskId) -> bool {
        let (head, len) = self.bounds();
        (0..len).any(|i| self.slot(head, i).load(Ordering::Relaxed) == id)
    }

    fn push_back(&self, id: TaskId) {
        let (head, len) = self.bounds();
        if len == CAPACITY {
            return; // full: the task crate's periodic re-enqueue brings it back later
        }
        self.slot(head, len).store(id, Ordering::Relaxed);
        self.head.store(head, Ordering::Relaxed);
        self.len.store(len + 1, Ordering::Relaxed);
    }

    fn pop_front(&self) -> Option<TaskId> {
        let (head, len) = self.bounds();
        if len == 0 {
            self.len.store(0, Ordering::Relaxed);
            return None;
        }
        let id = self.slot(head, 0).swap(EMPTY, Ordering::Relaxed);
        self.head.store((head + 1) % CAPACITY, Ordering::Relaxed);
        self.len.store(len - 1, Ordering::Relaxed);
        Some(id)
    }

    /// Removes every entry equal to `id`, keeping the order of the others.
    fn retain_not(&self, id: TaskId) {
        let (head, len) = self.bounds();
        let mut kept = 0;
        for i in 0..len {
            let v = self.slot(head, i).load(Ordering::Relaxed);
            if v != id {
                self.slot(head, kept).store(v, Ordering::Relaxed);
                kept += 1;
            }
        }
        for i in kept..len {
            self.slot(head, i).store(EMPTY, Ordering::Relaxed);
        }
        self.head.store(head, Ordering::Relaxed);
        self.len.store(kept, Ordering::Relaxed);
    }
}

static QUEUE: RunQueue = RunQueue::new();

fn enqueue(id: TaskId) {
    if !QUEUE.contains(id) {
        QUEUE.push_back(id);
    }
}

fn remove(id: TaskId) {
    QUEUE.retain_not(id);
}

fn pick_next() -> Option<TaskId> {
    QUEUE.pop_front()
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
