//! `cpus`: the CPUs ACPI reported and what each one does (every CPU runs tasks; the APs also
//! run jobs in their idle time).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

/// One line for `help`.
pub static DESCRIPTION: &str = "the machine's CPUs and their state; --ping N: IPI round trips to each parked CPU; --speedup UNITS: a job on every CPU at once; --tasks UNITS: a task on every CPU at once; --balance UNITS: as many movable tasks, all spawned here, which idle CPUs take; --tlb [--no-shootdown]: check that a parked CPU drops a translation the boot CPU changed; --shootdowns N: the cost of a TLB shootdown round; --watchdog MS: re-arm the hang watchdog (0: off); --job-fault null|ud|wild|panic: a job that faults on every parked CPU (abandoned, the CPU goes on); --stop CPU: a fault outside any job stops that CPU";

/// A CPU-bound job: `units` million rounds of a multiply-rotate hash (no memory traffic, no
/// allocation: fit for a parked CPU).
// Never inlined: both phases of `--speedup` (and the parked CPUs' jobs) must run the same
// code. Inlined into one call site, the loop was compiled differently there and ran 2.5x
// slower under TCG (27 ms alone, 70 ms "together" on one CPU) after an unrelated edit of this
// crate.
#[inline(never)]
fn work(units: u64) -> u64 {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ units;
    for i in 0..units * 1_000_000 {
        x = (x.rotate_left(5) ^ i).wrapping_mul(0x0000_0100_0000_01B3);
    }
    core::hint::black_box(x)
}

