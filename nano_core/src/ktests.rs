//! In-kernel tests, run by the `test` kernel option.
//!
//! Each test returns `Ok(())` or a message; the runner prints one line per test, a summary, and
//! exits QEMU with success only if every test passed. `test_fail` adds a test that always fails,
//! so the host runner's own tests can prove that a failing in-kernel test fails the run.

use crate::frames::FRAMES;
use crate::modules::BootModule;
use crate::paging::{self, PAGE, Perms};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

type TestFn = fn(&Ctx) -> Result<(), String>;

/// What tests may look at.
pub struct Ctx<'a> {
    /// The boot modules.
    pub modules: &'a [BootModule],
    /// The kernel command line.
    pub cmdline: &'a str,
}

const TESTS: &[(&str, TestFn)] = &[
    ("frames_alloc_free", frames_alloc_free),
    ("paging_wx", paging_wx),
    ("paging_guard_pages", paging_guard_pages),
    ("owned_mappings_unmap_on_drop", owned_mappings_unmap_on_drop),
    ("kernel_sections_wx", kernel_sections_wx),
    ("heap_grows", heap_grows),
    ("sse_enabled", sse_enabled),
    ("boot_modules", boot_modules),
    ("cmdline_options", cmdline_options),
    ("triple_repairs_one_changed_copy", triple_repairs_one_changed_copy),
];

fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(msg()) }
}

fn frames_alloc_free(_: &Ctx) -> Result<(), String> {
    let before = FRAMES.lock().stats();
    let mut got = Vec::new();
    for _ in 0..256 {
        got.push(FRAMES.lock().alloc().ok_or("out of frames")?);
    }
    let mut sorted = got.clone();
    sorted.sort_unstable();
    sorted.dedup();
    ensure(sorted.len() == got.len(), || "a frame was handed out twice".into())?;
    for &f in &got {
        ensure(f % PAGE == 0, || format!("frame {f:#x} unaligned"))?;
        ensure(!FRAMES.lock().reserved_contains(f), || format!("frame {f:#x} is reserved"))?;
    }
    ensure(FRAMES.lock().stats().used == before.used + 256, || "used count wrong after alloc".into())?;
    for f in got {
        // SAFETY: allocated above and unused.
        unsafe { FRAMES.lock().free(f) };
    }
    ensure(FRAMES.lock().stats() == before, || "frames leaked".into())
}

fn paging_wx(_: &Ctx) -> Result<(), String> {
    let va = paging::alloc_region(1).map_err(|e| format!("{e}"))?;
    let frame = paging::map_new(va, Perms::ReadWrite).map_err(|e| format!("{e}"))?;
    // SAFETY: the page was just mapped RW and is used by nothing else.
    unsafe { (va as *mut u64).write_volatile(0xD310_5000) };
    // SAFETY: as above.
    let v = unsafe { (va as *const u64).read_volatile() };
    ensure(v == 0xD310_5000, || format!("read back {v:#x}"))?;
    ensure(paging::translate(va) == Some((frame, Perms::ReadWrite)), || "translate after map".into())?;
    paging::protect(va, Perms::ReadExec).map_err(|e| format!("{e}"))?;
    ensure(paging::translate(va) == Some((frame, Perms::ReadExec)), || "protect to RX".into())?;
    ensure(paging::map(va, frame, Perms::Read) == Err(paging::PagingError::AlreadyMapped(va)), || "double map accepted".into())?;
    let f = paging::unmap(va).map_err(|e| format!("{e}"))?;
    ensure(f == frame, || "unmap returned another frame".into())?;
    ensure(paging::translate(va).is_none(), || "still mapped after unmap".into())?;
    ensure(paging::unmap(va) == Err(paging::PagingError::NotMapped(va)), || "second unmap accepted".into())?;
    // SAFETY: unmapped above; the frame is ours.
    unsafe { FRAMES.lock().free(frame) };
    Ok(())
}

fn paging_guard_pages(_: &Ctx) -> Result<(), String> {
    let l = paging::kernel_layout();
    ensure(paging::translate(l.stack_guard).is_none(), || "boot stack guard page is mapped".into())?;
    ensure(paging::translate(l.stack.0).is_some(), || "boot stack not mapped".into())?;
    let s = paging::alloc_stack(2).map_err(|e| format!("{e}"))?;
    ensure(paging::translate(s.guard()).is_none(), || "new stack's guard page is mapped".into())?;
    ensure(paging::translate(0).is_none(), || "null page is mapped".into())
}

/// A `Mapping` and a `Stack` give back their pages and frames when dropped; `protect` stays
/// inside the mapping.
fn owned_mappings_unmap_on_drop(_: &Ctx) -> Result<(), String> {
    let m = paging::Mapping::new(3, Perms::ReadWrite).map_err(|e| format!("{e}"))?;
    let (start, end) = (m.start(), m.end());
    ensure(end - start == 3 * PAGE && m.pages() == 3, || format!("mapping [{start:#x}, {end:#x}) is not 3 pages"))?;
    ensure(paging::translate(end).is_none(), || "the guard page after a mapping is mapped".into())?;
    m.protect(1, 2, Perms::Read).map_err(|e| format!("{e}"))?;
    ensure(paging::translate(start + PAGE).map(|t| t.1) == Some(Perms::Read), || "protect did not change page 1".into())?;
    ensure(m.protect(2, 2, Perms::Read).is_err(), || "protect beyond the mapping was accepted".into())?;
    let s = paging::alloc_stack(2).map_err(|e| format!("{e}"))?;
    let (bottom, top) = s.range();
    // Page-table pages made for new address space stay; the 5 data frames must come back.
    let used_mapped = FRAMES.lock().stats().used;
    drop(m);
    drop(s);
    for a in (start..end).chain(bottom..top).step_by(PAGE as usize) {
        ensure(paging::translate(a).is_none(), || format!("{a:#x} still mapped after drop"))?;
    }
    let used_after = FRAMES.lock().stats().used;
    ensure(used_mapped - used_after == 5, || format!("{} frames given back on drop, want 5", used_mapped as i64 - used_after as i64))
}

