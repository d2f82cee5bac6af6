//! `selftest`: checks the task machinery and per-task fault handling from inside the running
//! kernel.
//!
//! Each check prints `selftest NAME ... ok` or `... FAILED: why`; the command returns the number
//! of failures. This crate is itself loaded at run time and has thread-locals of its own, so the
//! TLS check exercises mod_mgmt's TLS layout for a crate loaded after tasking started.
#![no_std]
#![feature(thread_local)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::Cell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use task::Exit;

/// One line for `help`.
pub static DESCRIPTION: &str = "check tasks, preemption, kill, TLS and SSE state; --switches N: time N task switches between two yielding tasks; --cpus: preemption, TLS and SSE of tasks pinned to every CPU at once";

#[thread_local]
static TLS_COUNTER: Cell<u64> = Cell::new(1000);

type Check = fn() -> Result<(), String>;

fn spawn_join() -> Result<(), String> {
    let id = task::spawn("st-ret", || 42).map_err(|e| format!("{e}"))?;
    match task::join(id) {
        Ok(Exit::Returned(42)) => Ok(()),
        other => Err(format!("join gave {other:?}")),
    }
}

fn preemption() -> Result<(), String> {
    // The spinner never yields; only a timer preemption lets the setter run. The setter is
    // spawned once the spinner has started: spawned together, a tick during the spinner's start
    // (1-tick slices under scheduler_v2) let the setter run first, and the spinner never spun.
    let flag = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let (f2, s2) = (flag.clone(), started.clone());
    let spinner = task::spawn("st-spin", move || {
        s2.store(true, Ordering::Relaxed);
        while !f2.load(Ordering::Relaxed) {
            core::hint::spin_loop();
        }
        1
    })
    .map_err(|e| format!("{e}"))?;
    while !started.load(Ordering::Relaxed) {
        task::yield_now();
    }
    let f3 = flag.clone();
    let setter = task::spawn("st-set", move || {
        f3.store(true, Ordering::Relaxed);
        0
    })
    .map_err(|e| format!("{e}"))?;
    let a = task::join(spinner).map_err(|e| format!("{e}"))?;
    let b = task::join(setter).map_err(|e| format!("{e}"))?;
    if a == Exit::Returned(1) && b == Exit::Returned(0) { Ok(()) } else { Err(format!("spinner {a:?}, setter {b:?}")) }
}

fn kill_running() -> Result<(), String> {
    let id = task::spawn("st-victim", || {
        loop {
            core::hint::spin_loop();
        }
    })
    .map_err(|e| format!("{e}"))?;
    task::sleep_ms(30);
    task::kill(id).map_err(|e| format!("{e}"))?;
    match task::join(id) {
        Ok(Exit::Killed) => Ok(()),
        other => Err(format!("join gave {other:?}")),
    }
}

fn tls_per_task() -> Result<(), String> {
    let mk = |n: u64| {
        move || {
            for _ in 0..n {
                TLS_COUNTER.set(TLS_COUNTER.get() + 1);
                task::yield_now();
            }
            TLS_COUNTER.get() as isize
        }
    };
    let a = task::spawn("st-tls-a", mk(5)).map_err(|e| format!("{e}"))?;
    let b = task::spawn("st-tls-b", mk(9)).map_err(|e| format!("{e}"))?;
    let (ra, rb) = (task::join(a), task::join(b));
    if ra == Ok(Exit::Returned(1005)) && rb == Ok(Exit::Returned(1009)) {
        Ok(())
    } else {
        Err(format!("got {ra:?} and {rb:?}, want 1005 and 1009"))
    }
}

