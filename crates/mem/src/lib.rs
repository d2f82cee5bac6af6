//! `mem`: physical frames and kernel heap in use, and the memory retired crate versions keep.
#![no_std]
#![forbid(unsafe_code)]

/// One line for `help`.
pub static DESCRIPTION: &str = "physical frames, heap, and memory of retired crate versions";

/// Entry point.
pub fn main(_args: &[&str]) -> isize {
    let f = nano_core::frames::stats();
    let h = nano_core::heap::stats();
    let (retired, bytes, loaded) = nano_core::kernel::with_loader_ref(|l| {
        let r = l.retired();
        let retired_bytes = r.iter().map(|r| r.bytes).sum::<u64>();
        (r.len(), retired_bytes, l.region_bytes() as u64 - retired_bytes)
    });
    nano_core::println!("frames: {} used of {} ({} KiB used, {} KiB free)", f.used, f.total, f.used * 4, (f.total - f.used) * 4);
    nano_core::println!(
        "heap:   {} KiB used of {} KiB mapped ({} KiB of it loader metadata)",
        h.used / 1024,
        h.mapped / 1024,
        h.metadata_used / 1024
    );
    nano_core::println!("crates: {} KiB mapped for loaded crates; {retired} retired versions keep {} KiB", loaded / 1024, bytes / 1024);
    let (ranges, pages) = nano_core::kmem::KERNEL_MEMORY.free_ranges();
    let (p_ranges, p_pages) = nano_core::kmem::PROGRAM_MEMORY.free_ranges();
    nano_core::println!(
        "address space: {ranges} freed ranges ({} KiB) kept for reuse by crates, {p_ranges} ({} KiB) by programs",
        pages * 4,
        p_pages * 4
    );
    let (objects, hashed, us) = nano_core::trust::stats();
    let (ahead, waited) = nano_core::trust::ahead_stats();
    let (idle, finished) = nano_core::trust::idle_stats();
    nano_core::println!(
        "signatures: {objects} objects ({} KiB) checked against the signed manifest in {us} us; {ahead} of them hashed ahead by parked CPUs (waited {waited} us for them), {} taken over from an abandoned job; {idle} hashed ahead by the idle loop, {finished} begun there and finished by the loader",
        hashed / 1024,
        nano_core::trust::taken_over()
    );
    0
}
