//! triple: a word kept in three copies, voted on at every read — state that a flipped bit must
//! not change.
//!
//! Code has a reference copy (the loader's sealed copy; see the integrity check), writable data
//! has none: a bit flipped in a static is simply the new value. For the few words whose value
//! nothing else can tell again — the address a hook holds (a wrong one sends the timer
//! interrupt to a wild address), a workload's progress counter — [`Triple`] keeps three copies.
//! A read takes the value two copies agree on and writes it back over the third, reporting the
//! repair on the serial console; only two copies changed at once (two flips in one word's
//! copies, between two reads) defeat it, and then a read says so and returns `None`.
//!
//! Writes are not atomic across the copies: callers serialize them (a hook is set with
//! interrupts off, [`Triple::fetch_add`] runs with interrupts off; several CPUs writing one
//! `Triple` at once need a lock of their own). A read racing a
//! write on another CPU may see two old copies and one new one: it returns the old value,
//! which the write had not finished replacing.

use core::sync::atomic::{AtomicU64, Ordering};

/// How many copies a read found changed and repaired, since boot (all `Triple`s).
static REPAIRS: AtomicU64 = AtomicU64::new(0);

/// A `u64` in three copies (see the module documentation).
#[repr(C)]
pub struct Triple {
    copies: [AtomicU64; 3],
}

/// The voted value of three copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vote {
    /// All three agree.
    Same(u64),
    /// Two agree on the value; the copy at the index differs.
    Odd(u64, usize),
    /// No two agree.
    Lost,
}

fn vote(a: u64, b: u64, c: u64) -> Vote {
    match (a == b, b == c, a == c) {
        (true, true, _) => Vote::Same(a),
        (true, false, _) => Vote::Odd(a, 2),
        (false, true, _) => Vote::Odd(b, 0),
        (false, false, true) => Vote::Odd(a, 1),
        (false, false, false) => Vote::Lost,
    }
}

impl Triple {
    /// Three copies of `v`.
    pub const fn new(v: u64) -> Triple {
        Triple { copies: [AtomicU64::new(v), AtomicU64::new(v), AtomicU64::new(v)] }
    }

    /// The value, after repairing a copy that differs from the other two; `None` if no two
    /// copies agree (reported).
    pub fn load(&self) -> Option<u64> {
        let [a, b, c] = [0, 1, 2].map(|i| self.copies[i].load(Ordering::Acquire));
        match vote(a, b, c) {
            Vote::Same(v) => Some(v),
            Vote::Odd(v, i) => {
                let bad = [a, b, c][i];
                // Only replace what was read: a write that got there meanwhile wins.
                if self.copies[i].compare_exchange(bad, v, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                    REPAIRS.fetch_add(1, Ordering::Relaxed);
                    crate::serial::emergency_write(format_args!(
                        "triple: copy {i} of the word at {:#x} was {bad:#x}, the other two {v:#x}: repaired\n",
                        self as *const Triple as usize
                    ));
                }
                Some(v)
            }
            Vote::Lost => {
                crate::serial::emergency_write(format_args!(
                    "triple: the copies of the word at {:#x} disagree ({a:#x}, {b:#x}, {c:#x}): value lost\n",
                    self as *const Triple as usize
                ));
                None
            }
        }
    }

    /// Sets every copy (callers serialize writes; see the module documentation).
    pub fn store(&self, v: u64) {
        for c in &self.copies {
            c.store(v, Ordering::Release);
        }
    }

    /// Adds `n` to the voted value and returns the value before; `None` (and nothing changed)
    /// if the value was lost.
    /// The read and the write happen with interrupts off, so tasks on one CPU adding at once
    /// never lose an addition (tasks on several CPUs must still serialize).
    pub fn fetch_add(&self, n: u64) -> Option<u64> {
        x86_64::instructions::interrupts::without_interrupts(|| {
            let v = self.load()?;
            self.store(v.wrapping_add(n));
            Some(v)
        })
    }
}

/// How many changed copies reads have repaired since boot.
pub fn repairs() -> u64 {
    REPAIRS.load(Ordering::Relaxed)
}

/// For the in-kernel test: sets copy `i` alone, as a flipped bit would.
#[doc(hidden)]
pub fn corrupt_copy(t: &Triple, i: usize, v: u64) {
    t.copies[i % 3].store(v, Ordering::Release);
}