fn sse_state_preserved() -> Result<(), String> {
    let mk = |v: u64| {
        move || {
            // SAFETY: SSE is enabled; only xmm7 is touched, which the soft-float kernel never uses.
            unsafe { core::arch::asm!("movq xmm7, {}", in(reg) v, out("xmm7") _) };
            let end = nano_core::time::micros_since_entry() + 60_000;
            while nano_core::time::micros_since_entry() < end {
                core::hint::spin_loop(); // preempted by the timer meanwhile
            }
            let got: u64;
            // SAFETY: as above.
            unsafe { core::arch::asm!("movq {}, xmm7", out(reg) got) };
            (got == v) as isize
        }
    };
    let a = task::spawn("st-sse-a", mk(0x1111_2222_3333_4444)).map_err(|e| format!("{e}"))?;
    let b = task::spawn("st-sse-b", mk(0x5555_6666_7777_8888)).map_err(|e| format!("{e}"))?;
    let (ra, rb) = (task::join(a), task::join(b));
    if ra == Ok(Exit::Returned(1)) && rb == Ok(Exit::Returned(1)) { Ok(()) } else { Err(format!("xmm7 not preserved: {ra:?} {rb:?}")) }
}

fn fault_kills_only_the_task() -> Result<(), String> {
    let id = task::spawn("st-fault", || {
        // SAFETY: deliberately invalid: the page fault must end only this task.
        unsafe { (0x10 as *mut u64).write_volatile(1) };
        0
    })
    .map_err(|e| format!("{e}"))?;
    match task::join(id) {
        Ok(Exit::Faulted(why)) if why.starts_with("page fault") => Ok(()),
        other => Err(format!("join gave {other:?}")),
    }
}

fn many_tasks() -> Result<(), String> {
    static SUM: AtomicU64 = AtomicU64::new(0);
    SUM.store(0, Ordering::Relaxed);
    let mut ids = alloc::vec::Vec::new();
    for i in 1..=20u64 {
        ids.push(
            task::spawn("st-many", move || {
                task::yield_now();
                SUM.fetch_add(i, Ordering::Relaxed);
                0
            })
            .map_err(|e| format!("{e}"))?,
        );
    }
    for id in ids {
        task::join(id).map_err(|e| format!("{e}"))?;
    }
    let s = SUM.load(Ordering::Relaxed);
    if s == 210 { Ok(()) } else { Err(format!("sum {s}, want 210")) }
}

fn landing() -> ! {
    task::exit(Exit::Returned(77))
}

fn on_invalid_address(_: &exceptions::FaultInfo, _: exceptions::Category) -> exceptions::Action {
    exceptions::Action::Resume(landing as *const () as u64)
}

fn on_arith(_: &exceptions::FaultInfo, _: exceptions::Category) -> exceptions::Action {
    exceptions::Action::Resume(landing as *const () as u64)
}

fn handler_resumes_at_landing() -> Result<(), String> {
    let before = exceptions::resumed_count();
    let handlers = exceptions::handler_count();
    let id = task::spawn("st-handled", || {
        if exceptions::register_handler(exceptions::Category::InvalidAddress, on_invalid_address).is_err() {
            return 1;
        }
        // A second handler for the same category is refused.
        if exceptions::register_handler(exceptions::Category::InvalidAddress, on_invalid_address)
            != Err(exceptions::HandlerError::AlreadyRegistered(exceptions::Category::InvalidAddress))
        {
            return 2;
        }
        // SAFETY: deliberately invalid: the task's handler resumes at `landing`.
        unsafe { (0x20 as *mut u64).write_volatile(1) };
        3
    })
    .map_err(|e| format!("{e}"))?;
    let r = task::join(id);
    let id2 = task::spawn("st-handled-div", || {
        let _ = exceptions::register_handler(exceptions::Category::ArithmeticError, on_arith);
        // SAFETY: deliberately divides by a zero register: the handler resumes at `landing`.
        unsafe { core::arch::asm!("xor ecx, ecx", "div ecx", out("eax") _, out("edx") _, out("ecx") _) };
        4
    })
    .map_err(|e| format!("{e}"))?;
    let r2 = task::join(id2);
    let resumed = exceptions::resumed_count() - before;
    // Both tasks ended (by their landing's exit): their handlers are forgotten.
    let left = exceptions::handler_count();
    if r == Ok(Exit::Returned(77)) && r2 == Ok(Exit::Returned(77)) && resumed == 2 && left == handlers {
        Ok(())
    } else {
        Err(format!("got {r:?}, {r2:?}, {resumed} resumed, {left} handlers registered after (before: {handlers})"))
    }
}

