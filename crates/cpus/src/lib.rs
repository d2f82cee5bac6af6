//! `cpus`: the CPUs ACPI reported and what each one does (tasks run on the boot CPU; the
//! others are started and parked until the scheduler can use them).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

/// One line for `help`.
pub static DESCRIPTION: &str = "the machine's CPUs and their state; --ping N: IPI round trips to each parked CPU";

/// `cpus --ping N`: N pings to each parked CPU; the median round trip.
fn ping(n: u64) -> isize {
    let tsc_per_us = (nano_core::time::tsc_per_ms() / 1000).max(1);
    let mut status = command::status::SUCCESS;
    for c in smp::cpus().iter().filter(|c| c.state == smp::CpuState::Parked) {
        let mut rtt: alloc::vec::Vec<u64> = (0..n).filter_map(|_| smp::ping(c.index)).collect();
        rtt.sort_unstable();
        match rtt.get(rtt.len() / 2) {
            Some(m) => {
                nano_core::println!("cpu {}: {} of {n} pings answered, median round trip {} ns", c.index, rtt.len(), m * 1000 / tsc_per_us)
            }
            None => {
                nano_core::println!("cpu {}: 0 of {n} pings answered", c.index);
                status = command::status::FAILURE;
            }
        }
    }
    status
}

/// Entry point.
pub fn main(args: &[&str]) -> isize {
    match args.get(1).copied() {
        None => {}
        Some("--ping") => return ping(args.get(2).and_then(|n| command::parse_u64(n)).unwrap_or(100)),
        Some(other) => {
            nano_core::println!("cpus: unknown argument {other} (usage: cpus [--ping N])");
            return command::status::USAGE;
        }
    }
    let cpus = smp::cpus();
    nano_core::println!("  CPU  APIC  state");
    for c in &cpus {
        let state = match &c.state {
            smp::CpuState::Boot => "boot CPU: runs every task",
            smp::CpuState::Parked => "started, parked (runs no tasks yet)",
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
    let parked = cpus.iter().filter(|c| c.state == smp::CpuState::Parked).count();
    nano_core::println!("{} CPUs: 1 runs tasks, {parked} parked, {} failed", cpus.len(), cpus.len().saturating_sub(1 + parked));
    0
}
