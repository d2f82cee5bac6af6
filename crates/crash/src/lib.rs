//! `crash panic|null|ud|divide|stack`: faults deliberately, inside the command's own task.
//! Each ends only that task, with a report and a symbolized backtrace; the shell goes on. All
//! but `stack` unwind the task, so `main`'s [`Cleanup`] reports its drop.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

/// One line for `help`.
pub static DESCRIPTION: &str = "fault on purpose: crash panic|null|ud|divide|stack";

#[inline(never)]
fn deliberate_panic(what: &str) -> ! {
    panic!("deliberate panic: {what}")
}

#[inline(never)]
fn null_write() {
    // SAFETY: deliberately invalid: the page fault must end only this task.
    unsafe { core::ptr::write_volatile(0x10 as *mut u64, 1) }
}

#[inline(never)]
fn invalid_opcode() {
    // SAFETY: deliberately invalid instruction.
    unsafe { core::arch::asm!("ud2") }
}

#[inline(never)]
fn divide_by_zero() {
    // SAFETY: deliberately divides by a zero register.
    unsafe { core::arch::asm!("xor ecx, ecx", "div ecx", out("eax") _, out("edx") _, out("ecx") _) }
}

#[inline(never)]
#[allow(unconditional_recursion)]
fn overflow_stack(n: u64) -> u64 {
    let buf = [n; 32];
    core::hint::black_box(&buf);
    overflow_stack(n + 1) + core::hint::black_box(buf[1])
}

/// Calls `f` through a pointer the compiler cannot see through. The fault functions contain no
/// call, so LLVM proves they cannot unwind and a direct call to one gets no landing pad: a
/// fault there would skip the caller's cleanups. Called opaquely, the call may unwind, as a
/// call into real code usually may.
#[inline(never)]
fn opaque(f: fn()) {
    core::hint::black_box(f)()
}

/// Reports its drop: shows that unwinding ran the caller's destructors after a fault.
struct Cleanup<'a>(&'a str);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        nano_core::println!("crash: cleanup ran ({})", self.0);
    }
}

/// Entry point.
pub fn main(args: &[&str]) -> isize {
    let _cleanup = Cleanup(args.get(1).copied().unwrap_or(""));
    match args.get(1).copied() {
        Some("panic") => deliberate_panic("requested by crash"),
        Some("null") => opaque(null_write),
        Some("ud") => opaque(invalid_opcode),
        Some("divide") => opaque(divide_by_zero),
        Some("stack") => {
            core::hint::black_box(overflow_stack(0));
        }
        _ => {
            nano_core::println!("usage: crash panic|null|ud|divide|stack");
            return 2;
        }
    }
    nano_core::println!("crash: still alive?");
    1
}