fn panic_ends_only_the_task() -> Result<(), String> {
    let id = task::spawn("st-panic", || panic!("selftest panic")).map_err(|e| format!("{e}"))?;
    match task::join(id) {
        Ok(Exit::Panicked(m)) if m.starts_with("selftest panic at ") => Ok(()),
        other => Err(format!("join gave {other:?}")),
    }
}

/// Panics (not inlined, so the unwinder has real frames to walk).
#[inline(never)]
fn boom(msg: &str) -> ! {
    panic!("{msg}")
}

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn unwinding_runs_destructors() -> Result<(), String> {
    let dropped = Arc::new(AtomicBool::new(false));
    let d = dropped.clone();
    let id = task::spawn("st-unwind", move || {
        let _guard = SetOnDrop(d);
        boom("unwind me")
    })
    .map_err(|e| format!("{e}"))?;
    let r = task::join(id);
    if matches!(r, Ok(Exit::Panicked(_))) && dropped.load(Ordering::Relaxed) {
        Ok(())
    } else {
        Err(format!("join gave {r:?}, destructor ran: {}", dropped.load(Ordering::Relaxed)))
    }
}

fn catch_and_resume_unwind() -> Result<(), String> {
    let caught = unwind::catch(|| -> u32 { boom("caught here") });
    match &caught {
        Err(m) if m.starts_with("caught here") => {}
        other => return Err(format!("catch gave {other:?}")),
    }
    let outer = unwind::catch(|| {
        if let Err(m) = unwind::catch(|| -> u32 { boom("inner") }) {
            unwind::resume(m);
        }
    });
    match outer {
        Err(m) if m.starts_with("inner") => Ok(()),
        other => Err(format!("resume gave {other:?}")),
    }
}

const CHECKS: &[(&str, Check)] = &[
    ("spawn_join", spawn_join),
    ("preemption", preemption),
    ("kill_running", kill_running),
    ("tls_per_task", tls_per_task),
    ("sse_state_preserved", sse_state_preserved),
    ("fault_kills_only_the_task", fault_kills_only_the_task),
    ("many_tasks", many_tasks),
    ("handler_resumes_at_landing", handler_resumes_at_landing),
    ("panic_ends_only_the_task", panic_ends_only_the_task),
    ("unwinding_runs_destructors", unwinding_runs_destructors),
    ("catch_and_resume_unwind", catch_and_resume_unwind),
];

/// Entry point.
/// `selftest --switches N`: this task and a partner yield to each other `n` times each; the
/// time per switch, with whatever else runs (the idle task is not runnable meanwhile).
fn time_switches(n: u64) -> isize {
    let stop = Arc::new(AtomicBool::new(false));
    let partner_stop = stop.clone();
    let partner = match task::spawn("st-yield", move || {
        while !partner_stop.load(Ordering::Relaxed) {
            task::yield_now();
        }
        0
    }) {
        Ok(id) => id,
        Err(e) => {
            nano_core::println!("selftest: cannot spawn the partner: {e}");
            return 1;
        }
    };
    task::yield_now();
    let (switches0, t0) = (task::switches_on(task::current_cpu()), nano_core::time::micros_since_entry());
    for _ in 0..n {
        task::yield_now();
    }
    let (switches, us) = (task::switches_on(task::current_cpu()) - switches0, nano_core::time::micros_since_entry() - t0);
    stop.store(true, Ordering::Relaxed);
    let _ = task::join(partner);
    nano_core::println!("selftest: {switches} task switches in {us} us: {} ns a switch", us * 1000 / switches.max(1));
    0
}

