//! The parked CPUs as compile helpers: with more than one CPU, a module's functions are
//! compiled on every parked CPU beside the task that asked (`wasm_runtime::compile::Workers`).
//!
//! A helper runs a plain job (`smp::try_post`): it takes functions from the compile's shared
//! counter until none is left. A fault or a panic there abandons the job on that CPU only
//! (`nano_core::jobs`), and the functions it had claimed are compiled again by the task. A CPU
//! busy with another job is not waited for. Everything a helper reads is on the heap: a task
//! killed while it waits never frees it, so a helper still running reads nothing freed.
//!
//! `--serial-compile` compiles on the task alone (for comparison, and for `make bench`);
//! `--fault-helpers` makes every helper fault before it takes any function (fault injection:
//! the task then compiles them all, and says why).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use wasm_runtime::compile::Workers;

/// Set by `--serial-compile` for the command that gave it.
pub(crate) static SERIAL: AtomicBool = AtomicBool::new(false);
/// Set by `--fault-helpers` for the command that gave it.
pub(crate) static FAULT: AtomicBool = AtomicBool::new(false);
/// How many parked CPUs took part in the last compile that used helpers.
static LAST_HELPERS: AtomicUsize = AtomicUsize::new(0);

/// The helpers of the last compile that had any.
pub(crate) fn last_helpers() -> usize {
    LAST_HELPERS.load(Ordering::Relaxed)
}

/// What a helper job is given: the compile's entry and its shared state.
struct HelperJob {
    work: fn(*const ()),
    arg: *const (),
}

/// A helper's job on a parked CPU.
fn helper_job(arg: u64) -> u64 {
    // SAFETY: `ParkedCpus::run` posts the address of its boxed `HelperJob`, kept (or leaked)
    // until every helper has returned or abandoned the job.
    let job = unsafe { &*(arg as *const HelperJob) };
    if FAULT.load(Ordering::Relaxed) {
        smp::faulting_job(0);
    }
    (job.work)(job.arg);
    0
}

/// The parked CPUs, as `wasm_runtime`'s compile helpers.
pub(crate) struct ParkedCpus;

impl Workers for ParkedCpus {
    fn helpers(&self) -> usize {
        if SERIAL.load(Ordering::Relaxed) { 0 } else { smp::idle_parked().len() }
    }

    fn run(&self, work: fn(*const ()), arg: *const (), mine: &mut dyn FnMut()) {
        let job = Box::new(HelperJob { work, arg });
        let at = &*job as *const HelperJob as u64;
        let posted: Vec<smp::Pending> = smp::idle_parked().into_iter().filter_map(|cpu| smp::try_post(cpu, helper_job, at).ok()).collect();
        LAST_HELPERS.store(posted.len(), Ordering::Relaxed);
        mine();
        for p in posted {
            if let Err(e) = p.wait() {
                nano_core::println!("wasm: a compile helper failed ({e}); the task compiles what it had claimed");
            }
        }
        drop(job);
    }
}
