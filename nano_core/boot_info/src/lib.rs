//! What the boot loader hands over, parsed without trusting it.
//!
//! nano_core is entered by GRUB (multiboot2) or by `qemu -kernel` (multiboot1). Both hand over a
//! structure in physical memory describing RAM, the boot modules and the command line. This crate
//! turns either into one [`BootInfo`], parses the module archive the image builder writes
//! ([`archive`]) and the kernel command line ([`cmdline`]).
//!
//! It runs before the heap exists, so it never allocates: results live in fixed-capacity arrays.
//! Every offset read from the loader's structures is bounds-checked through [`PhysMemory`]; a
//! malformed structure is an [`Error`], never a panic. It is `no_std` and fully tested on the host.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod archive;
pub mod cmdline;
mod multiboot;

pub use multiboot::{MB1_MAGIC, MB2_MAGIC, parse};

use arrayvec::{ArrayString, ArrayVec};

/// Read access to physical memory, as the parser needs it.
pub trait PhysMemory {
    /// The `len` bytes at physical address `addr`, or `None` if they are not accessible.
    fn bytes(&self, addr: u64, len: u64) -> Option<&[u8]>;
}

/// Which protocol the kernel was entered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Multiboot 1 (`qemu -kernel`).
    Multiboot1,
    /// Multiboot 2 (GRUB).
    Multiboot2,
}

/// Kind of a physical memory region, as the firmware reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionKind {
    /// Usable RAM.
    Available,
    /// Anything else (reserved, ACPI, defective).
    Reserved,
}

/// A physical memory region `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemRegion {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// Whether it is usable.
    pub kind: RegionKind,
}

/// A boot module: its physical range and the string the loader gave with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// The module's command line (for us, its name).
    pub name: ArrayString<MAX_STRING>,
}

/// Longest command line or module string kept; longer ones are an error.
pub const MAX_STRING: usize = 512;
/// Most memory regions kept.
pub const MAX_REGIONS: usize = 64;
/// Most modules kept.
pub const MAX_MODULES: usize = 16;
/// Most reserved ranges recorded for the loader's own structures.
pub const MAX_RESERVED: usize = 24;

/// Everything nano_core needs from the boot loader.
#[derive(Debug, Clone)]
pub struct BootInfo {
    /// The protocol used.
    pub protocol: Protocol,
    /// The memory map.
    pub memory: ArrayVec<MemRegion, MAX_REGIONS>,
    /// The boot modules.
    pub modules: ArrayVec<Module, MAX_MODULES>,
    /// The kernel command line.
    pub cmdline: ArrayString<MAX_STRING>,
    /// Physical ranges `[start, end)` holding the loader's structures (info block, memory map,
    /// module list, strings); the frame allocator must not hand them out while they are in use.
    pub reserved: ArrayVec<(u64, u64), MAX_RESERVED>,
}

/// Why the boot information could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The magic value in `eax` matches neither protocol.
    #[error("unknown boot loader magic {0:#x}")]
    BadMagic(u32),
    /// A structure points at memory that cannot be read.
    #[error("{what} at {addr:#x} (+{len:#x}) is not readable")]
    Unreadable {
        /// Which structure.
        what: &'static str,
        /// Its physical address.
        addr: u64,
        /// Its length.
        len: u64,
    },
    /// A structure's own size field is inconsistent.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// Which structure.
        what: &'static str,
        /// What is wrong with it.
        detail: &'static str,
    },
    /// More entries than this parser keeps.
    #[error("too many {what} (at most {max})")]
    TooMany {
        /// Which entries.
        what: &'static str,
        /// The capacity.
        max: usize,
    },
    /// A string is not UTF-8 or longer than [`MAX_STRING`].
    #[error("bad {what} string")]
    BadString {
        /// Which string.
        what: &'static str,
    },
}