/// `selftest --cpus`: on every CPU that runs tasks at once, two tasks pinned there: a spinner
/// that never yields and a setter that it waits for, which only that CPU's timer preemption
/// lets run. Each writes its own TLS variable and SSE register before, and checks them after
/// the other ran on the same CPU, and checks that it ran on the CPU it was put on. Returns the
/// CPUs checked.
fn every_cpu() -> Result<Vec<usize>, String> {
    let cpus: Vec<usize> = (0..task::TASK_CPUS).filter(|&c| nano_core::jobs::runs_tasks(c) && !nano_core::jobs::stopped(c)).collect();
    // What a task leaves in its TLS variable and xmm7, and checks after the other ran.
    let keep = |tls: u64, xmm: u64| {
        TLS_COUNTER.set(tls);
        // SAFETY: SSE is enabled; only xmm7 is touched, which the soft-float kernel never uses.
        unsafe { core::arch::asm!("movq xmm7, {}", in(reg) xmm, out("xmm7") _) };
    };
    let kept = |tls: u64, xmm: u64| {
        let got: u64;
        // SAFETY: as above.
        unsafe { core::arch::asm!("movq {}, xmm7", out(reg) got) };
        TLS_COUNTER.get() == tls && got == xmm
    };
    let mut spinners = Vec::new();
    for &cpu in &cpus {
        let (flag, started) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (f2, s2) = (flag.clone(), started.clone());
        let id = task::spawn_on(cpu, "st-cpu-spin", move || {
            keep(cpu as u64 * 100, 0xA000 + cpu as u64);
            s2.store(true, Ordering::Relaxed);
            while !f2.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
            (kept(cpu as u64 * 100, 0xA000 + cpu as u64) && task::current_cpu() == cpu) as isize
        })
        .map_err(|e| format!("CPU {cpu}: {e}"))?;
        spinners.push((cpu, id, flag, started));
    }
    let mut setters = Vec::new();
    for (cpu, _, flag, started) in &spinners {
        while !started.load(Ordering::Relaxed) {
            task::yield_now();
        }
        let (cpu, f3) = (*cpu, flag.clone());
        let id = task::spawn_on(cpu, "st-cpu-set", move || {
            keep(7, 0xB000 + cpu as u64);
            f3.store(true, Ordering::Relaxed);
            (kept(7, 0xB000 + cpu as u64) && task::current_cpu() == cpu) as isize
        })
        .map_err(|e| format!("CPU {cpu}: {e}"))?;
        setters.push((cpu, id));
    }
    let mut bad = Vec::new();
    for (cpu, id) in spinners.iter().map(|(c, id, _, _)| (*c, *id)).chain(setters) {
        match task::join(id) {
            Ok(Exit::Returned(1)) => {}
            other => bad.push(format!("CPU {cpu}: task {id} {other:?}")),
        }
    }
    if bad.is_empty() { Ok(cpus) } else { Err(bad.join("; ")) }
}

/// Entry point: every check, or `--switches N`, or `--cpus`.
pub fn main(args: &[&str]) -> isize {
    match (args.get(1).copied(), args.get(2).and_then(|a| command::parse_u64(a))) {
        (Some("--switches"), Some(n)) if n > 0 => return time_switches(n),
        (Some("--cpus"), _) => {
            return match every_cpu() {
                Ok(cpus) => {
                    nano_core::println!(
                        "selftest --cpus: preemption, TLS and SSE state of pinned tasks ok on each of {} CPUs {cpus:?}",
                        cpus.len()
                    );
                    0
                }
                Err(e) => {
                    nano_core::println!("selftest --cpus: FAILED: {e}");
                    1
                }
            };
        }
        (Some(other), _) => {
            nano_core::println!("selftest: unknown argument {other} (usage: selftest [--switches N | --cpus])");
            return 2;
        }
        _ => {}
    }
    let frames_before = nano_core::frames::stats().used;
    let mut failed = 0;
    for (name, check) in CHECKS {
        match check() {
            Ok(()) => nano_core::println!("selftest {name} ... ok"),
            Err(e) => {
                failed += 1;
                nano_core::println!("selftest {name} ... FAILED: {e}");
            }
        }
    }
    let frames_after = nano_core::frames::stats().used;
    nano_core::println!("selftest: {} passed, {failed} failed (frames in use {frames_before} -> {frames_after})", CHECKS.len() - failed);
    failed as isize
}
