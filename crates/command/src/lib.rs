//! command: the contract between the shell and the command crates.
//!
//! A command is a crate of the applications namespace (or of a namespace made with `ns new`)
//! that exports
//! - `pub fn main(args: &[&str]) -> isize` — `args[0]` is the command's name; the result is its
//!   exit status (see [`status`]);
//! - `pub static DESCRIPTION: &str` — one line for `help` (the image also carries a table of
//!   them, so `help` describes commands without loading them).
//!
//! This crate holds what both sides of that contract use: turning a found `main` into a
//! callable, reading a `DESCRIPTION`, parsing numeric arguments, and the `--ns NAME` option
//! every namespace-aware command accepts. It used to live in nano_core, which should hold
//! nothing that could be loaded instead.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use mod_mgmt::{Loader, NamespaceId};
use nano_core::println;

/// A command's entry point.
pub type Main = fn(&[&str]) -> isize;

/// Exit statuses with a meaning shared by all commands (others are the command's own).
pub mod status {
    /// It did what it was asked.
    pub const SUCCESS: isize = 0;
    /// It could not (the reason was printed).
    pub const FAILURE: isize = 1;
    /// Wrong arguments (the usage was printed).
    pub const USAGE: isize = 2;
}

/// Parses a number as typed in the shell: `0x`-prefixed hex (underscores allowed), or decimal.
pub fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(&h.replace('_', ""), 16).ok(),
        None => s.parse().ok(),
    }
}

/// Turns the address of a loaded command's `main` (found by symbol lookup) into a callable.
pub fn main_at(addr: u64) -> Main {
    // SAFETY: callers pass the address of a `<crate>::main`, which by this crate's contract has
    // the signature `Main`, in a loaded, executable section (same build as the caller);
    // function pointers and addresses have the same representation.
    unsafe { core::mem::transmute::<usize, Main>(addr as usize) }
}

/// Reads a `&'static str` stored at `addr` (a `pub static NAME: &str` of a loaded crate, found
/// by symbol lookup, like `DESCRIPTION`), checking that the address is a mapped, readable
/// static and the text valid UTF-8 of at most 4 KiB.
pub fn read_static_str(addr: u64) -> Option<&'static str> {
    use nano_core::paging::translate;
    translate(addr)?;
    translate(addr + 15)?;
    // SAFETY: the 16 bytes at `addr` are mapped (checked above) and hold a `&'static str`
    // (the symbol's type, by the caller's contract); its bytes are checked to be mapped too.
    let (ptr, len) = unsafe { ((addr as *const u64).read(), ((addr + 8) as *const u64).read()) };
    if len > 4096 || translate(ptr).is_none() || (len > 0 && translate(ptr + len - 1).is_none()) {
        return None;
    }
    // SAFETY: the range was checked to be mapped; the loaded crate's rodata is never freed
    // while the crate is loaded.
    let bytes = unsafe { core::slice::from_raw_parts(ptr as *const u8, len as usize) };
    core::str::from_utf8(bytes).ok()
}

/// Why a command's `main` could not be found. The shell prints it; its kind tells a caller
/// whether the name was wrong or the crate failed to load.
#[derive(Debug)]
pub enum CommandError {
    /// The namespace asked for does not exist.
    NoNamespace(alloc::boxed::Box<mod_mgmt::LoadError>),
    /// No crate of that name (in the applications namespace, or in `namespace` and its parents).
    Unknown {
        /// The command typed.
        name: String,
        /// The namespace searched (`None`: applications).
        namespace: Option<String>,
    },
    /// The crate exists but the loader refused it.
    Load {
        /// The command typed.
        name: String,
        /// The namespace it was loaded into (`None`: applications).
        namespace: Option<String>,
        /// The loader's reason (boxed: a load error is large and this one is rare).
        source: alloc::boxed::Box<mod_mgmt::LoadError>,
    },
    /// The crate exports no `main`.
    NotACommand(String),
}

