//! Where loaded sections live: a small trait the kernel and the host each implement.
//!
//! mod_mgmt never touches page tables itself. It asks a [`MemoryProvider`] for page-aligned
//! regions (mapped read-write), fills and relocates them, then asks for their final
//! permissions, which are W^X by construction ([`Perms`] has no writable+executable value).

use core::fmt;

/// Final permissions of a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Perms {
    /// Code: read + execute.
    ReadExec,
    /// Constants: read only.
    Read,
    /// Data and bss: read + write.
    ReadWrite,
    /// Code while the loader writes into it (a relink, a repair): read + write + execute, for
    /// those few instructions only, with interrupts off. Not read + write: an NMI (the watchdog's,
    /// at every timer period) may run code on that very page meanwhile — its entry, the fault
    /// handler — and a page without execute permission there took the kernel down (found by
    /// the fault campaign: the scrubber repairing the exceptions crate).
    ReadWriteExec,
}

impl fmt::Display for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Perms::ReadExec => "r-x",
            Perms::Read => "r--",
            Perms::ReadWrite => "rw-",
            Perms::ReadWriteExec => "rwx",
        })
    }
}

/// A page-aligned block of memory owned by the loader.
#[derive(Debug, PartialEq, Eq)]
pub struct Region {
    addr: u64,
    size: usize,
}

impl Region {
    /// Wraps a block the provider just mapped.
    ///
    /// # Safety
    /// `addr..addr+size` must be mapped read-write, owned by nobody else, and stay mapped until
    /// the region is passed to [`MemoryProvider::free`].
    pub unsafe fn new(addr: u64, size: usize) -> Region {
        Region { addr, size }
    }

    /// Start address.
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// Size in bytes (a multiple of the page size).
    pub fn size(&self) -> usize {
        self.size
    }

    /// Splits the region at `offset` (page aligned, strictly inside): `self` keeps
    /// `[addr, addr+offset)` and the returned region owns the rest. Each part is then freed on
    /// its own — a crate's code and its data can have different lifetimes (a new version of the
    /// crate adopts the data, the code is retired).
    pub(crate) fn split_off(&mut self, offset: usize) -> Option<Region> {
        if offset == 0 || offset >= self.size || !offset.is_multiple_of(4096) {
            return None;
        }
        let rest = Region { addr: self.addr + offset as u64, size: self.size - offset };
        self.size = offset;
        Some(rest)
    }

    /// The region's bytes, for filling and relocating before it is protected.
    ///
    /// # Safety
    /// The region must still be mapped writable (no [`MemoryProvider::protect`] to a read-only
    /// permission since allocation), and no other reference to its bytes may be live.
    pub(crate) unsafe fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: by `Region::new`'s contract the range is mapped and owned by this region;
        // the caller guarantees it is writable and unaliased.
        unsafe { core::slice::from_raw_parts_mut(self.addr as *mut u8, self.size) }
    }
}

/// Why the provider failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryError {
    /// No memory for the request.
    #[error("out of memory allocating {0} bytes")]
    OutOfMemory(usize),
    /// Changing permissions failed.
    #[error("cannot set {perms} on {addr:#x}+{size:#x}")]
    Protect {
        /// Region start.
        addr: u64,
        /// Region size.
        size: usize,
        /// Permissions asked for.
        perms: Perms,
    },
}

/// Supplies memory for loaded crates.
pub trait MemoryProvider: Sync {
    /// Maps at least `size` bytes read-write, page aligned, zero filled.
    fn allocate(&self, size: usize) -> Result<Region, MemoryError>;
    /// Sets the final permissions of `len` bytes at `offset` in a region (both page aligned).
    fn protect(&self, region: &Region, offset: usize, len: usize, perms: Perms) -> Result<(), MemoryError>;
    /// Unmaps a region and releases its memory.
    fn free(&self, region: Region);
}
