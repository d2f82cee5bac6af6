//! wasm_runtime: a WebAssembly engine that compiles modules to x86_64 with Cranelift.
//!
//! `wasmparser` validates the module (WebAssembly 2.0 without SIMD: MVP, mutable globals,
//! sign extension, non-trapping float-to-int, multi-value, bulk memory, reference types);
//! [`translate`] turns each function body into Cranelift IR; [`compile`] runs Cranelift and
//! lays every function out in one code image with its relocations, trap sites and `.eh_frame`;
//! [`instance`] places that image in executable memory the embedder provides ([`Platform`]),
//! builds the run-time structures (linear memory, tables, globals) and calls into the code.
//!
//! The same crate runs in the kernel (a loaded crate: code pages from mod_mgmt's memory
//! provider, traps from the exceptions crate's per-task handlers) and on the host (feature
//! `std`: code from `mmap`, traps from signals), so the spec suite and benchmarks run on the
//! host with exactly the code the kernel runs.
//!
//! Traps: every trap site Cranelift emits is recorded with its code offset, trap kind and the
//! WASM byte offset it came from. A fault inside compiled code (a `ud2` at a trap site, or a
//! #DE at a division) is turned by the platform's handler into a jump to
//! `delos_wasm_trap_landing`, which restores the stack of the innermost [`Instance::call`]
//! and returns a [`Trap`] naming the kind, the function and the offset.
#![cfg_attr(not(feature = "std"), no_std)]
#![feature(thread_local)]

extern crate alloc;

pub mod compile;
pub mod delos;
pub mod instance;
pub mod module;
pub mod translate;
pub mod trap;
pub mod vm;
pub mod wasi;

#[cfg(feature = "std")]
pub mod host;

use alloc::string::String;
use core::fmt;

pub use compile::Config;
pub use instance::{CodeSymbol, Extern, Func, Instance, InstantiateError, Linker, Module, Store, Val};
pub use module::ModuleInfo;
pub use trap::{Trap, TrapKind};

/// Why a module could not be compiled or instantiated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// wasmparser rejected the module (malformed or invalid); the message names the cause and
    /// the byte offset.
    Invalid(String),
    /// The module uses something this engine does not support.
    Unsupported(String),
    /// Cranelift failed to compile a function.
    Compile {
        /// Function index.
        func: u32,
        /// Cranelift's message.
        msg: String,
    },
    /// An import could not be satisfied.
    Link {
        /// `module.name` of the import.
        import: String,
        /// What was wrong.
        msg: String,
    },
    /// The platform could not provide memory.
    Memory(String),
    /// No export of that name, or of the wrong kind.
    NoExport(String),
    /// Arguments did not match the function's parameters.
    BadArguments(String),
    /// The call trapped.
    Trap(Trap),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid(m) => write!(f, "invalid module: {m}"),
            Error::Unsupported(m) => write!(f, "unsupported: {m}"),
            Error::Compile { func, msg } => write!(f, "cannot compile function {func}: {msg}"),
            Error::Link { import, msg } => write!(f, "cannot link import {import}: {msg}"),
            Error::Memory(m) => write!(f, "out of memory: {m}"),
            Error::NoExport(m) => write!(f, "no export {m}"),
            Error::BadArguments(m) => write!(f, "bad arguments: {m}"),
            Error::Trap(t) => t.fmt(f),
        }
    }
}

/// What the embedder provides: executable memory and the current stack pointer's budget.
pub trait Platform: Sync {
    /// Maps `len` bytes read-write (page aligned); returns the address.
    fn alloc_code(&self, len: usize) -> Result<*mut u8, Error>;
    /// Makes a block from [`Platform::alloc_code`] read+execute (never writable again).
    fn make_executable(&self, ptr: *mut u8, len: usize) -> Result<(), Error>;
    /// Unmaps a block from [`Platform::alloc_code`].
    fn free_code(&self, ptr: *mut u8, len: usize);
    /// Lowest stack address compiled code may use on this thread/task (a stack-overflow trap
    /// fires before going below it), given the current stack pointer.
    fn stack_limit(&self, sp: u64) -> u64;
    /// Makes sure faults in compiled code reach [`trap::handle_fault`] on this thread/task.
    fn install_trap_handler(&self) -> Result<(), Error>;
    /// Reserves `len` bytes of address space, inaccessible, for a guard-region memory;
    /// `None` if the platform cannot (then modules must be compiled with bounds checks).
    fn reserve(&self, _len: usize) -> Option<*mut u8> {
        None
    }
    /// Makes the first `len` bytes of a reservation readable and writable (zero-filled).
    fn commit(&self, _base: *mut u8, _len: usize) -> bool {
        false
    }
    /// Returns a reservation.
    fn release(&self, _base: *mut u8, _len: usize) {}
    /// Whether every linear memory lives in a reservation, also for code compiled with bounds
    /// checks (the kernel: memory is then mapped page by page against a budget and returned
    /// whole when the memory goes, never taken from a heap that does not shrink).
    fn reserve_memories(&self) -> bool {
        false
    }
    /// Accounts `bytes` more of table storage; `false` refuses it (the growth fails).
    fn charge(&self, _bytes: u64) -> bool {
        true
    }
    /// Gives back what [`Platform::charge`] accounted.
    fn refund(&self, _bytes: u64) {}
}
