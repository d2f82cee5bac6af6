//! leakcheck: does repeating some work make memory grow? (`nano_core::leakcheck::usage` gives
//! the kernel's current use; this crate holds the decision, host-tested.)
//!
//! Three commands repeat work and report leaks (`swap --cycles`, `wasm run --repeat`,
//! `run --fresh --cycles`). Comparing memory after the first and after the last cycle is wrong
//! both ways: it calls a periodic fluctuation a leak — the shape of a tree keyed by address
//! depends on which of two regions a crate landed in, so heap use can alternate by one node
//! (936 bytes was seen, every other cycle) — and it would miss a leak that the last cycle
//! happens to hide. A leak is growth: so the **largest** use seen in the first cycles is
//! compared with the largest in the last ones (windows of up to 10 cycles, each at most half
//! the run). A leak of even one byte per cycle shows over enough cycles; a bounded wobble
//! does not.

#![cfg_attr(not(test), no_std)]

extern crate alloc;

use core::fmt::Write;

/// Memory in use: physical frames and heap bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Frames in use.
    pub frames: u64,
    /// Heap bytes in use.
    pub heap: u64,
}

/// Samples of one repeated run.
#[derive(Debug, Clone)]
pub struct LeakCheck {
    cycles: u64,
    window: u64,
    early: Usage,
    late: Usage,
}

impl LeakCheck {
    /// For a run of `cycles` cycles.
    pub fn new(cycles: u64) -> LeakCheck {
        LeakCheck { cycles, window: (cycles / 2).clamp(1, 10), early: Usage::default(), late: Usage::default() }
    }

    /// Records the use after cycle `i` (0-based).
    pub fn record(&mut self, i: u64, u: Usage) {
        let max = |a: &mut Usage| {
            a.frames = a.frames.max(u.frames);
            a.heap = a.heap.max(u.heap);
        };
        if i < self.window {
            max(&mut self.early);
        }
        if i + self.window >= self.cycles {
            max(&mut self.late);
        }
    }

    /// Growth from the first window to the last (frames, heap bytes); zero or less: none.
    pub fn growth(&self) -> (i64, i64) {
        (self.late.frames as i64 - self.early.frames as i64, self.late.heap as i64 - self.early.heap as i64)
    }

    /// Two lines for the user, each starting with `who` (e.g. `swap:`): the windows' peaks,
    /// and `leak: none` or `leak: F frames, H heap bytes`.
    pub fn report(&self, who: &str) -> alloc::string::String {
        let mut s = alloc::string::String::new();
        let w = self.window;
        let _ = writeln!(
            s,
            "{who} most in use during cycles 1-{w}: {} frames, {} heap bytes; during cycles {}-{}: {} frames, {} heap bytes",
            self.early.frames,
            self.early.heap,
            self.cycles - w + 1,
            self.cycles,
            self.late.frames,
            self.late.heap
        );
        match self.growth() {
            (f, h) if f <= 0 && h <= 0 => {
                let _ = write!(s, "{who} leak: none");
            }
            (f, h) => {
                let _ = write!(s, "{who} leak: {} frames, {} heap bytes", f.max(0), h.max(0));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(frames: u64, heap: u64) -> Usage {
        Usage { frames, heap }
    }

    #[test]
    fn a_wobble_is_not_a_leak_and_growth_is() {
        let mut c = LeakCheck::new(1000);
        for i in 0..1000 {
            c.record(i, u(2403, 6_044_862 + if i % 2 == 1 { 936 } else { 0 }));
        }
        assert_eq!(c.growth(), (0, 0));
        assert!(c.report("swap:").ends_with("swap: leak: none"));
        let mut g = LeakCheck::new(1000);
        for i in 0..1000 {
            g.record(i, u(2403, 6_000_000 + i));
        }
        assert_eq!(g.growth(), (0, 990));
        assert!(g.report("swap:").ends_with("swap: leak: 0 frames, 990 heap bytes"));
        let mut two = LeakCheck::new(2);
        two.record(0, u(1, 10));
        two.record(1, u(2, 10));
        assert_eq!(two.growth(), (1, 0));
    }
}
