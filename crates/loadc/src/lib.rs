//! `loadc FILE.o [ARGS...]`: runs a C program.
//!
//! The program is loaded into the namespace `loadc` itself runs in: `applications`, or NAME with
//! `loadc --ns NAME ...` (or `run --ns NAME loadc ...`), so a program can run with private copies
//! of its crates.
//!
//! FILE.o is a relocatable object compiled by gcc for the kernel (`make cobj SRC="a.c b.c"`;
//! the image carries the programs under crates/loadc/programs in the applications namespace).
//! An object pushed to the running kernel (`make push C=prog.o`) lands among the namespace's
//! updates and is found there first, so a program is edited, compiled, pushed and run without
//! rebuilding the image.
//! It is loaded into the applications namespace like any crate — its libc calls resolve to
//! `tlibc`, which is loaded on demand — and its `main(argc, argv)` runs as a task of its own,
//! so a fault in it kills only that task. The exit status is printed and the program is
//! unloaded again, so it can be run afresh.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ffi::{c_char, c_int};

/// One line for `help`.
pub static DESCRIPTION: &str = "run a C object linked against tlibc: loadc [--ns NAME] FILE.o [ARGS]";

type CMain = extern "C" fn(c_int, *const *const c_char) -> c_int;

fn load(file: &str) -> Result<(mod_mgmt::CrateId, u64), String> {
    nano_core::kernel::with_loader_mut(|l| {
        // The namespace this command runs in: `applications`, or one `run --ns` chose.
        let me = main as fn(&[&str]) -> isize as usize as u64;
        let ns = command::home_namespace(l, me).ok_or("no applications namespace")?;
        let name = mod_mgmt::crate_name_of(file);
        if l.crate_by_name(ns, name).is_some() {
            return Err(format!("{name} is already loaded (still running?)"));
        }
        let id = l.load_program(ns, file).map_err(|e| format!("{e}"))?;
        match l.find_symbol(id, "main", mod_mgmt::SymbolFilter::ExportedCode) {
            Some(addr) => Ok((id, addr)),
            None => {
                let _ = l.unload(id);
                Err(format!("{file} has no main function"))
            }
        }
    })
}

/// Entry point.
pub fn main(args: &[&str]) -> isize {
    if let Some(status) = command::run_in_namespace_option(args) {
        return status;
    }
    let Some(file) = args.get(1) else {
        nano_core::println!("usage: loadc [--ns NAME] FILE.o [ARGS...]");
        return 2;
    };
    let (id, main) = match load(file) {
        Ok(v) => v,
        Err(e) => {
            nano_core::println!("loadc: {e}");
            return 1;
        }
    };
    // argv: NUL-terminated copies, then the pointer array with a final null.
    let strings: Vec<Vec<u8>> = args[1..].iter().map(|a| a.bytes().chain(core::iter::once(0)).collect()).collect();
    let argc = strings.len() as c_int;
    let program = String::from(*file);
    let tid = task::spawn(file, move || {
        let mut argv: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr() as *const c_char).collect();
        argv.push(core::ptr::null());
        // SAFETY: `main` is the address of the C object's `main`, in its loaded, executable
        // text; C's `int main(int, char **)` has this signature in the SysV ABI.
        let f: CMain = unsafe { core::mem::transmute::<usize, CMain>(main as usize) };
        let status = f(argc, argv.as_ptr());
        drop(strings);
        status as isize
    });
    let status = match tid {
        Ok(t) => match task::join(t) {
            Ok(task::Exit::Returned(s)) => {
                nano_core::println!("loadc: {program} exited with status {s}");
                s
            }
            Ok(task::Exit::Killed) => {
                nano_core::println!("loadc: {program} was killed");
                -1
            }
            Ok(task::Exit::Faulted(why) | task::Exit::Panicked(why)) => {
                nano_core::println!("loadc: {program} died: {why}");
                -1
            }
            Err(e) => {
                nano_core::println!("loadc: {e}");
                -1
            }
        },
        Err(e) => {
            nano_core::println!("loadc: cannot start {program}: {e}");
            -1
        }
    };
    if let Err(e) = nano_core::kernel::with_loader_mut(|l| l.unload(id)) {
        nano_core::println!("loadc: {program} stays loaded: {e}");
    }
    if status == 0 { 0 } else { 1 }
}
