//! mod_mgmt's memory trait, implemented with the kernel's page tables.
//!
//! Each region is a range of the general page-allocation region (see `paging`) with an unmapped
//! guard page after it, mapped read-write when allocated; `protect` then gives each part its
//! final W^X permissions, and `free` unmaps the pages and returns their frames. Freed address
//! ranges are reused (best fit), so load/unload and swap cycles do not keep consuming address
//! space and page-table frames.

use crate::paging::{self, PAGE};
use mod_mgmt::{MemoryError, MemoryProvider, Perms, Region};

/// The kernel's memory provider for loaded crates.
pub struct KernelMemory {
    /// Freed ranges: (start, pages).
    free: spin::Mutex<alloc::vec::Vec<(u64, u64)>>,
}

/// Memory for loaded crates (the loader's provider).
pub static KERNEL_MEMORY: KernelMemory = KernelMemory { free: spin::Mutex::new(alloc::vec::Vec::new()) };

/// Memory for what programs make at run time: the WASM JIT's code and linear memories.
///
/// A pool of its own, so that an address range once used by a program is never reused for a
/// crate: programs' structures in the general heap (and the spare capacity of their vectors)
/// keep stale copies of their ranges' addresses, and the swap's conservative reference scan
/// would take such a copy for a reference to whichever crate was loaded there next, keeping a
/// retired version alive.
pub static PROGRAM_MEMORY: KernelMemory = KernelMemory { free: spin::Mutex::new(alloc::vec::Vec::new()) };

impl KernelMemory {
    fn take_range(&self, pages: u64) -> Result<u64, paging::PagingError> {
        x86_64::instructions::interrupts::without_interrupts(|| {
            let mut free = self.free.lock();
            let best = free.iter().enumerate().filter(|(_, r)| r.1 >= pages).min_by_key(|(_, r)| r.1).map(|(i, _)| i);
            match best {
                Some(i) => {
                    let (start, n) = free[i];
                    if n == pages {
                        free.swap_remove(i);
                    } else {
                        free[i] = (start + pages * PAGE, n - pages);
                    }
                    Ok(start)
                }
                None => paging::alloc_region(pages),
            }
        })
    }

    fn give_back(&self, start: u64, pages: u64) {
        // The list lives in the metadata heap, which the swap's reference scan skips: its
        // entries (and the stale copies a `swap_remove` leaves in its spare capacity) are
        // starts of ranges that crates are loaded into later, not references to them.
        crate::heap::metadata(|| self.free.lock().push((start, pages)));
    }

    /// Freed ranges kept for reuse, and the pages they span (`mem` reports them).
    pub fn free_ranges(&self) -> (usize, u64) {
        x86_64::instructions::interrupts::without_interrupts(|| {
            let free = self.free.lock();
            (free.len(), free.iter().map(|r| r.1).sum())
        })
    }
}

/// Address space reserved without memory behind it (a WASM linear memory's guard region):
/// pages are mapped on demand ([`KernelMemory::commit`]) and all returned at once
/// ([`KernelMemory::release`]).
impl KernelMemory {
    /// Reserves `len` bytes of address space (page aligned, unmapped, followed by a guard
    /// page); returns its start.
    pub fn reserve(&self, len: usize) -> Option<u64> {
        let pages = (len as u64).div_ceil(PAGE).max(1);
        self.take_range(pages).ok()
    }

    /// Maps `[start, start+len)` (page aligned, inside a reservation, not mapped yet) read-write
    /// and zero-filled. On failure (no frames) nothing of it stays mapped.
    pub fn commit(&self, start: u64, len: u64) -> Result<(), MemoryError> {
        let pages = len.div_ceil(PAGE);
        for i in 0..pages {
            if paging::map_new(start + i * PAGE, paging::Perms::ReadWrite).is_err() {
                paging::unmap_and_free(start, i);
                return Err(MemoryError::OutOfMemory(len as usize));
            }
        }
        Ok(())
    }

    /// Unmaps the first `committed` bytes of a reservation of `len` bytes at `start`, frees
    /// their frames and gives the address space back.
    pub fn release(&self, start: u64, committed: u64, len: usize) {
        paging::unmap_and_free(start, committed.div_ceil(PAGE));
        self.give_back(start, (len as u64).div_ceil(PAGE).max(1));
    }
}

impl MemoryProvider for KernelMemory {
    fn allocate(&self, size: usize) -> Result<Region, MemoryError> {
        let pages = (size as u64).div_ceil(PAGE).max(1);
        let start = self.take_range(pages).map_err(|_| MemoryError::OutOfMemory(size))?;
        for i in 0..pages {
            if paging::map_new(start + i * PAGE, paging::Perms::ReadWrite).is_err() {
                paging::unmap_and_free(start, i);
                self.give_back(start, pages);
                return Err(MemoryError::OutOfMemory(size));
            }
        }
        // SAFETY: the pages were just mapped read-write in a fresh address range nothing else
        // uses; the region owns them until `free`.
        Ok(unsafe { Region::new(start, (pages * PAGE) as usize) })
    }

    fn protect(&self, region: &Region, offset: usize, len: usize, perms: Perms) -> Result<(), MemoryError> {
        let err = MemoryError::Protect { addr: region.addr() + offset as u64, size: len, perms };
        if !offset.is_multiple_of(PAGE as usize) || offset.checked_add(len).is_none_or(|e| e > region.size()) {
            return Err(err);
        }
        paging::protect_range(region.addr() + offset as u64, (len as u64).div_ceil(PAGE), perms).map_err(|_| err)
    }

    fn free(&self, region: Region) {
        let pages = region.size() as u64 / PAGE;
        crate::hooks::forget_range(region.addr(), region.addr() + region.size() as u64);
        paging::unmap_and_free(region.addr(), pages);
        self.give_back(region.addr(), pages);
    }
}

/// A region of [`PROGRAM_MEMORY`] that goes back to it when dropped: for code outside the loader
/// (the WASM JIT's code), which would otherwise have to remember to hand each `Region` back.
/// (The loader keeps explicit ownership of its regions: its bookkeeping decides when a retired
/// crate's memory may go.)
#[derive(Debug)]
pub struct OwnedRegion(Option<Region>);

impl OwnedRegion {
    /// At least `size` bytes, page aligned, mapped read-write and zeroed.
    pub fn new(size: usize) -> Result<OwnedRegion, MemoryError> {
        PROGRAM_MEMORY.allocate(size).map(|r| OwnedRegion(Some(r)))
    }

    fn region(&self) -> &Region {
        self.0.as_ref().expect("an OwnedRegion holds its region until dropped")
    }

    /// Start address.
    pub fn addr(&self) -> u64 {
        self.region().addr()
    }

    /// Size in bytes (whole pages).
    pub fn size(&self) -> usize {
        self.region().size()
    }

    /// Sets the permissions of `len` bytes at `offset` (both page aligned).
    pub fn protect(&self, offset: usize, len: usize, perms: Perms) -> Result<(), MemoryError> {
        PROGRAM_MEMORY.protect(self.region(), offset, len, perms)
    }
}

impl Drop for OwnedRegion {
    fn drop(&mut self) {
        if let Some(r) = self.0.take() {
            PROGRAM_MEMORY.free(r);
        }
    }
}
