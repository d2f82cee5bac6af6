//! The kernel side of `wasm_runtime::Platform`: code pages from the loader's memory provider
//! (mapped read-write, then read+execute: W^X), the task's own stack for the stack limit, and
//! the exceptions crate's per-task handlers for traps.

use alloc::collections::BTreeMap;
use alloc::format;
use exceptions::{Action, Category, FaultInfo, HandlerError};
use mod_mgmt::{MemoryProvider, Perms, Region};
use wasm_runtime::{Error, Platform};

/// Bytes of stack kept free below the limit: room for the trap landing and host functions.
const STACK_RESERVE: u64 = 24 * 1024;

/// The kernel platform.
pub struct KernelPlatform {
    /// Regions handed out, by address (the provider wants its `Region` back to free it).
    regions: spin::Mutex<BTreeMap<u64, Region>>,
}

/// The one instance.
pub static PLATFORM: KernelPlatform = KernelPlatform { regions: spin::Mutex::new(BTreeMap::new()) };

fn on_fault(info: &FaultInfo, _c: Category) -> Action {
    match wasm_runtime::trap::handle_fault(info.rip) {
        Some(at) => Action::Resume(at),
        None => Action::Kill,
    }
}

impl Platform for KernelPlatform {
    fn alloc_code(&self, len: usize) -> Result<*mut u8, Error> {
        let r = nano_core::kmem::KERNEL_MEMORY.allocate(len).map_err(|e| Error::Memory(format!("{e}")))?;
        let addr = r.addr();
        task::without_preemption(|| self.regions.lock().insert(addr, r));
        Ok(addr as *mut u8)
    }

    fn make_executable(&self, ptr: *mut u8, len: usize) -> Result<(), Error> {
        task::without_preemption(|| {
            let regions = self.regions.lock();
            let r = regions.get(&(ptr as u64)).ok_or_else(|| Error::Memory(format!("{ptr:p} is no code region")))?;
            nano_core::kmem::KERNEL_MEMORY.protect(r, 0, len.min(r.size()), Perms::ReadExec).map_err(|e| Error::Memory(format!("{e}")))
        })
    }

    fn free_code(&self, ptr: *mut u8, _len: usize) {
        if let Some(r) = task::without_preemption(|| self.regions.lock().remove(&(ptr as u64))) {
            nano_core::kmem::KERNEL_MEMORY.free(r);
        }
    }

    fn stack_limit(&self, sp: u64) -> u64 {
        match task::current_stack() {
            Some((bottom, _)) => bottom + STACK_RESERVE,
            None => sp.saturating_sub(16 * 1024),
        }
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
