//! nano_core: the only statically linked part of Delos.
//!
//! It boots (multiboot1 under `qemu -kernel`, multiboot2 under GRUB), brings up serial, time,
//! physical frames, W^X page tables, the heap and early exception handlers, and reads the boot
//! modules. Everything else is a crate object loaded at run time; nano_core must never grow a
//! subsystem that could be loaded instead.
//!
//! The code lives in this library so that loaded crates can depend on nano_core's interfaces
//! (`println!`, paging, frames) and link against the very same symbols at run time; the binary
//! (`src/main.rs`) only pulls the library in.
//!
//! Kernel options (`-append` / grub.cfg): `log=LEVEL`, `test` (run in-kernel tests and exit),
//! `test_fail` (add a failing test), `fault=pagefault|ud|divide|panic|stack|triple` (trigger a
//! fault after boot, for the fault-report tests), `poweroff` (exit with success once ready).
#![no_std]
#![feature(abi_x86_interrupt)]
#![feature(lang_items)]
#![feature(fn_ptr_trait)]
#![allow(internal_features)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

pub mod frames;
pub mod heap;
pub mod hooks;
pub mod interrupts;
pub mod ipi;
pub mod jobs;
pub mod kernel;
pub mod kmem;
pub mod ktests;
pub mod leakcheck;
pub mod logger;
pub mod modules;
pub mod paging;
pub mod panic;
pub mod qemu;
pub mod saved;
pub mod serial;
pub mod stw;
pub mod time;
pub mod tlb;
pub mod triple;
pub mod trust;

use boot_info::{BootInfo, PhysMemory, RegionKind};
use paging::KERNEL_VMA;
use qemu::{ExitCode, exit};

core::arch::global_asm!(include_str!("boot.s"), options(att_syntax));
// The personality routine is a lang item, which rustc keeps local; loaded crates link to it by
// name, so it must be global in nano_core.
core::arch::global_asm!(".globl rust_eh_personality");

/// Physical memory through the boot page tables (first GiB only).
struct EarlyPhys;

impl PhysMemory for EarlyPhys {
    fn bytes(&self, addr: u64, len: u64) -> Option<&[u8]> {
        let end = addr.checked_add(len)?;
        if end > 1 << 30 {
            return None;
        }
        // SAFETY: the boot tables map the first GiB at KERNEL_VMA; the range was checked to lie
        // inside it, and the loader's structures are not written while we read them.
        Some(unsafe { core::slice::from_raw_parts((KERNEL_VMA + addr) as *const u8, len as usize) })
    }
}

unsafe extern "C" {
    static __kernel_phys_start: u8;
    static __kernel_phys_end: u8;
}

/// Logs one boot stage with its duration; `make bench` parses these lines.
fn stage(name: &str, since: &mut u64) {
    let now = time::micros_since_entry();
    log::info!("boot stage {name}: {} us", now - *since);
    *since = now;
}

fn fail(what: &str, err: &dyn core::fmt::Display) -> ! {
    log::error!("{what}: {err}");
    exit(ExitCode::Failure)
}

