//! `cpus`: the CPUs ACPI reported and what each one does (tasks run on the boot CPU; the
//! others are started and parked until the scheduler can use them).
#![no_std]
#![forbid(unsafe_code)]

/// One line for `help`.
pub static DESCRIPTION: &str = "the machine's CPUs and their state";

/// Entry point.
pub fn main(_args: &[&str]) -> isize {
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