fn kernel_sections_wx(_: &Ctx) -> Result<(), String> {
    let l = paging::kernel_layout();
    let here = kernel_sections_wx as TestFn as usize as u64;
    ensure((l.text.0..l.text.1).contains(&here), || "this function is not in .text".into())?;
    for (range, want) in [(l.text, Perms::ReadExec), (l.rodata, Perms::Read), (l.data, Perms::ReadWrite)] {
        for a in (range.0..range.1).step_by(PAGE as usize) {
            let got = paging::translate(a).map(|t| t.1);
            ensure(got == Some(want), || format!("{a:#x}: {got:?}, want {want:?}"))?;
        }
    }
    Ok(())
}

fn heap_grows(_: &Ctx) -> Result<(), String> {
    let before = crate::heap::stats();
    let big: Vec<u8> = alloc::vec![0x5A; 8 << 20];
    ensure(big.iter().all(|&b| b == 0x5A), || "heap memory corrupted".into())?;
    let after = crate::heap::stats();
    ensure(after.mapped > before.mapped && after.mapped >= 8 << 20, || {
        format!("heap did not grow: {} -> {}", before.mapped, after.mapped)
    })?;
    drop(big);
    ensure(crate::heap::stats().used == before.used, || "heap usage not restored".into())
}

fn sse_enabled(_: &Ctx) -> Result<(), String> {
    use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
    ensure(Cr4::read().contains(Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE), || "CR4 SSE bits off".into())?;
    ensure(!Cr0::read().contains(Cr0Flags::EMULATE_COPROCESSOR), || "CR0.EM set".into())?;
    let out: u64;
    // SAFETY: SSE2 is enabled (checked above); the instructions only touch xmm0 and a register.
    unsafe {
        core::arch::asm!("movq xmm0, {v}", "paddq xmm0, xmm0", "movq {o}, xmm0", v = in(reg) 21u64, o = out(reg) out, out("xmm0") _);
    }
    ensure(out == 42, || format!("SSE add gave {out}"))
}

fn boot_modules(c: &Ctx) -> Result<(), String> {
    ensure(!c.modules.is_empty(), || "no boot modules".into())?;
    let syms = c.modules.iter().find(|m| m.name == "nano_core.syms").ok_or("nano_core.syms missing from the image")?;
    ensure(syms.data.starts_with(b"delos-syms"), || "nano_core.syms has the wrong header".into())?;
    for ns in ["kernel", "applications"] {
        let prefix = format!("namespaces/{ns}/");
        ensure(c.modules.iter().any(|m| m.name.starts_with(&prefix) && m.data.starts_with(b"\x7fELF")), || {
            format!("no crate objects in namespace {ns}")
        })?;
    }
    Ok(())
}

fn cmdline_options(c: &Ctx) -> Result<(), String> {
    ensure(boot_info::cmdline::get(c.cmdline, "test").is_some(), || format!("`test` not found in {:?}", c.cmdline))
}

fn triple_repairs_one_changed_copy(_: &Ctx) -> Result<(), String> {
    use crate::triple::{Triple, corrupt_copy, repairs};
    let t = Triple::new(41);
    ensure(t.fetch_add(1) == Some(41) && t.load() == Some(42), || "fetch_add".into())?;
    for i in 0..3 {
        let before = repairs();
        corrupt_copy(&t, i, 42 ^ (1 << (7 * i)));
        ensure(t.load() == Some(42), || alloc::format!("copy {i} changed: the vote lost the value"))?;
        ensure(repairs() == before + 1, || alloc::format!("copy {i} changed: no repair counted"))?;
        ensure(t.load() == Some(42) && repairs() == before + 1, || alloc::format!("copy {i} was not written back"))?;
    }
    corrupt_copy(&t, 0, 1);
    corrupt_copy(&t, 1, 2);
    ensure(t.load().is_none() && t.fetch_add(1).is_none(), || "three different copies gave a value".into())
}

fn always_fails(_: &Ctx) -> Result<(), String> {
    Err("deliberate failure requested by the test_fail option".into())
}

/// Runs every test; returns whether all passed.
pub fn run(ctx: &Ctx) -> bool {
    let extra: &[(&str, TestFn)] =
        if boot_info::cmdline::get(ctx.cmdline, "test_fail").is_some() { &[("deliberate_failure", always_fails)] } else { &[] };
    let (mut passed, mut failed) = (0, 0);
    for (name, t) in TESTS.iter().chain(extra) {
        let t0 = crate::time::micros_since_entry();
        match t(ctx) {
            Ok(()) => {
                passed += 1;
                crate::println!("ktest {name} ... ok ({} us)", crate::time::micros_since_entry() - t0);
            }
            Err(e) => {
                failed += 1;
                crate::println!("ktest {name} ... FAILED: {e}");
            }
        }
    }
    crate::println!("ktest result: {passed} passed, {failed} failed");
    failed == 0
}
