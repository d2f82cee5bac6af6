//! Panics, and the unwinding entry points the compiler requires.
//!
//! Everything is built with panic=unwind, so code calls `_Unwind_Resume` from landing pads and
//! objects reference `rust_eh_personality`. nano_core defines both as thin hooks: the loaded
//! unwinder crate fills them through [`set_unwind_hooks`]. Until it does, a panic prints its
//! message and location and exits QEMU with the failure code.

use crate::qemu::{ExitCode, exit};
use crate::serial::emergency_write;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicPtr, Ordering};

/// What the unwinder crate installs.
pub struct UnwindHooks {
    /// Called by the panic handler; may start unwinding and not return.
    pub panic: fn(&PanicInfo<'_>),
    /// The language's personality routine, with its C ABI arguments passed through.
    pub personality: unsafe extern "C" fn(i32, u32, u64, *mut u8, *mut u8) -> u32,
    /// Continues unwinding after a landing pad.
    pub resume: unsafe extern "C" fn(*mut u8) -> !,
}

static HOOKS: AtomicPtr<UnwindHooks> = AtomicPtr::new(core::ptr::null_mut());
static PANIC_HOOK: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Installs a function that sees every panic first (the task layer ends the panicking task
/// there; if it returns, nano_core's own handling follows).
pub fn set_panic_hook(hook: fn(&PanicInfo<'_>)) {
    PANIC_HOOK.store(hook as *mut (), Ordering::Release);
}

/// Installs the unwinder's hooks (the loaded unwinder crate calls this once).
pub fn set_unwind_hooks(hooks: &'static UnwindHooks) {
    HOOKS.store(hooks as *const UnwindHooks as *mut UnwindHooks, Ordering::Release);
}

fn hooks() -> Option<&'static UnwindHooks> {
    // SAFETY: the pointer is either null or came from a `&'static UnwindHooks`.
    unsafe { HOOKS.load(Ordering::Acquire).as_ref() }
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    let ph = PANIC_HOOK.load(Ordering::Acquire);
    if !ph.is_null() {
        // SAFETY: only `set_panic_hook` stores here, always a `fn(&PanicInfo)`.
        let ph = unsafe { core::mem::transmute::<*mut (), fn(&PanicInfo<'_>)>(ph) };
        ph(info);
    }
    if let Some(h) = hooks() {
        (h.panic)(info);
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
    match hooks() {
        // SAFETY: forwarded unchanged under the caller's contract.
        Some(h) => unsafe { (h.personality)(version, actions, class, exception, context) },
        None => 8, // _URC_FATAL_PHASE1_ERROR: no unwinder, nothing to catch
    }
}

/// Continues unwinding after a cleanup landing pad.
///
/// # Safety
/// Called only from compiler-generated landing pads, with the exception being unwound.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _Unwind_Resume(exception: *mut u8) -> ! {
    match hooks() {
        // SAFETY: forwarded unchanged under the caller's contract.
        Some(h) => unsafe { (h.resume)(exception) },
        None => {
            emergency_write(format_args!("\n!!! _Unwind_Resume called with no unwinder loaded\n"));
            exit(ExitCode::Failure)
        }
    }
}
