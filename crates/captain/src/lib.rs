//! captain: the first loaded crate; brings the rest of the kernel up in order.
//!
//! nano_core loads this crate and calls [`init`], found by symbol lookup. Loading captain pulls
//! in, on demand, the subsystem crates it calls (exceptions, interrupts, task, scheduler) from
//! the kernel namespace's directory; captain then starts them in order and launches the shell
//! from the applications namespace, again by symbol lookup, as a restartable task. captain never does a subsystem's
//! work itself, so every piece stays replaceable.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;

fn fatal(what: &str, e: &dyn core::fmt::Display) -> ! {
    log::error!("captain: {what}: {e}");
    nano_core::qemu::exit(nano_core::qemu::ExitCode::Failure)
}

/// Loads the shell into the applications namespace and returns its entry point.
fn load_shell() -> Result<fn(u64) -> isize, String> {
    nano_core::kernel::with_loader_mut(|l| {
        let apps = l.namespace_by_name("applications").map_err(|e| format!("{e}"))?;
        let shell = l.load_crate(apps, "shell").map_err(|e| format!("{e}"))?;
        let run = l.export_of(shell, "shell::run").ok_or("the shell crate exports no shell::run")?;
        // The shell's entry point has the signature `fn(u64) -> isize` (its contract with
        // captain: a restartable task's entry).
        Ok(nano_core::kernel::restartable_entry(run))
    })
}

/// Entry point, called once by nano_core on the boot stack; returns once the shell runs (the
/// boot context then becomes nano_core's idle loop, so no frame of captain stays on a stack).
pub fn init() {
    exceptions::init();
    interrupts::init();
    scheduler::init();
    if let Err(e) = task::init() {
        fatal("tasks", &e);
    }
    unwind::init();
    push::start();
    // Before the shell, so that its first command sees a settled system (memory checks in
    // particular).
    smp::init();
    smp::serial_input_by_interrupt();
    // After smp, which knows the I/O APIC: the PIT's line as an NMI, to notice hangs with
    // interrupts off.
    watchdog::init();
    let shell = match load_shell() {
        Ok(f) => f,
        Err(e) => fatal("shell", &e),
    };
    let (totals, relocs) = nano_core::kernel::with_loader_ref(|l| (l.totals(), l.crates().map(|k| k.relocations).sum::<usize>()));
    // Restartable: if the shell dies by a fault or a panic, recovery checks the crates it ran,
    // reloads a corrupted one and starts the shell again.
    if let Err(e) = task::spawn_restartable("shell", task::Restartable { entry: shell, arg: 0, restarts: 0 }) {
        fatal("spawning the shell", &e);
    }
    recovery::start();
    log::info!(
        "boot to shell: {} us from nano_core entry; {} crates loaded, {} sections, {} symbols, {} relocations applied",
        nano_core::time::micros_since_entry(),
        totals.crates,
        totals.sections,
        totals.symbols,
        relocs
    );
}
