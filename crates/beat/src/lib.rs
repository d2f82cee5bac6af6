//! `beat N [MS] [--panic-at K]`: starts a background task that calls `heartbeat::beat()` N times, MS
//! milliseconds apart (default 100), and returns at once — so the shell can `swap heartbeat`
//! while the task keeps calling it.
//!
//! The task is restartable and keeps its progress in a static of this crate: if it dies (say a
//! fault in a corrupted `heartbeat`), the recovery supervisor repairs what it ran and starts it
//! again, and it goes on from the beat it had reached — the work comes back, not just the task.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;

/// One line for `help`.
pub static DESCRIPTION: &str = "background task calling heartbeat::beat N times, MS ms apart: beat N [MS] [--panic-at K]";

/// One `beat` run's goal and progress (what a restarted task continues from).
#[derive(Debug, Clone, Copy)]
struct Job {
    beats: u64,
    ms: u64,
    done: u64,
    /// `--panic-at K`: panic (once) when beat K is due, to show a restart.
    panic_at: Option<u64>,
}

/// Every `beat` run, by index (the task's argument).
static JOBS: spin::Mutex<Vec<Job>> = spin::Mutex::new(Vec::new());

/// The task's body: beats until the job's goal, counting each beat as done once it returned.
pub fn run(job: u64) -> isize {
    let Some(j) = JOBS.lock().get(job as usize).copied() else { return 1 };
    if j.done > 0 {
        nano_core::println!("beat: job {job} resumes at beat {} of {}", j.done + 1, j.beats);
    }
    for k in j.done..j.beats {
        if j.panic_at == Some(k + 1) {
            if let Some(j) = JOBS.lock().get_mut(job as usize) {
                j.panic_at = None; // once: the restarted task goes on
            }
            panic!("beat: job {job} panics before beat {} (--panic-at)", k + 1);
        }
        heartbeat::beat();
        if let Some(j) = JOBS.lock().get_mut(job as usize) {
            j.done += 1;
        }
        task::sleep_ms(j.ms);
    }
    nano_core::println!("beat: job {job} finished {} beats", j.beats);
    0
}

/// Entry point.
pub fn main(args: &[&str]) -> isize {
    let usage = || {
        nano_core::println!("usage: beat N [MS] [--panic-at K]");
        2
    };
    let (mut nums, mut panic_at, mut it) = (alloc::vec::Vec::new(), None, args[1..].iter());
    while let Some(a) = it.next() {
        match (*a, command::parse_u64(a)) {
            ("--panic-at", _) => match it.next().and_then(|k| command::parse_u64(k)) {
                Some(k) => panic_at = Some(k),
                None => return usage(),
            },
            (_, Some(v)) => nums.push(v),
            _ => return usage(),
        }
    }
    let (n, ms) = match nums[..] {
        [n] => (n, 100),
        [n, ms] => (n, ms),
        _ => return usage(),
    };
    let job = {
        let mut jobs = JOBS.lock();
        jobs.push(Job { beats: n, ms, done: 0, panic_at });
        jobs.len() as u64 - 1
    };
    match task::spawn_restartable("beat", task::Restartable { entry: run, arg: job, restarts: 0 }) {
        Ok(id) => {
            nano_core::println!("beat: task {id} started (job {job})");
            0
        }
        Err(e) => {
            nano_core::println!("beat: {e}");
            1
        }
    }
}
