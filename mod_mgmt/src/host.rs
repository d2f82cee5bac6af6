//! The host side: an mmap-backed memory provider and the symbols a kernel would provide.
//!
//! Used by `modtool` and the host tests, so that the very same loader code runs on Linux.
//! Regions are placed at increasing hint addresses from [`HOST_BASE`], so that one fresh
//! process places the same objects at the same addresses every time (which makes `modtool
//! symbols` and `modtool addr2sym` agree across runs).

use crate::error::LoadError;
use crate::ids::NamespaceId;
use crate::loader::{Loader, PrelinkedSymbol};
use crate::memory::{MemoryError, MemoryProvider, Perms, Region};
use std::alloc::Layout;
use std::sync::atomic::{AtomicU64, Ordering};

/// mmap/mprotect/munmap-backed memory.
#[derive(Debug, Default)]
pub struct HostMemory;

/// A ready-to-use instance (the provider's only state is the next hint address).
pub static HOST_MEMORY: HostMemory = HostMemory;

/// First hint address for regions.
pub const HOST_BASE: u64 = 0x5000_0000_0000;
static NEXT_HINT: AtomicU64 = AtomicU64::new(HOST_BASE);

fn page_round(size: usize) -> usize {
    size.div_ceil(4096).max(1) * 4096
}

impl MemoryProvider for HostMemory {
    fn allocate(&self, size: usize) -> Result<Region, MemoryError> {
        let len = page_round(size);
        let hint = NEXT_HINT.fetch_add(len as u64 + 4096, Ordering::Relaxed);
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping; on failure we fall
        // back to letting the kernel choose. Either way only fresh memory is mapped.
        let mut p = unsafe { libc::mmap(hint as *mut libc::c_void, len, prot, flags | libc::MAP_FIXED_NOREPLACE, -1, 0) };
        if p == libc::MAP_FAILED {
            // SAFETY: as above, without a placement request.
            p = unsafe { libc::mmap(core::ptr::null_mut(), len, prot, flags, -1, 0) };
        }
        if p == libc::MAP_FAILED {
            return Err(MemoryError::OutOfMemory(size));
        }
        // SAFETY: the mapping is fresh, read-write, and owned only by this region until freed.
        Ok(unsafe { Region::new(p as u64, len) })
    }

    fn protect(&self, region: &Region, offset: usize, len: usize, perms: Perms) -> Result<(), MemoryError> {
        if offset.checked_add(len).is_none_or(|e| e > region.size()) {
            return Err(MemoryError::Protect { addr: region.addr() + offset as u64, size: len, perms });
        }
        let prot = match perms {
            Perms::ReadExec => libc::PROT_READ | libc::PROT_EXEC,
            Perms::Read => libc::PROT_READ,
            Perms::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
            Perms::ReadWriteExec => libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
        };
        // SAFETY: the region is a mapping this provider created and still owns.
        let r = unsafe { libc::mprotect((region.addr() as usize + offset) as *mut libc::c_void, len, prot) };
        if r != 0 {
            return Err(MemoryError::Protect { addr: region.addr() + offset as u64, size: len, perms });
        }
        Ok(())
    }

    fn free(&self, region: Region) {
        // SAFETY: the region is a mapping this provider created; it is consumed here, so no
        // reference to its memory survives.
        unsafe { libc::munmap(region.addr() as *mut libc::c_void, region.size()) };
    }
}

// The symbols a kernel provides to loaded crates, implemented for the host.

extern "C" fn host_alloc(size: usize, align: usize) -> *mut u8 {
    match Layout::from_size_align(size, align) {
        // SAFETY: rustc only calls the allocator with non-zero sizes.
        Ok(l) => unsafe { std::alloc::alloc(l) },
        Err(_) => core::ptr::null_mut(),
    }
}

