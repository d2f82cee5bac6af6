//! captain: the first loaded crate; brings the rest of the kernel up in order.
//!
//! nano_core loads this crate and calls [`init`], found by symbol lookup. captain never does a
//! subsystem's work itself: it loads each subsystem crate and calls its entry point, so every
//! piece stays replaceable.
#![no_std]
#![forbid(unsafe_code)]

/// Entry point, called once by nano_core on the boot stack.
pub fn init() -> ! {
    let b = nano_core::kernel::boot_state();
    let (crates, sections, symbols, edges, _) = nano_core::kernel::with_loader(|l| l.totals());
    log::info!(
        "captain: up {} us after entry; {} crates, {} sections, {} symbols, {} dependency edges",
        nano_core::time::micros_since_entry(),
        crates,
        sections,
        symbols,
        edges
    );
    let _ = b;
    nano_core::qemu::exit(nano_core::qemu::ExitCode::Success)
}