impl core::fmt::Display for CommandError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CommandError::NoNamespace(e) => write!(f, "{e}"),
            CommandError::Unknown { name, namespace: None } => write!(f, "unknown command: {name} (try `help`)"),
            CommandError::Unknown { name, namespace: Some(ns) } => {
                write!(f, "unknown command: {name} (not in namespace {ns} or its parents)")
            }
            CommandError::Load { name, namespace: None, source } => write!(f, "cannot load command {name}: {source}"),
            CommandError::Load { name, namespace: Some(ns), source } => {
                write!(f, "cannot load command {name} into namespace {ns}: {source}")
            }
            CommandError::NotACommand(name) => write!(f, "{name} is not a command (no {name}::main)"),
        }
    }
}

impl core::error::Error for CommandError {}

/// The `main` of command crate `name`, loaded into the applications namespace on first use
/// (one copy shared by every run).
pub fn main_of(name: &str) -> Result<u64, CommandError> {
    nano_core::kernel::with_loader_mut(|l| {
        let apps = l.namespace_by_name("applications").map_err(|e| CommandError::NoNamespace(e.into()))?;
        let krate = l.load_crate(apps, name).map_err(|e| match e {
            mod_mgmt::LoadError::NoSuchProgram { .. } => CommandError::Unknown { name: name.into(), namespace: None },
            source => CommandError::Load { name: name.into(), namespace: None, source: source.into() },
        })?;
        l.export_of(krate, &format!("{name}::main")).ok_or_else(|| CommandError::NotACommand(name.into()))
    })
}

/// The `main` of command crate `name` as loaded into namespace `ns` (its own copy there, loaded
/// if needed, its dependencies resolved in `ns` first).
pub fn main_in(ns: &str, name: &str) -> Result<u64, CommandError> {
    nano_core::kernel::with_loader_mut(|l| {
        let id = l.namespace_by_name(ns).map_err(|e| CommandError::NoNamespace(e.into()))?;
        let krate = l.load_crate_into(id, name).map_err(|e| match e {
            mod_mgmt::LoadError::NoSuchProgram { .. } => CommandError::Unknown { name: name.into(), namespace: Some(ns.into()) },
            source => CommandError::Load { name: name.into(), namespace: Some(ns.into()), source: source.into() },
        })?;
        l.export_of(krate, &format!("{name}::main")).ok_or_else(|| CommandError::NotACommand(name.into()))
    })
}

/// `CMD --ns NAME ARGS...`: if `args` (a command's arguments, `args[0]` its name) start with
/// `--ns NAME` (only there: later arguments belong to the program), runs command crate
/// `args[0]` as loaded into namespace NAME (its own copy there, loaded if needed) with the other
/// arguments, in this task, and returns its status; `None` when there is no `--ns`. A command
/// that asks the loader where it runs ([`home_namespace`] of its own code) then works in NAME:
/// this is how `loadc --ns` and `wasm run --ns` work.
pub fn run_in_namespace_option(args: &[&str]) -> Option<isize> {
    let i = 1;
    if args.get(i) != Some(&"--ns") {
        return None;
    }
    let Some(ns) = args.get(i + 1) else {
        println!("{}: --ns needs a namespace name", args[0]);
        return Some(status::USAGE);
    };
    match main_in(ns, args[0]) {
        Ok(addr) => {
            let rest: Vec<&str> = args.iter().enumerate().filter(|(k, _)| *k != i && *k != i + 1).map(|(_, a)| *a).collect();
            Some(main_at(addr)(&rest))
        }
        Err(e) => {
            println!("{}: {e}", args[0]);
            Some(status::FAILURE)
        }
    }
}

/// The namespace of the loaded crate whose code holds `addr` (a command passes its own
/// `main`), or `applications`.
pub fn home_namespace(l: &Loader, addr: u64) -> Option<NamespaceId> {
    l.namespace_of_addr(addr).or_else(|| l.namespace_by_name("applications").ok())
}
