//! The tasks' fault handlers: a fixed table of slots, written without a lock.
//!
//! Why no vector under a lock (what it was until the 2026-12-07 campaign): the registry is
//! walked when a task ends, and a task may end *because* of a fault. In campaign seed 43 a
//! flipped bit in the vector's length sent a task's end walking off the heap; the walk faulted
//! with the lock held, the task was ended without unwinding (it was on its way out), and every
//! later task end — on every CPU — spun on that lock for ever. A fixed table has no length or
//! heap pointer to damage: a walk visits exactly [`SLOTS`] slots, whatever the data says, and
//! there is no lock for an abandoned frame to keep. A damaged slot can only lose a handler or
//! attach one to a task that does not exist.
//!
//! Only a task registers, unregisters or looks up its own handlers, and a task's end forgets
//! them on that task's own way out, so two writers never race for one task's slots; two tasks
//! race only to claim a free slot, which a compare-and-swap settles.

use crate::{Category, Handler};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// How many handlers may be registered at once: three per task that runs WASM code (its trap
/// handler), so about 170 such tasks at once.
pub const SLOTS: usize = 512;

/// A slot's key while a task fills or empties it.
const BUSY: u64 = u64::MAX;

/// One registered handler. `key` is 0 when free, [`BUSY`] while written, else [`key`] of the
/// task and category; `handler` is 0 unless the slot is taken (a removed handler's address must
/// not linger where a swap's reference scan reads, or it would keep its crate from ever being
/// reclaimed).
struct Slot {
    key: AtomicU64,
    handler: AtomicUsize,
}

static TABLE: [Slot; SLOTS] = [const { Slot { key: AtomicU64::new(0), handler: AtomicUsize::new(0) } }; SLOTS];

/// The key of `task`'s handler for `category`: never 0 or [`BUSY`] for a real task id (task
/// ids count up from 1 and stay far below 2^59).
fn key(task: u64, category: Category) -> u64 {
    (task << 4) | (category as u64 + 1)
}

fn task_of(key: u64) -> u64 {
    key >> 4
}

/// Why a handler was not added.
pub enum AddError {
    /// The task already has a handler for this category.
    Present,
    /// Every slot is taken.
    Full,
}

/// Adds `task`'s `handler` for `category`.
pub fn add(task: u64, category: Category, handler: Handler) -> Result<(), AddError> {
    let k = key(task, category);
    if TABLE.iter().any(|s| s.key.load(Ordering::Acquire) == k) {
        return Err(AddError::Present);
    }
    for s in &TABLE {
        if s.key.compare_exchange(0, BUSY, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            s.handler.store(handler as usize, Ordering::Relaxed);
            s.key.store(k, Ordering::Release);
            return Ok(());
        }
    }
    Err(AddError::Full)
}

/// Removes `task`'s handlers that `which` selects (every category with `None`).
pub fn remove(task: u64, which: Option<Category>) {
    for s in &TABLE {
        let k = s.key.load(Ordering::Acquire);
        let selected = match which {
            Some(c) => k == key(task, c),
            None => k != 0 && k != BUSY && task_of(k) == task,
        };
        if selected && s.key.compare_exchange(k, BUSY, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            s.handler.store(0, Ordering::Relaxed);
            s.key.store(0, Ordering::Release);
        }
    }
}

/// `task`'s handler for `category`, if it registered one.
pub fn find(task: u64, category: Category) -> Option<Handler> {
    let k = key(task, category);
    let s = TABLE.iter().find(|s| s.key.load(Ordering::Acquire) == k)?;
    let h = s.handler.load(Ordering::Relaxed);
    if h == 0 {
        return None;
    }
    // SAFETY: a slot keyed for a task holds what `add` stored for it, a `Handler` turned into
    // its address (the same size: a fn pointer is one word); only the task itself removes it,
    // and it is not removing while it looks up. (A flipped bit in this static can make it a
    // wild address, as it can any code address kept in data.)
    Some(unsafe { core::mem::transmute::<usize, Handler>(h) })
}

/// How many handlers are registered.
pub fn count() -> usize {
    TABLE.iter().filter(|s| !matches!(s.key.load(Ordering::Relaxed), 0 | BUSY)).count()
}
