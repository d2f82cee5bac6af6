//! The kernel side of `wasm_runtime::Platform`: code pages from the loader's memory provider
//! (mapped read-write, then read+execute: W^X), the task's own stack for the stack limit, the
//! exceptions crate's per-task handlers for traps, and linear memories in reservations.
//!
//! Every linear memory is a reservation of address space (8 GiB and a page, so code compiled
//! without bounds checks faults on any out-of-bounds access) whose pages are mapped as the
//! memory grows and all unmapped when it goes. Growth is accounted against two limits: one
//! memory's maximum ([`instance_limit`]) and the total of all WASM memories and tables
//! ([`budget`]); a growth beyond either fails (`memory.grow` returns -1) having mapped
//! nothing, and running out of frames midway undoes what was mapped.

use alloc::collections::BTreeMap;
use alloc::format;
use core::sync::atomic::{AtomicU64, Ordering};
use exceptions::{Action, Category, FaultInfo, HandlerError};
use mod_mgmt::Perms;
use nano_core::kmem::OwnedRegion;
use wasm_runtime::{Error, Platform};

/// Bytes of stack kept free below the limit: room for the trap landing and host functions.
const STACK_RESERVE: u64 = 24 * 1024;

/// The kernel platform.
pub struct KernelPlatform {
    /// Code regions handed out, by address (removing one frees it).
    regions: spin::Mutex<BTreeMap<u64, OwnedRegion>>,
    /// Linear-memory reservations by base address: bytes committed in each.
    reservations: spin::Mutex<BTreeMap<u64, u64>>,
}

/// The one instance.
pub static PLATFORM: KernelPlatform =
    KernelPlatform { regions: spin::Mutex::new(BTreeMap::new()), reservations: spin::Mutex::new(BTreeMap::new()) };

/// Bytes of WASM memories and tables in use now.
static IN_USE: AtomicU64 = AtomicU64::new(0);
/// Largest `IN_USE` seen.
static PEAK: AtomicU64 = AtomicU64::new(0);
/// Growths refused by a limit.
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// The total for all WASM memories and tables: the `wasm_mem=MiB` kernel option, else a
/// quarter of physical memory.
pub fn budget() -> u64 {
    option_mib("wasm_mem").unwrap_or_else(|| nano_core::frames::stats().total * 4096 / 4)
}

/// One linear memory's maximum: the `wasm_instance_mem=MiB` option, else 256 MiB (never more
/// than the budget).
pub fn instance_limit() -> u64 {
    option_mib("wasm_instance_mem").unwrap_or(256 << 20).min(budget())
}

fn option_mib(name: &str) -> Option<u64> {
    boot_info::cmdline::get(&nano_core::kernel::boot_state().cmdline, name).and_then(command::parse_u64).map(|m| m << 20)
}

/// (in use, peak, budget, refused growths), for `wasm list`.
pub fn accounting() -> (u64, u64, u64, u64) {
    (IN_USE.load(Ordering::Relaxed), PEAK.load(Ordering::Relaxed), budget(), REFUSED.load(Ordering::Relaxed))
}

/// Takes `bytes` out of the budget, or refuses (taking nothing).
fn take(bytes: u64) -> bool {
    let limit = budget();
    let ok = IN_USE.fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| u.checked_add(bytes).filter(|n| *n <= limit)).is_ok();
    if ok {
        PEAK.fetch_max(IN_USE.load(Ordering::Relaxed), Ordering::Relaxed);
    } else {
        REFUSED.fetch_add(1, Ordering::Relaxed);
    }
    ok
}

fn give(bytes: u64) {
    IN_USE.fetch_sub(bytes, Ordering::AcqRel);
}

fn on_fault(info: &FaultInfo, _c: Category) -> Action {
    match wasm_runtime::trap::handle_fault(info.rip) {
        Some(at) => Action::Resume(at),
        None => Action::Kill,
    }
}

impl Platform for KernelPlatform {
    fn alloc_code(&self, len: usize) -> Result<*mut u8, Error> {
        let r = OwnedRegion::new(len).map_err(|e| Error::Memory(format!("{e}")))?;
        let addr = r.addr();
        // Bookkeeping in the metadata heap (skipped by the swap's reference scan): the map's
        // nodes keep stale keys, starts of ranges that crates may be loaded into later.
        nano_core::heap::metadata(|| self.regions.lock().insert(addr, r));
        Ok(addr as *mut u8)
    }

    fn make_executable(&self, ptr: *mut u8, len: usize) -> Result<(), Error> {
        task::without_preemption(|| {
            let regions = self.regions.lock();
            let r = regions.get(&(ptr as u64)).ok_or_else(|| Error::Memory(format!("{ptr:p} is no code region")))?;
            r.protect(0, len.min(r.size()), Perms::ReadExec).map_err(|e| Error::Memory(format!("{e}")))
        })
    }

    fn free_code(&self, ptr: *mut u8, _len: usize) {
        // Dropped (freed) outside the lock.
        drop(task::without_preemption(|| self.regions.lock().remove(&(ptr as u64))));
    }

    fn stack_limit(&self, sp: u64) -> u64 {
        match task::current_stack() {
            Some((bottom, _)) => bottom + STACK_RESERVE,
            None => sp.saturating_sub(16 * 1024),
        }
    }

    fn reserve(&self, len: usize) -> Option<*mut u8> {
        let base = nano_core::kmem::PROGRAM_MEMORY.reserve(len)?;
        nano_core::heap::metadata(|| self.reservations.lock().insert(base, 0));
        Some(base as *mut u8)
    }

    fn commit(&self, base: *mut u8, len: usize) -> bool {
        let base = base as u64;
        let Some(done) = task::without_preemption(|| self.reservations.lock().get(&base).copied()) else { return false };
        let len = (len as u64).div_ceil(4096) * 4096;
        if len <= done {
            return true;
        }
        if len > instance_limit() {
            REFUSED.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let more = len - done;
        if !take(more) {
            return false;
        }
        if nano_core::kmem::PROGRAM_MEMORY.commit(base + done, more).is_err() {
            give(more);
            REFUSED.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        nano_core::heap::metadata(|| self.reservations.lock().insert(base, len));
        true
    }

    fn release(&self, base: *mut u8, len: usize) {
        let base = base as u64;
        if let Some(done) = task::without_preemption(|| self.reservations.lock().remove(&base)) {
            nano_core::kmem::PROGRAM_MEMORY.release(base, done, len);
            give(done);
        }
    }

    fn reserve_memories(&self) -> bool {
        true
    }

    fn charge(&self, bytes: u64) -> bool {
        take(bytes)
    }

    fn refund(&self, bytes: u64) {
        give(bytes);
    }

    fn install_trap_handler(&self) -> Result<(), Error> {
        for c in [Category::InvalidAddress, Category::IllegalInstruction, Category::ArithmeticError] {
            match exceptions::register_handler(c, on_fault) {
                Ok(()) | Err(HandlerError::AlreadyRegistered(_)) => {}
                Err(e) => return Err(Error::Unsupported(format!("trap handler: {e}"))),
            }
        }
        Ok(())
    }
}
