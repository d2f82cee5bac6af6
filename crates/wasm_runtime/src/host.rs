//! The host platform (feature `std`): code pages from `mmap`, traps from signals.
//!
//! SIGILL/SIGSEGV/SIGBUS/SIGFPE handlers ask [`crate::trap::handle_fault`] whether the fault
//! belongs to WASM code this thread runs; if so they resume at the landing by rewriting the
//! saved instruction pointer, otherwise they restore the default action and return, so the
//! fault repeats and the process dies as it would have.

use crate::{Error, Platform};
use std::sync::Once;

/// Code from `mmap`, traps from signal handlers.
pub struct HostPlatform;

/// The host platform instance.
pub static HOST: HostPlatform = HostPlatform;

extern "C" fn on_signal(sig: libc::c_int, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let uc = ctx as *mut libc::ucontext_t;
    // SAFETY: the kernel passes a valid ucontext to SA_SIGINFO handlers.
    let pc = unsafe { (*uc).uc_mcontext.gregs[libc::REG_RIP as usize] } as u64;
    match crate::trap::handle_fault(pc) {
        // SAFETY: as above; the landing runs on the faulting stack like a call would.
        Some(at) => unsafe { (*uc).uc_mcontext.gregs[libc::REG_RIP as usize] = at as i64 },
        // SAFETY: restoring the default action is async-signal-safe.
        None => unsafe {
            libc::signal(sig, libc::SIG_DFL);
        },
    }
}

static INSTALL: Once = Once::new();

impl Platform for HostPlatform {
    fn alloc_code(&self, len: usize) -> Result<*mut u8, Error> {
        // SAFETY: an anonymous private mapping; no existing memory is touched.
        let p = unsafe {
            libc::mmap(core::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        };
        if p == libc::MAP_FAILED {
            return Err(Error::Memory(format!("mmap of {len} bytes")));
        }
        Ok(p as *mut u8)
    }

    fn make_executable(&self, ptr: *mut u8, len: usize) -> Result<(), Error> {
        // SAFETY: `ptr..ptr+len` is a mapping from `alloc_code`.
        let r = unsafe { libc::mprotect(ptr as *mut _, len, libc::PROT_READ | libc::PROT_EXEC) };
        if r != 0 {
            return Err(Error::Memory("mprotect to r-x".into()));
        }
        Ok(())
    }

    fn free_code(&self, ptr: *mut u8, len: usize) {
        // SAFETY: a mapping from `alloc_code`, no longer used (its instance is gone).
        unsafe { libc::munmap(ptr as *mut _, len) };
    }

    fn stack_limit(&self, sp: u64) -> u64 {
        let mut attr = core::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
        let (mut addr, mut size) = (core::ptr::null_mut(), 0usize);
        // SAFETY: querying this thread's own attributes into local storage.
        let ok = unsafe {
            libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) == 0 && {
                let r = libc::pthread_attr_getstack(attr.as_ptr(), &mut addr, &mut size) == 0;
                libc::pthread_attr_destroy(attr.as_mut_ptr());
                r
            }
        };
        if ok && !addr.is_null() { addr as u64 + 128 * 1024 } else { sp.saturating_sub(1 << 20) }
    }

    fn reserve(&self, len: usize) -> Option<*mut u8> {
        // SAFETY: a fresh inaccessible mapping; nothing else is touched.
        let p = unsafe {
            libc::mmap(core::ptr::null_mut(), len, libc::PROT_NONE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE, -1, 0)
        };
        (p != libc::MAP_FAILED).then_some(p as *mut u8)
    }

    fn commit(&self, base: *mut u8, len: usize) -> bool {
        // SAFETY: `base` starts a reservation from `reserve` longer than `len`.
        len == 0 || unsafe { libc::mprotect(base as *mut _, len, libc::PROT_READ | libc::PROT_WRITE) == 0 }
    }

    fn release(&self, base: *mut u8, len: usize) {
        // SAFETY: a reservation from `reserve`, no longer used.
        unsafe { libc::munmap(base as *mut _, len) };
    }

    fn install_trap_handler(&self) -> Result<(), Error> {
        INSTALL.call_once(|| {
            for sig in [libc::SIGILL, libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE] {
                // SAFETY: installing a handler with a zeroed, then filled, sigaction.
                unsafe {
                    let mut sa: libc::sigaction = core::mem::zeroed();
                    sa.sa_sigaction = on_signal as *const () as usize;
                    sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
                    libc::sigemptyset(&mut sa.sa_mask);
                    libc::sigaction(sig, &sa, core::ptr::null_mut());
                }
            }
        });
        Ok(())
    }
}
