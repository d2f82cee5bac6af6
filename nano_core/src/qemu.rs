//! Leaving QEMU with a status the host can check (`isa-debug-exit` at port 0xf4).
//!
//! Writing v exits QEMU with status 2v+1, so success is 33 and failure 35. A triple fault under
//! `-no-reboot` exits with 0, which the runner therefore counts as failure.

use x86_64::instructions::port::Port;

/// Exit status the kernel chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    /// QEMU exits with 33.
    Success = 0x10,
    /// QEMU exits with 35.
    Failure = 0x11,
}

/// Ends the machine. Halts forever if no exit device is present (real hardware).
pub fn exit(code: ExitCode) -> ! {
    // SAFETY: port 0xf4 is the isa-debug-exit device when present and unassigned otherwise;
    // writing it has no memory effects.
    unsafe { Port::new(0xf4).write(code as u32) };
    halt_forever()
}

/// Parks the CPU with interrupts off.
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
