//! `btbench`: measures, at the bottom of a 20-frame-deep call chain, the time per frame of
//! walking the stack (frame pointers, and DWARF CFI) and of naming each frame (symbol only,
//! and symbol plus file:line after the debug information is loaded), and a whole backtrace
//! measured as one. `make bench` runs it.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use core::hint::black_box;

/// One line for `help`.
pub static DESCRIPTION: &str = "time backtraces: unwinding and symbolizing, per frame";

const DEPTH: u32 = 20;
const ROUNDS: u64 = 50;

fn now() -> u64 {
    nano_core::time::micros_since_entry()
}

/// The running task's return addresses by frame pointers (the task crate's walk).
fn fp_walk() -> Vec<u64> {
    let me = task::current();
    task::without_preemption(task::stack_return_addresses).into_iter().find(|(id, _, _)| *id == me).map(|(_, _, a)| a).unwrap_or_default()
}

/// What a backtrace line needs: the symbol's demangled name and the offset, without
/// allocating (the loader caches demangled names).
fn name(pc: u64) -> usize {
    nano_core::kernel::with_loader_ref(|l| l.symbol_at(pc).and_then(|(_, _, s)| s).map_or(0, |(y, off)| y.demangled().len() + off as usize))
}

#[inline(never)]
fn measure() {
    let mut fp = 0u64;
    let mut frames = 0usize;
    for _ in 0..ROUNDS {
        let t = now();
        let v = black_box(fp_walk());
        fp += now() - t;
        frames = v.len();
    }
    let mut cfi = 0u64;
    let mut cfi_frames = 0usize;
    for _ in 0..ROUNDS {
        let t = now();
        let v = black_box(unwind::cfi_backtrace(64));
        cfi += now() - t;
        cfi_frames = v.len();
    }
    let pcs = fp_walk();
    let pcs = &pcs[..pcs.len().min(DEPTH as usize)];
    let mut sym = 0u64;
    for _ in 0..ROUNDS {
        let t = now();
        for &pc in pcs {
            black_box(name(pc - 1));
        }
        sym += now() - t;
    }
    for &pc in pcs {
        black_box(debuginfo::locate(pc - 1)); // load the debug information first
    }
    let mut line = 0u64;
    for _ in 0..ROUNDS {
        let t = now();
        for &pc in pcs {
            black_box(name(pc - 1));
            let mut n = 0u32;
            debuginfo::with_location(pc - 1, &mut |_, outer| n = outer.1);
            black_box(n);
        }
        line += now() - t;
    }
    let per = |total: u64, n: usize| total as f64 / (ROUNDS as f64 * n.max(1) as f64);
    let n = pcs.len();
    nano_core::println!("btbench: {frames} frames by frame pointers, {cfi_frames} by DWARF CFI; {n} frames symbolized");
    nano_core::println!("btbench: unwind per frame: frame pointers {:.2} us, DWARF CFI {:.2} us", per(fp, frames), per(cfi, cfi_frames));
    nano_core::println!("btbench: symbolize per frame: symbol {:.2} us, symbol+file:line {:.2} us", per(sym, n), per(line, n));
    // A whole backtrace, measured as one: walk the stack, then name every frame.
    let whole = |with_line: bool| {
        let mut t: Vec<u64> = (0..ROUNDS)
            .map(|_| {
                let t0 = now();
                for &pc in &fp_walk() {
                    black_box(name(pc - 1));
                    if with_line {
                        let mut n = 0u32;
                        debuginfo::with_location(pc - 1, &mut |_, outer| n = outer.1);
                        black_box(n);
                    }
                }
                now() - t0
            })
            .collect();
        t.sort_unstable();
        t[t.len() / 2]
    };
    nano_core::println!(
        "btbench: a whole {frames}-frame backtrace, measured as one (median of {ROUNDS}): walk+symbols {} us, walk+symbols+file:line {} us (goal <= 50 us)",
        whole(false),
        whole(true)
    );
}

#[inline(never)]
fn deep(n: u32) -> u32 {
    if n == 0 {
        measure();
        return 0;
    }
    black_box(deep(black_box(n - 1))) + 1
}

/// Entry point.
pub fn main(_args: &[&str]) -> isize {
    black_box(deep(DEPTH));
    0
}