fn median(mut v: alloc::vec::Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// `cpus --speedup UNITS`: throughput of [`work`] on the boot CPU alone against the boot CPU and
/// every parked CPU at once (each doing UNITS), 3 interleaved rounds, medians. Every CPU's
/// result must equal the boot CPU's.
fn speedup(units: u64) -> isize {
    let parked = smp::parked();
    let n = parked.len() as u64 + 1;
    let now = nano_core::time::micros_since_entry;
    let (mut alone, mut together) = (alloc::vec::Vec::new(), alloc::vec::Vec::new());
    let mut agree = true;
    for _ in 0..3 {
        let t0 = now();
        let want = work(units);
        alone.push(now() - t0);
        let t0 = now();
        let jobs: alloc::vec::Vec<_> = parked.iter().filter_map(|&i| smp::post(i, work, units).ok()).collect();
        let posted = jobs.len();
        let mine = work(units);
        let got: alloc::vec::Vec<Result<u64, alloc::string::String>> = jobs.into_iter().map(smp::Pending::wait).collect();
        together.push(now() - t0);
        agree &= mine == want && posted == parked.len() && got.iter().all(|r| *r == Ok(want));
    }
    let (a, t) = (median(alone), median(together).max(1));
    nano_core::println!(
        "cpus: {units} units alone {a} us, on {n} CPUs at once {t} us: throughput {:.2}x of one CPU (ideal {n}x); results {}",
        (n * a) as f64 / t as f64,
        if agree { "agree" } else { "DIFFER" }
    );
    if agree { command::status::SUCCESS } else { command::status::FAILURE }
}

/// `cpus --tasks UNITS`: throughput of [`work`] as tasks: one task on CPU 0 alone against one
/// task on every CPU that runs tasks at once (`task::spawn_on`), 3 interleaved rounds, medians.
/// Every task's result must equal the lone task's.
fn task_speedup(units: u64) -> isize {
    let cpus: alloc::vec::Vec<usize> =
        (0..task::TASK_CPUS).filter(|&c| nano_core::jobs::runs_tasks(c) && !nano_core::jobs::stopped(c) && c < smp::cpus().len()).collect();
    let n = cpus.len() as u64;
    let now = nano_core::time::micros_since_entry;
    let run = |on: usize| task::spawn_on(on, "work", move || work(units) as isize);
    let (mut alone, mut together) = (alloc::vec::Vec::new(), alloc::vec::Vec::new());
    let mut agree = true;
    for _ in 0..3 {
        let t0 = now();
        let want = run(0).map_err(|e| alloc::format!("{e}")).and_then(|id| task::join(id).map_err(|e| alloc::format!("{e}")));
        alone.push(now() - t0);
        let t0 = now();
        let ids: alloc::vec::Vec<_> = cpus.iter().map(|&c| run(c)).collect();
        let got: alloc::vec::Vec<_> = ids.into_iter().map(|r| r.ok().and_then(|id| task::join(id).ok())).collect();
        together.push(now() - t0);
        agree &= matches!(want, Ok(task::Exit::Returned(_))) && got.iter().all(|g| g.as_ref() == want.as_ref().ok());
    }
    let (a, t) = (median(alone), median(together).max(1));
    nano_core::println!(
        "cpus: tasks of {units} units: one alone {a} us, one on each of {n} CPUs ({cpus:?}) at once {t} us: throughput {:.2}x of one CPU (ideal {n}x); results {}",
        (n * a) as f64 / t as f64,
        if agree { "agree" } else { "DIFFER" }
    );
    if agree { command::status::SUCCESS } else { command::status::FAILURE }
}

/// `cpus --balance UNITS`: one movable task (`task::spawn_movable`) per CPU that runs tasks,
/// all spawned on this CPU: the idle CPUs take them (work stealing). Against one such task
/// alone, 3 interleaved rounds, medians; says on which CPUs the tasks finished and how many
/// moves the stealing made. Every result must equal the lone task's.
fn balance(units: u64) -> isize {
    use core::sync::atomic::{AtomicUsize, Ordering};
    let n = (0..task::TASK_CPUS).filter(|&c| nano_core::jobs::runs_tasks(c) && !nano_core::jobs::stopped(c)).count();
    let now = nano_core::time::micros_since_entry;
    let (mut alone, mut together) = (alloc::vec::Vec::new(), alloc::vec::Vec::new());
    let mut agree = true;
    let mut finished_on = alloc::collections::BTreeSet::new();
    let moves_before = task::migrations();
    for _ in 0..3 {
        let run = |cpu_seen: alloc::sync::Arc<AtomicUsize>| {
            task::spawn_movable("work", move || {
                let r = work(units) as isize;
                cpu_seen.store(task::current_cpu(), Ordering::Relaxed);
                r
            })
        };
        let t0 = now();
        let want = run(alloc::sync::Arc::new(AtomicUsize::new(0))).ok().and_then(|id| task::join(id).ok());
        alone.push(now() - t0);
        let seen: alloc::vec::Vec<_> = (0..n).map(|_| alloc::sync::Arc::new(AtomicUsize::new(usize::MAX))).collect();
        let t0 = now();
        let ids: alloc::vec::Vec<_> = seen.iter().map(|s| run(s.clone())).collect();
        let got: alloc::vec::Vec<_> = ids.into_iter().map(|r| r.ok().and_then(|id| task::join(id).ok())).collect();
        together.push(now() - t0);
        agree &= matches!(want, Some(task::Exit::Returned(_))) && got.iter().all(|g| *g == want);
        finished_on.extend(seen.iter().map(|s| s.load(Ordering::Relaxed)));
    }
    let (a, t) = (median(alone), median(together).max(1));
    nano_core::println!(
        "cpus: {n} movable tasks of {units} units spawned on CPU {}: finished on CPUs {finished_on:?}, {} moves by idle CPUs; one alone {a} us, all at once {t} us: throughput {:.2}x of one CPU (ideal {n}x); results {}",
        task::current_cpu(),
        task::migrations() - moves_before,
        (n as u64 * a) as f64 / t as f64,
        if agree { "agree" } else { "DIFFER" }
    );
    if agree { command::status::SUCCESS } else { command::status::FAILURE }
}

/// `cpus --job-fault KIND`: a faulting job on every parked CPU; each must be abandoned with the
/// reason named, and each CPU must then run a plain job and give the boot CPU's result.
fn job_faults(kind: Option<&str>) -> isize {
    let kind = match kind {
        Some("null") => 0,
        Some("ud") => 1,
        Some("wild") => 2,
        Some("panic") => 3,
        _ => {
            nano_core::println!("usage: cpus --job-fault null|ud|wild|panic");
            return command::status::USAGE;
        }
    };
    let mut status = command::status::SUCCESS;
    for index in smp::parked() {
        match smp::run_on(index, smp::faulting_job, kind) {
            Ok(r) => {
                nano_core::println!("cpus: CPU {index}: the faulting job returned {r}");
                status = command::status::FAILURE;
            }
            Err(e) => nano_core::println!("cpus: {e}"),
        }
        let want = work(2);
        match smp::run_on(index, work, 2) {
            Ok(r) if r == want => nano_core::println!("cpus: CPU {index} runs jobs again: result agrees"),
            other => {
                nano_core::println!("cpus: CPU {index} after the fault: {other:?}, expected Ok({want})");
                status = command::status::FAILURE;
            }
        }
    }
    status
}

/// `cpus --stop CPU`: a fault outside any job on that parked CPU, which stops it.
fn stop(index: Option<u64>) -> isize {
    let Some(index) = index else {
        nano_core::println!("usage: cpus --stop CPU");
        return command::status::USAGE;
    };
    match smp::stop_by_fault(index as usize) {
        Ok(()) => {
            nano_core::println!("cpus: CPU {index} stopped; {} CPUs stay parked", smp::parked().len());
            command::status::SUCCESS
        }
        Err(e) => {
            nano_core::println!("cpus: {e}");
            command::status::FAILURE
        }
    }
}

/// `cpus --ping N`: N pings to each parked CPU; the median round trip.
fn ping(n: u64) -> isize {
    let tsc_per_us = (nano_core::time::tsc_per_ms() / 1000).max(1);
    let mut status = command::status::SUCCESS;
    for index in smp::parked() {
        let mut rtt: alloc::vec::Vec<u64> = (0..n).filter_map(|_| smp::ping(index)).collect();
        rtt.sort_unstable();
        match rtt.get(rtt.len() / 2) {
            Some(m) => {
                nano_core::println!("cpu {index}: {} of {n} pings answered, median round trip {} ns", rtt.len(), m * 1000 / tsc_per_us)
            }
            None => {
                nano_core::println!("cpu {index}: 0 of {n} pings answered");
                status = command::status::FAILURE;
            }
        }
    }
    status
}

/// `cpus --tlb [--no-shootdown]`: on each parked CPU, [`smp::stale_translation_check`]; with
/// `--no-shootdown` the remap sends no shootdown, and the CPU is expected to read the old frame
/// (which shows that the check can fail).
fn tlb(shootdown: bool) -> isize {
    let mut status = command::status::SUCCESS;
    for index in smp::parked() {
        match smp::stale_translation_check(index, shootdown) {
            Ok(r) => {
                let what = if r.read == r.second {
                    "the new frame: its old translation was dropped"
                } else if r.read == r.first {
                    "the OLD frame: a stale translation"
                } else {
                    "neither frame"
                };
                nano_core::println!(
                    "cpu {index}: read {:#x} before and {:#x} after the remap{}: {what}",
                    r.first,
                    r.read,
                    if shootdown { "" } else { " (no shootdown sent)" }
                );
                if r.read != r.second {
                    status = command::status::FAILURE;
                }
            }
            Err(e) => {
                nano_core::println!("cpu {index}: {e}");
                status = command::status::FAILURE;
            }
        }
    }
    status
}

/// `cpus --shootdowns N`: the median cost of a permission change with a TLB shootdown round to
/// every (idle) parked CPU, against the same change without the round, interleaved (see
/// [`smp::shootdown_rounds`]).
fn shootdowns(n: u64) -> isize {
    let parked = smp::parked().len();
    if parked == 0 {
        nano_core::println!("cpus: no parked CPU: a change sends no shootdown");
        return command::status::SUCCESS;
    }
    let tsc_per_us = (nano_core::time::tsc_per_ms() / 1000).max(1);
    match smp::shootdown_rounds(n.max(1)) {
        Ok(c) => {
            let ns = |v: alloc::vec::Vec<u64>| median(v) * 1000 / tsc_per_us;
            nano_core::println!(
                "cpus: {} permission changes with a shootdown round to {parked} parked CPUs ({} rounds, {} timeouts): median {} ns a change; without the round {} ns",
                c.with_round.len(),
                c.rounds,
                c.timeouts,
                ns(c.with_round),
                ns(c.without)
            );
            command::status::SUCCESS
        }
        Err(e) => {
            nano_core::println!("cpus: {e}");
            command::status::FAILURE
        }
    }
}

/// One line on the TLB shootdowns since boot.
fn print_tlb() {
    let t = nano_core::tlb::stats();
    let tsc_per_us = (nano_core::time::tsc_per_ms() / 1000).max(1);
    nano_core::println!(
        "tlb: {} mappings removed or reduced; {} shootdown rounds, {} IPIs, {} flushes, {} timeouts, {} us waited in all ({} us a round); {} flushes left to CPUs running a job, {} made at a job's end or start; {} rounds sent no IPI",
        t.changes,
        t.rounds,
        t.ipis,
        t.acks,
        t.timeouts,
        t.wait_cycles / tsc_per_us,
        t.wait_cycles / tsc_per_us / t.rounds.max(1),
        t.deferred,
        t.lazy_flushes,
        t.not_sent
    );
}

/// Entry point.
pub fn main(args: &[&str]) -> isize {
    match args.get(1).copied() {
        None => {}
        Some("--ping") => return ping(args.get(2).and_then(|n| command::parse_u64(n)).unwrap_or(100)),
        Some("--speedup") => return speedup(args.get(2).and_then(|n| command::parse_u64(n)).unwrap_or(4)),
        Some("--tasks") => return task_speedup(args.get(2).and_then(|n| command::parse_u64(n)).unwrap_or(4)),
        Some("--balance") => return balance(args.get(2).and_then(|n| command::parse_u64(n)).unwrap_or(4)),
        Some("--watchdog") => return set_watchdog(args.get(2).copied()),
        Some("--shootdowns") => return shootdowns(args.get(2).and_then(|n| command::parse_u64(n)).unwrap_or(100)),
        Some("--job-fault") => return job_faults(args.get(2).copied()),
        Some("--stop") => return stop(args.get(2).and_then(|n| command::parse_u64(n))),
        Some("--tlb") => match args.get(2).copied() {
            None => return tlb(true),
            Some("--no-shootdown") => return tlb(false),
            Some(other) => {
                nano_core::println!("cpus: unknown argument {other} (usage: cpus --tlb [--no-shootdown])");
                return command::status::USAGE;
            }
        },
        Some(other) => {
            nano_core::println!(
                "cpus: unknown argument {other} (usage: cpus [--ping N | --speedup UNITS | --tasks UNITS | --balance UNITS | --tlb [--no-shootdown] | --shootdowns N | --watchdog MS | --job-fault null|ud|wild|panic | --stop CPU])"
            );
            return command::status::USAGE;
        }
    }
    let cpus = smp::cpus();
    nano_core::println!("  CPU  APIC  state");
    for c in &cpus {
        let state = match &c.state {
            smp::CpuState::Boot => "boot CPU: runs tasks (the policy's), jobs never",
            smp::CpuState::Parked if nano_core::jobs::stopped(c.index) => "stopped after an exception outside any job",
            smp::CpuState::Parked if nano_core::jobs::runs_tasks(c.index) => "started, runs tasks (`on CPU CMD`) and jobs",
            smp::CpuState::Parked => "started, parked (runs jobs, no tasks)",
            smp::CpuState::Failed(why) => {
                nano_core::println!("  {:>3}  {:>4}  failed to start: {why}", c.index, c.apic_id);
                continue;
            }
        };
        match c.start_us {
            Some(us) => nano_core::println!("  {:>3}  {:>4}  {state} (came up in {us} us)", c.index, c.apic_id),
            None => nano_core::println!("  {:>3}  {:>4}  {state}", c.index, c.apic_id),
        }
    }
    let parked = smp::parked().len();
    let stopped = cpus.iter().filter(|c| nano_core::jobs::stopped(c.index)).count();
    let tasking = cpus.iter().filter(|c| nano_core::jobs::runs_tasks(c.index) && !nano_core::jobs::stopped(c.index)).count();
    nano_core::println!(
        "{} CPUs: {tasking} run tasks, {parked} APs up, {stopped} stopped, {} failed",
        cpus.len(),
        cpus.len().saturating_sub(1 + parked + stopped)
    );
    // How often a CPU found every task of it waiting (`task::wait_until`) and halted: at an
    // idle prompt about once per timer tick; 0 would mean its tasks poll it busy.
    let halts: alloc::vec::Vec<alloc::string::String> = cpus
        .iter()
        .filter(|c| c.index == 0 || (nano_core::jobs::runs_tasks(c.index) && !nano_core::jobs::stopped(c.index)))
        .map(|c| alloc::format!("CPU {} {}", c.index, task::halts_on(c.index)))
        .collect();
    match smp::boot_tick() {
        Ok(from) => nano_core::println!("boot CPU tick: {from} at 100 Hz, as the APs' (the PIT only drives the watchdog)"),
        Err(why) => nano_core::println!("boot CPU tick: the PIT through the 8259 ({why})"),
    }
    nano_core::println!("halts with every task waiting (a CPU with no task halts in its idle task, not counted): {}", halts.join(", "));
    let (stops, late) = nano_core::stw::counts();
    nano_core::println!("stop the world: {stops} times (swap commits, reclaim scans), {late} abandoned because a CPU was late");
    print_tlb();
    print_watchdog();
    print_serial_input();
    0
}

/// One line on the watchdog.
fn print_watchdog() {
    let w = watchdog::stats();
    match w.route {
        Some(r) if w.limit_ms > 0 => nano_core::println!(
            "watchdog: the PIT's IRQ {} as an NMI to APIC {} (GSI {}); a hang is {} ms without a timer interrupt; {} NMIs, longest stretch without a tick {} ms, {} hangs; {} stall checks (no task switch for {} ms), {} starvation checks (no scrub pass for {} periods), {} repaired code",
            r.irq,
            r.apic_id,
            r.gsi,
            w.limit_ms,
            w.nmis,
            w.longest_ms,
            w.hangs,
            w.stall_checks,
            w.limit_ms,
            w.starvation_checks,
            watchdog::STARVED_PERIODS,
            w.stalls_repaired
        ),
        _ => nano_core::println!("watchdog: off ({} hangs reported while it was on)", w.hangs),
    }
    nano_core::println!(
        "watchdog: {} NMIs sent to parked CPUs whose timer stopped for the limit (each ends what hung there)",
        watchdog::parked_cpu_hangs()
    );
}

/// `cpus --watchdog MS`: re-arms the watchdog with a limit of MS milliseconds, or switches it
/// off with 0.
fn set_watchdog(ms: Option<&str>) -> isize {
    let Some(ms) = ms.and_then(command::parse_u64) else {
        nano_core::println!("usage: cpus --watchdog MS (0 switches it off)");
        return command::status::USAGE;
    };
    if ms == 0 {
        watchdog::disarm();
    } else if let Err(e) = watchdog::arm(ms) {
        nano_core::println!("cpus: watchdog not armed: {e}");
        return 1;
    }
    print_tlb();
    print_watchdog();
    0
}

/// One line per serial port: how it receives.
fn print_serial_input() {
    let routes = smp::serial_input();
    if routes.is_empty() {
        nano_core::println!("serial input: polled");
    }
    for (name, route) in routes {
        let uart = if name == "COM1" { nano_core::serial::COM1 } else { nano_core::serial::COM2 };
        match (route, uart.receive_stats()) {
            (Ok(r), Some(s)) => nano_core::println!(
                "serial input: {name} by interrupt (ISA IRQ {} as GSI {} to APIC {}): {} interrupts, {} bytes, {} pauses for a full ring, {} bytes waiting",
                r.irq,
                r.gsi,
                r.apic_id,
                s.interrupts,
                s.bytes,
                s.pauses,
                s.waiting
            ),
            (Ok(_), None) => nano_core::println!("serial input: {name} routed, but its receive ring is off"),
            (Err(e), _) => nano_core::println!("serial input: {name} polled ({e})"),
        }
    }
}