extern "C" fn host_alloc_zeroed(size: usize, align: usize) -> *mut u8 {
    match Layout::from_size_align(size, align) {
        // SAFETY: as in host_alloc.
        Ok(l) => unsafe { std::alloc::alloc_zeroed(l) },
        Err(_) => core::ptr::null_mut(),
    }
}

/// # Safety
/// Called by loaded code with a pointer it got from `host_alloc` with this layout.
unsafe extern "C" fn host_dealloc(ptr: *mut u8, size: usize, align: usize) {
    // SAFETY: the caller passes back a block from host_alloc with the same valid layout.
    unsafe { std::alloc::dealloc(ptr, Layout::from_size_align_unchecked(size, align)) }
}

/// # Safety
/// As `host_dealloc`, plus `new_size` non-zero.
unsafe extern "C" fn host_realloc(ptr: *mut u8, size: usize, align: usize, new_size: usize) -> *mut u8 {
    // SAFETY: forwarded from the caller's contract (the GlobalAlloc rules).
    unsafe { std::alloc::realloc(ptr, Layout::from_size_align_unchecked(size, align), new_size) }
}

extern "C" fn host_alloc_error(size: usize, align: usize) -> ! {
    eprintln!("loaded code: allocation of {size} bytes (align {align}) failed");
    std::process::exit(102)
}

extern "C" fn host_no_alloc_shim() {}

/// # Safety
/// `ptr..ptr+len` must be readable.
unsafe extern "C" fn host_log(ptr: *const u8, len: usize) {
    // SAFETY: the caller passes a valid byte range.
    let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
    println!("[log] {}", String::from_utf8_lossy(bytes));
}

fn host_panic(info: &core::panic::PanicInfo<'_>) -> ! {
    // The loaded core was built by the same compiler, so PanicInfo's layout matches ours.
    eprintln!("panic in loaded code: {info}");
    std::process::exit(101)
}

extern "C" fn host_eh_personality() -> u32 {
    8 // _URC_FATAL_PHASE1_ERROR: nothing is caught on the host
}

extern "C" fn host_unwind_resume() -> ! {
    eprintln!("loaded code tried to unwind; the host loader does not unwind");
    std::process::exit(103)
}

/// The host's substitutes for what nano_core provides, as (name, address). Names are
/// hash-agnostic, so they match whatever `__rustc[...]` hash a build uses.
pub fn host_symbols() -> Vec<PrelinkedSymbol> {
    let f = |raw: &str, addr: usize| PrelinkedSymbol { raw: raw.to_string(), addr: addr as u64, size: 1, global: true, key: None };
    vec![
        f("__rustc::__rust_alloc", host_alloc as *const () as usize),
        f("__rustc::__rust_alloc_zeroed", host_alloc_zeroed as *const () as usize),
        f("__rustc::__rust_dealloc", host_dealloc as *const () as usize),
        f("__rustc::__rust_realloc", host_realloc as *const () as usize),
        f("__rustc::__rust_alloc_error_handler", host_alloc_error as *const () as usize),
        f("__rustc::__rust_no_alloc_shim_is_unstable_v2", host_no_alloc_shim as *const () as usize),
        f("__rustc::rust_begin_unwind", host_panic as *const () as usize),
        f("rust_eh_personality", host_eh_personality as *const () as usize),
        f("_Unwind_Resume", host_unwind_resume as *const () as usize),
        f("delos_log", host_log as *const () as usize),
        f("memcpy", libc::memcpy as *const () as usize),
        f("memmove", libc::memmove as *const () as usize),
        f("memset", libc::memset as *const () as usize),
        f("memcmp", libc::memcmp as *const () as usize),
        f("bcmp", libc::memcmp as *const () as usize),
    ]
}

/// Creates the `host` namespace holding the `host` crate with [`host_symbols`].
pub fn install(loader: &mut Loader) -> Result<NamespaceId, LoadError> {
    let ns = loader.add_namespace("host", None)?;
    loader.add_prelinked(ns, "host", &[], &host_symbols())?;
    Ok(ns)
}
