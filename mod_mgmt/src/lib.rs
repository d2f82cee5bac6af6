//! mod_mgmt: loads relocatable crate objects and links them into `CrateNamespace`s at run time.
//!
//! This is the heart of Delos. It runs unchanged in the kernel and on a Linux host (`std`
//! feature, used by `modtool` and the tests), so nearly all of its behaviour is tested on the
//! host with real objects built with the kernel's flags.
//!
//! How it is split (one concern per module):
//! - [`elf`]: reading objects (the `object` crate), flattened and checked;
//! - [`memory`]: the memory trait (allocate RW, protect W^X, free) — [`host`] implements it
//!   with mmap; nano_core with its page tables;
//! - [`reloc`]: relocation arithmetic and writing;
//! - [`loader`]: placement, resolution, relocation, load-on-demand, unloading;
//! - [`namespace`], [`symbols`]: namespaces and their symbol maps (the naming rule is in
//!   [`symbols`]);
//! - [`index`]: the address index; [`deps`]: the dependency graph; [`tls`]: the TLS layout;
//! - [`query`]: lookups, `addr2sym`, dependency questions; [`symfile`]: nano_core's symbol file;
//! - [`swap`]: replacing loaded crates with new versions, checked and reversible.
//!
//! It must never depend on a kernel crate: memory arrives through [`memory::MemoryProvider`].
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

mod adopt;
pub mod crates;
pub mod deps;
pub mod dirindex;
pub mod elf;
pub mod error;
#[cfg(feature = "std")]
pub mod host;
pub mod ids;
pub mod index;
pub mod integrity;
pub mod loader;
pub mod memory;
pub mod namespace;
pub mod query;
pub mod reloc;
pub mod runtime_ns;
pub mod swap;
pub mod symbols;
pub mod symfile;
pub mod symtab;
pub mod tls;

pub use crates::{LoadPhases, LoadedCrate, LoadedSection, SectionSymbol};
pub use elf::SectionKind;
pub use error::LoadError;
pub use ids::{CrateId, NamespaceId, SectionId};
pub use loader::{LoadStats, Loader, PrelinkedSection, PrelinkedSymbol};
pub use memory::{MemoryError, MemoryProvider, Perms, Region};
pub use namespace::{CrateNamespace, ObjectBytes, crate_name_of};
pub use query::{AddrInfo, SymbolFilter, Totals};
pub use runtime_ns::Dropped;
pub use symbols::{SymbolRef, agnostic_key, exact_key};