/// Entered from boot.s in 64-bit mode on the boot stack.
#[unsafe(no_mangle)]
pub extern "C" fn nano_core_entry(magic: u32, info: u32) -> ! {
    time::mark_entry();
    serial::init();
    time::calibrate();
    let mut t = time::micros_since_entry();
    let bi: BootInfo = match boot_info::parse(magic, u64::from(info), &EarlyPhys) {
        Ok(bi) => bi,
        Err(e) => {
            logger::init(None);
            fail("bad boot information", &e)
        }
    };
    logger::init(boot_info::cmdline::get(&bi.cmdline, "log"));
    log::info!("Delos nano_core, {:?}, TSC {} kHz, command line {:?}", bi.protocol, time::tsc_per_ms(), bi.cmdline.as_str());
    stage("serial+time+bootinfo", &mut t);

    // SAFETY: linker symbols; only their addresses are used.
    let (kstart, kend) = unsafe { (&__kernel_phys_start as *const u8 as u64, &__kernel_phys_end as *const u8 as u64) };
    let phys_end = bi.memory.iter().filter(|r| r.kind == RegionKind::Available).map(|r| r.end).max().unwrap_or(0);
    let reserved = bi.reserved.iter().copied().chain(bi.modules.iter().map(|m| (m.start, m.end))).chain(core::iter::once((kstart, kend)));
    let available = bi.memory.iter().filter(|r| r.kind == RegionKind::Available).map(|r| (r.start, r.end));
    if let Err(e) = frames::FRAMES.lock().init(available, reserved) {
        fail("frame allocator", &e);
    }
    log::info!("physical memory: {} MiB usable, {}", phys_end >> 20, frames::FRAMES.lock().stats());
    stage("frames", &mut t);

    if let Err(e) = paging::init(phys_end) {
        fail("paging", &e);
    }
    stage("paging", &mut t);
    if let Err(e) = heap::init() {
        fail("heap", &e);
    }
    serial::heap_ready();
    stage("heap", &mut t);
    if let Err(e) = interrupts::init() {
        fail("interrupts", &e);
    }
    stage("idt", &mut t);

    let mods = match modules::collect(&bi, phys_end) {
        Ok(m) => m,
        Err(e) => fail("boot modules", &e),
    };
    for m in &mods {
        log::debug!("module {} ({} bytes)", m.name, m.data.len());
    }
    let objects = mods.iter().filter(|m| m.name.ends_with(".o")).count();
    let bytes: usize = mods.iter().map(|m| m.data.len()).sum();
    log::info!("boot modules: {} files ({} crate objects), {} KiB", mods.len(), objects, bytes / 1024);
    for ns in ["kernel", "applications"] {
        let prefix = alloc::format!("namespaces/{ns}/");
        let names: alloc::vec::Vec<&str> = mods.iter().filter_map(|m| m.name.strip_prefix(prefix.as_str())).collect();
        // A debug line: the lists are 2.4 KiB, 7 ms of serial output at every boot.
        log::debug!("namespace {ns}: {}", names.join(" "));
    }
    stage("modules", &mut t);

    let cmdline = bi.cmdline.as_str();
    if let Some(kind) = boot_info::cmdline::get(cmdline, "fault") {
        trigger_fault(kind);
    }
    if boot_info::cmdline::get(cmdline, "test").is_some() {
        let ok = ktests::run(&ktests::Ctx { modules: &mods, cmdline });
        exit(if ok { ExitCode::Success } else { ExitCode::Failure });
    }
    log::info!("boot took {} us", time::micros_since_entry());
    println!("nano_core ready");
    if boot_info::cmdline::get(cmdline, "poweroff").is_some() {
        exit(ExitCode::Success);
    }
    let init = match kernel::start(cmdline, mods) {
        Ok(f) => f,
        Err(e) => fail("hand-over to captain", &e),
    };
    init();
    kernel::idle_loop()
}

#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(n: u64) -> u64 {
    let buf = [n; 64];
    // black_box keeps the frame and the recursion from being optimized away.
    core::hint::black_box(&buf);
    recurse(n + 1) + core::hint::black_box(buf[3])
}

/// Deliberate faults for the fault-report tests.
fn trigger_fault(kind: &str) {
    log::warn!("triggering fault {kind:?} as requested");
    match kind {
        // SAFETY: deliberately invalid; the early IDT reports it and ends the machine.
        "pagefault" => unsafe { (0xdead_b000 as *mut u64).write_volatile(1) },
        // SAFETY: as above.
        "ud" => unsafe { core::arch::asm!("ud2") },
        // SAFETY: as above; divides by a zero register.
        "divide" => unsafe { core::arch::asm!("xor ecx, ecx", "div ecx", out("eax") _, out("edx") _, out("ecx") _) },
        "panic" => panic!("deliberate panic requested by the fault option"),
        "stack" => {
            core::hint::black_box(recurse(0));
        }
        "triple" => {
            let empty = x86_64::structures::DescriptorTablePointer { limit: 0, base: x86_64::VirtAddr::new(0) };
            // SAFETY: deliberately loads an empty IDT so the next exception triple-faults.
            unsafe {
                x86_64::instructions::tables::lidt(&empty);
                core::arch::asm!("int3");
            }
        }
        other => log::error!("unknown fault kind {other:?}; ignored"),
    }
}
