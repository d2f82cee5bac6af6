//! The nano_core binary: everything is in the library; the entry point `_start` is in its boot
//! assembly, which the linker script names as the ELF entry.
#![no_std]
#![no_main]

extern crate nano_core;
