//! Panics, and the unwinding entry points the compiler requires.
//!
//! Everything is built with panic=unwind, so code calls `_Unwind_Resume` from landing pads and
//! objects reference `rust_eh_personality`. nano_core defines both as thin hooks: the loaded
//! unwinder crate fills them through [`set_unwind_hooks`] (typed [`Hook`]s, so that a swap of
//! the unwinder moves them to the new version). Until it does, a panic prints its
//! message and location and exits QEMU with the failure code.

use crate::hooks::Hook;
use crate::qemu::{ExitCode, exit};
use crate::serial::emergency_write;
use core::panic::PanicInfo;

/// The personality routine's signature (the Itanium C ABI's arguments, passed through).
pub type PersonalityFn = unsafe extern "C" fn(i32, u32, u64, *mut u8, *mut u8) -> u32;
/// `_Unwind_Resume`'s signature.
pub type ResumeFn = unsafe extern "C" fn(*mut u8) -> !;

/// Sees every panic first (the task layer ends the panicking task there; if it returns,
/// nano_core's own handling follows).
pub static PANIC_HOOK: Hook<fn(&PanicInfo<'_>)> = Hook::new("nano_core::panic");
/// The unwinder's personality routine.
pub static PERSONALITY_HOOK: Hook<PersonalityFn> = Hook::new("nano_core::personality");
/// The unwinder's `_Unwind_Resume`.
pub static RESUME_HOOK: Hook<ResumeFn> = Hook::new("nano_core::unwind_resume");

/// Installs a function that sees every panic first.
pub fn set_panic_hook(hook: fn(&PanicInfo<'_>)) {
    PANIC_HOOK.set(hook);
}

/// Installs the unwinder's entry points (the loaded unwinder crate calls this).
pub fn set_unwind_hooks(personality: PersonalityFn, resume: ResumeFn) {
    PERSONALITY_HOOK.set(personality);
    RESUME_HOOK.set(resume);
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    // On a parked CPU, the job is abandoned: the hooks below are the boot CPU's tasks'.
    crate::jobs::panic_gate(info);
    if let Some(ph) = PANIC_HOOK.get() {
        ph(info);
    }
    emergency_write(format_args!("\n!!! PANIC in nano_core"));
    if let Some(loc) = info.location() {
        emergency_write(format_args!(" at {}:{}:{}", loc.file(), loc.line(), loc.column()));
    }
    emergency_write(format_args!(": {}\n    system halted (exit code failure)\n", info.message()));
    exit(ExitCode::Failure)
}

/// The personality routine referenced from every object's `.eh_frame`.
///
/// # Safety
/// Called only by an unwinder, with the Itanium ABI's arguments.
#[lang = "eh_personality"]
pub unsafe extern "C" fn rust_eh_personality(version: i32, actions: u32, class: u64, exception: *mut u8, context: *mut u8) -> u32 {
    match PERSONALITY_HOOK.get() {
        // SAFETY: forwarded unchanged under the caller's contract.
        Some(p) => unsafe { p(version, actions, class, exception, context) },
        None => 8, // _URC_FATAL_PHASE1_ERROR: no unwinder, nothing to catch
    }
}

/// Continues unwinding after a cleanup landing pad.
///
/// # Safety
/// Called only from compiler-generated landing pads, with the exception being unwound.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _Unwind_Resume(exception: *mut u8) -> ! {
    match RESUME_HOOK.get() {
        // SAFETY: forwarded unchanged under the caller's contract.
        Some(r) => unsafe { r(exception) },
        None => {
            emergency_write(format_args!("\n!!! _Unwind_Resume called with no unwinder loaded\n"));
            exit(ExitCode::Failure)
        }
    }
}
