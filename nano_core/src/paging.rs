//! Kernel page tables behind a small typed API that enforces W^X.
//!
//! Virtual layout (all kernel space):
//! - `0xFFFF_8000_0000_0000`: all physical memory, RW+NX, 2 MiB pages ([`phys_to_virt`]).
//! - `0xFFFF_C000_0000_0000`: the kernel heap (grows on demand, see `heap`).
//! - `0xFFFF_D000_0000_0000`: stacks, each with an unmapped guard page below it.
//! - `0xFFFF_E000_0000_0000`: pages handed out through [`alloc_region`] (loaded crates later).
//! - `0xFFFF_FFFF_8000_0000`: the kernel image, mapped section by section with its permissions.
//!
//! There is deliberately no permission value that is both writable and executable: [`Perms`]
//! has three variants, and every mapping goes through it.

use crate::frames::{FRAME, FRAMES, GlobalFrames};
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::{
    Mapper, OffsetPageTable, Page, PageTable, PageTableFlags as F, PhysFrame, Size2MiB, Size4KiB, Translate, mapper::TranslateResult,
};
use x86_64::{PhysAddr, VirtAddr};

/// Where the kernel image is linked (higher half).
pub const KERNEL_VMA: u64 = 0xFFFF_FFFF_8000_0000;
/// Where all physical memory is mapped once [`init`] has run.
pub const PHYS_MAP_BASE: u64 = 0xFFFF_8000_0000_0000;
/// Start of the heap region.
pub const HEAP_BASE: u64 = 0xFFFF_C000_0000_0000;
/// Start of the stack region.
pub const STACK_BASE: u64 = 0xFFFF_D000_0000_0000;
/// Start of the general page-allocation region.
pub const REGION_BASE: u64 = 0xFFFF_E000_0000_0000;
/// Page size.
pub const PAGE: u64 = 4096;

/// Until [`init`] switches tables, physical memory below 1 GiB is reached through the boot
/// tables' higher-half alias of the first GiB.
static PHYS_OFFSET: AtomicU64 = AtomicU64::new(KERNEL_VMA);
static MAPPER: Mutex<Option<OffsetPageTable<'static>>> = Mutex::new(None);
static NEXT_STACK: AtomicU64 = AtomicU64::new(STACK_BASE);
/// The first page of the region area is never handed out: [`REGION_BASE`] itself is a value
/// bookkeeping keeps (a range's start), and the swap's conservative reference scan would take
/// it for a pointer into whichever crate was placed there first.
static NEXT_REGION: AtomicU64 = AtomicU64::new(REGION_BASE + PAGE);

/// Page permissions: the loader's type (one enum for the whole kernel). W^X by construction:
/// nothing is both writable and executable, except code while the loader writes into it
/// ([`Perms::ReadWriteExec`], with interrupts off, for an NMI's sake).
pub use mod_mgmt::Perms;

/// The page-table flags for `p`.
fn flags_of(p: Perms) -> F {
    match p {
        Perms::ReadExec => F::PRESENT | F::GLOBAL,
        Perms::Read => F::PRESENT | F::GLOBAL | F::NO_EXECUTE,
        Perms::ReadWrite => F::PRESENT | F::GLOBAL | F::WRITABLE | F::NO_EXECUTE,
        Perms::ReadWriteExec => F::PRESENT | F::GLOBAL | F::WRITABLE,
    }
}

/// The permissions page-table flags `f` give.
fn perms_of(f: F) -> Perms {
    if f.contains(F::WRITABLE) {
        if f.contains(F::NO_EXECUTE) { Perms::ReadWrite } else { Perms::ReadWriteExec }
    } else if f.contains(F::NO_EXECUTE) {
        Perms::Read
    } else {
        Perms::ReadExec
    }
}

/// Why a paging operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PagingError {
    /// The page is already mapped.
    #[error("page {0:#x} is already mapped")]
    AlreadyMapped(u64),
    /// The page is not mapped.
    #[error("page {0:#x} is not mapped")]
    NotMapped(u64),
    /// The page is part of a huge mapping and cannot be changed alone.
    #[error("page {0:#x} is inside a huge page")]
    HugePage(u64),
    /// No physical frames left.
    #[error("out of physical frames")]
    OutOfFrames,
    /// The address is not page aligned.
    #[error("address {0:#x} is not page aligned")]
    Unaligned(u64),
    /// A virtual region ran out of address space.
    #[error("virtual region exhausted")]
    OutOfAddressSpace,
    /// Called before [`init`].
    #[error("paging is not initialized")]
    NotInitialized,
}

/// The virtual address at which physical address `phys` can be accessed.
pub fn phys_to_virt(phys: u64) -> VirtAddr {
    VirtAddr::new(PHYS_OFFSET.load(Ordering::Relaxed) + phys)
}

fn page(addr: u64) -> Result<Page<Size4KiB>, PagingError> {
    Page::from_start_address(VirtAddr::try_new(addr).map_err(|_| PagingError::Unaligned(addr))?).map_err(|_| PagingError::Unaligned(addr))
}

fn map_in(m: &mut OffsetPageTable<'static>, addr: u64, frame: u64, perms: Perms, flush: bool) -> Result<(), PagingError> {
    use x86_64::structures::paging::mapper::MapToError;
    let frame = PhysFrame::<Size4KiB>::from_start_address(PhysAddr::new(frame)).map_err(|_| PagingError::Unaligned(frame))?;
    // SAFETY: the frame is owned by the caller and not mapped elsewhere writable; the page is
    // in a kernel region reserved for this mapping.
    let r = unsafe { m.map_to(page(addr)?, frame, flags_of(perms), &mut GlobalFrames) };
    match r {
        Ok(f) if flush => f.flush(),
        Ok(f) => f.ignore(),
        Err(MapToError::PageAlreadyMapped(_)) => return Err(PagingError::AlreadyMapped(addr)),
        Err(MapToError::ParentEntryHugePage) => return Err(PagingError::HugePage(addr)),
        Err(MapToError::FrameAllocationFailed) => return Err(PagingError::OutOfFrames),
    }
    Ok(())
}

/// The CPU holding [`MAPPER`], plus one (0: free, or taken a moment ago and not recorded yet).
static MAPPER_CPU: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Whether the page tables are being changed by code this CPU interrupted: code that
/// interrupts anything (an NMI, a fault handler) must not change mappings then — the lock is a
/// spin lock, and waiting for the interrupted code would wait for ever (a watchdog NMI that
/// repaired damaged code while the interrupted task was mapping a stack hung the kernel: CI,
/// stop 32). A holder not recorded yet counts as this CPU: it may be the interrupted code,
/// between taking the lock and recording itself. Held by another CPU, the lock is simply waited
/// for: no holder waits for anything (shootdowns are sent after it is released).
pub fn held_here() -> bool {
    if !MAPPER.is_locked() {
        return false;
    }
    let holder = MAPPER_CPU.load(Ordering::Relaxed);
    holder == 0 || holder == crate::jobs::this_cpu_index() + 1
}

fn with_mapper<T>(f: impl FnOnce(&mut OffsetPageTable<'static>) -> Result<T, PagingError>) -> Result<T, PagingError> {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let mut m = MAPPER.lock();
        MAPPER_CPU.store(crate::jobs::this_cpu_index() + 1, Ordering::Relaxed);
        let r = m.as_mut().ok_or(PagingError::NotInitialized).and_then(f);
        MAPPER_CPU.store(0, Ordering::Relaxed);
        r
    })
}

/// Holds the page tables' lock for `ms` milliseconds with interrupts off: what an NMI finds
/// when it interrupts code that is changing a mapping. Fault injection only (`crash corrupt
/// SYMBOL --page-tables-held MS`).
pub fn hold_for_test(ms: u64) {
    let _ = with_mapper(|_| {
        let deadline = crate::time::micros_since_entry() + ms * 1000;
        while crate::time::micros_since_entry() < deadline {
            core::hint::spin_loop();
        }
        Ok(())
    });
}

/// Maps `addr` to `frame` with `perms`.
pub fn map(addr: u64, frame: u64, perms: Perms) -> Result<(), PagingError> {
    with_mapper(|m| map_in(m, addr, frame, perms, true))
}

/// Maps `addr` to a fresh zeroed frame with `perms`; returns the frame.
pub fn map_new(addr: u64, perms: Perms) -> Result<u64, PagingError> {
    // Interrupts off throughout: a task switch while FRAMES is locked would deadlock the next
    // task that needs a frame.
    x86_64::instructions::interrupts::without_interrupts(|| map_new_locked(addr, perms))
}

fn map_new_locked(addr: u64, perms: Perms) -> Result<u64, PagingError> {
    let frame = FRAMES.lock().alloc().ok_or(PagingError::OutOfFrames)?;
    // SAFETY: the frame was just allocated, so nothing else uses it; it is reachable through
    // the physical map.
    unsafe { core::ptr::write_bytes(phys_to_virt(frame).as_mut_ptr::<u8>(), 0, FRAME as usize) };
    map(addr, frame, perms).inspect_err(|_| {
        // SAFETY: the mapping failed, so the frame is still unused and ours to return.
        unsafe { FRAMES.lock().free(frame) }
    })?;
    Ok(frame)
}

/// Unmaps `addr`; returns the frame it was mapped to (the caller decides whether to free it).
/// The other CPUs have dropped their translations of it when this returns (outside a
/// [`crate::tlb::batch`]; inside one, when the batch ends — free the frame after that).
pub fn unmap(addr: u64) -> Result<u64, PagingError> {
    use x86_64::structures::paging::mapper::UnmapError;
    let frame = with_mapper(|m| match m.unmap(page(addr)?) {
        Ok((frame, flush)) => {
            flush.flush();
            Ok(frame.start_address().as_u64())
        }
        Err(UnmapError::ParentEntryHugePage) => Err(PagingError::HugePage(addr)),
        Err(_) => Err(PagingError::NotMapped(addr)),
    })?;
    crate::tlb::changed();
    Ok(frame)
}

/// Changes the permissions of the mapped page `addr`. One that takes a permission away (write
/// or execute) is done, as an [`unmap`] is, when the other CPUs dropped their translations;
/// one that only adds permissions sends no shootdown: an old translation allows less, and a
/// CPU that uses it takes a spurious page fault (the architecture's rule) — which no parked CPU
/// can today, since its jobs never write where the loader changes permissions; CPUs that run
/// tasks will need their fault handler to retry such a fault.
pub fn protect(addr: u64, perms: Perms) -> Result<(), PagingError> {
    use x86_64::structures::paging::mapper::FlagUpdateError;
    let taken_away = with_mapper(|m| {
        let p = page(addr)?;
        let old = match m.translate(p.start_address()) {
            TranslateResult::Mapped { flags, .. } => flags,
            _ => return Err(PagingError::NotMapped(addr)),
        };
        let new = flags_of(perms);
        // SAFETY: changing the flags of a kernel page the caller owns; W^X holds by `Perms`.
        match unsafe { m.update_flags(p, new) } {
            Ok(f) => {
                f.flush();
                Ok(old.contains(F::WRITABLE) && !new.contains(F::WRITABLE) || !old.contains(F::NO_EXECUTE) && new.contains(F::NO_EXECUTE))
            }
            Err(FlagUpdateError::ParentEntryHugePage) => Err(PagingError::HugePage(addr)),
            Err(FlagUpdateError::PageNotMapped) => Err(PagingError::NotMapped(addr)),
        }
    })?;
    if taken_away {
        crate::tlb::changed();
    }
    Ok(())
}

/// [`protect`] for `pages` pages from `start`, with one round of shootdowns at the end.
pub fn protect_range(start: u64, pages: u64, perms: Perms) -> Result<(), PagingError> {
    crate::tlb::batch(|| (0..pages).try_for_each(|i| protect(start + i * PAGE, perms)))
}

/// The physical address and permissions `addr` is mapped with, if it is mapped.
pub fn translate(addr: u64) -> Option<(u64, Perms)> {
    let addr = VirtAddr::try_new(addr).ok()?;
    with_mapper(|m| match m.translate(addr) {
        TranslateResult::Mapped { frame, offset, flags } => Ok(Some((frame.start_address().as_u64() + offset, perms_of(flags)))),
        _ => Ok(None),
    })
    .ok()
    .flatten()
}

/// Pages of kernel address space, each mapped to a zeroed frame of its own, and owned:
/// dropping a `Mapping` unmaps its pages and frees their frames. The one way for code outside
/// the loader to get page-granular memory (task and interrupt stacks, tlibc's `mmap`), so that
/// no caller maps or frees frames itself.
#[derive(Debug)]
pub struct Mapping {
    start: u64,
    /// Pages mapped so far (all of `reserved` once construction succeeded).
    mapped: u64,
    /// Pages of address space it was given.
    reserved: u64,
    kind: MappingKind,
}

/// Where a mapping's address space came from, and where it goes back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MappingKind {
    /// The general region (bump-allocated, not reused).
    Region,
    /// The stack region: the range is noted for the next stack of this size.
    Stack,
}

impl Mapping {
    /// `pages` fresh zeroed pages with `perms` in the general region, followed by an unmapped
    /// guard page.
    pub fn new(pages: u64, perms: Perms) -> Result<Mapping, PagingError> {
        Mapping::map_fresh(alloc_region(pages)?, pages, perms, MappingKind::Region)
    }

    fn map_fresh(start: u64, pages: u64, perms: Perms, kind: MappingKind) -> Result<Mapping, PagingError> {
        // On an error, dropping `m` unmaps what was mapped.
        let mut m = Mapping { start, mapped: 0, reserved: pages, kind };
        for i in 0..pages {
            map_new(start + i * PAGE, perms)?;
            m.mapped = i + 1;
        }
        Ok(m)
    }

    /// First address.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// One past the last address.
    pub fn end(&self) -> u64 {
        self.start + self.mapped * PAGE
    }

    /// Number of pages.
    pub fn pages(&self) -> u64 {
        self.mapped
    }

    /// Changes the permissions of `pages` pages starting at page `first` of the mapping.
    pub fn protect(&self, first: u64, pages: u64, perms: Perms) -> Result<(), PagingError> {
        first.checked_add(pages).filter(|&e| e <= self.mapped).ok_or(PagingError::NotMapped(self.start + first * PAGE))?;
        protect_range(self.start + first * PAGE, pages, perms)
    }

    /// Keeps the pages mapped for the rest of the kernel's life (stacks the CPU is given, such
    /// as the interrupt stacks of the TSS); returns `[start, end)`.
    pub fn leak(self) -> (u64, u64) {
        let range = (self.start, self.end());
        core::mem::forget(self);
        range
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // Interrupts off throughout: a task switch while FRAMES is locked would deadlock the
        // next task that needs a frame.
        x86_64::instructions::interrupts::without_interrupts(|| {
            // The pages were this mapping's own; whoever owned it gave it up by dropping it.
            unmap_and_free(self.start, self.mapped);
            if self.kind == MappingKind::Stack {
                // Keep the address range for the next stack of this size (if there is room to
                // note it; otherwise the range is simply not used again).
                let mut free = FREE_STACKS.lock();
                if let Some(slot) = free.iter_mut().find(|s| s.is_none()) {
                    *slot = Some((self.start, self.reserved));
                }
            }
        })
    }
}

/// Unmaps `pages` pages from `start` and frees the frames behind them (pages not mapped are
/// skipped). For owners of memory that nobody uses any more: a dropped [`Mapping`], a region
/// the loader or the JIT gave back.
pub(crate) fn unmap_and_free(start: u64, pages: u64) {
    /// Pages unmapped per round of shootdowns: their frames are freed only after it, when no
    /// CPU can reach them through an old translation.
    const CHUNK: u64 = 64;
    let mut first = 0;
    while first < pages {
        let n = CHUNK.min(pages - first);
        let mut frames = [0u64; CHUNK as usize];
        crate::tlb::batch(|| {
            for (i, slot) in frames.iter_mut().enumerate().take(n as usize) {
                *slot = unmap(start + (first + i as u64) * PAGE).unwrap_or(0);
            }
        });
        // Inside an outer batch (a loader operation) the round is still owed: sent now.
        crate::tlb::sync();
        // Interrupts off: a task switch while FRAMES is locked would deadlock the next task that
        // needs a frame.
        x86_64::instructions::interrupts::without_interrupts(|| {
            for &frame in frames.iter().take(n as usize).filter(|&&f| f != 0) {
                // SAFETY: the caller owned the page and gives it up; it is unmapped, and the
                // round just sent made every CPU drop its translation, so nothing can reach its
                // frame. (Frame 0 is never handed out: it marks a page not mapped.)
                unsafe { FRAMES.lock().free(frame) };
            }
        });
        first += n;
    }
}

/// A stack: `[bottom, top)` is mapped RW; the page below `bottom` is an unmapped guard. Owned:
/// dropping it unmaps it (see [`Mapping`]), so nothing may run on it or point into it then.
#[derive(Debug)]
pub struct Stack {
    /// Lowest mapped address.
    pub bottom: u64,
    /// One past the highest mapped address (the initial stack pointer).
    pub top: u64,
    mapping: Mapping,
}

impl Stack {
    /// The guard page's address.
    pub fn guard(&self) -> u64 {
        self.bottom - PAGE
    }

    /// `[bottom, top)`.
    pub fn range(&self) -> (u64, u64) {
        (self.bottom, self.top)
    }

    /// Keeps the stack for the rest of the kernel's life (an interrupt stack); returns its top.
    pub fn leak(self) -> u64 {
        self.mapping.leak().1
    }
}

/// Maps a new stack of `pages` pages with a guard page below it.
pub fn alloc_stack(pages: u64) -> Result<Stack, PagingError> {
    // A freed stack's range of the same size first: its page tables are still there, so a
    // kernel that starts tasks forever does not grow page tables forever (fresh address space
    // needs a new page-table page every 2 MiB).
    let reused = x86_64::instructions::interrupts::without_interrupts(|| {
        let mut free = FREE_STACKS.lock();
        let i = free.iter().position(|s| s.is_some_and(|(_, p)| p == pages))?;
        free[i].take().map(|(bottom, _)| bottom)
    });
    let bottom = match reused {
        Some(b) => b,
        None => NEXT_STACK.fetch_add((pages + 1) * PAGE, Ordering::Relaxed) + PAGE,
    };
    let mapping = Mapping::map_fresh(bottom, pages, Perms::ReadWrite, MappingKind::Stack)?;
    Ok(Stack { bottom, top: bottom + pages * PAGE, mapping })
}

/// Address ranges of freed stacks, as (bottom, pages), for reuse by [`alloc_stack`]. Fixed-size
/// so that freeing a stack never allocates.
static FREE_STACKS: Mutex<[Option<(u64, u64)>; 64]> = Mutex::new([None; 64]);

/// Reserves `pages` pages of address space in the general region (not mapped yet), followed by
/// an unmapped guard page.
pub fn alloc_region(pages: u64) -> Result<u64, PagingError> {
    let size = pages.checked_add(1).and_then(|p| p.checked_mul(PAGE)).ok_or(PagingError::OutOfAddressSpace)?;
    let start = NEXT_REGION.fetch_add(size, Ordering::Relaxed);
    if start.checked_add(size).is_none() || start < REGION_BASE {
        return Err(PagingError::OutOfAddressSpace);
    }
    Ok(start)
}

unsafe extern "C" {
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __data_start: u8;
    static __data_end: u8;
    static __stack_guard: u8;
    static __stack_bottom: u8;
    static __stack_top: u8;
}

/// Addresses of the kernel image's parts, from the linker script.
#[derive(Debug, Clone, Copy)]
pub struct KernelLayout {
    /// Code.
    pub text: (u64, u64),
    /// Constants, `.eh_frame`, `.gcc_except_table`.
    pub rodata: (u64, u64),
    /// Data and bss.
    pub data: (u64, u64),
    /// The boot stack's guard page.
    pub stack_guard: u64,
    /// The boot stack.
    pub stack: (u64, u64),
}

/// The kernel image's layout.
pub fn kernel_layout() -> KernelLayout {
    // Only the addresses of linker symbols are taken, never their contents.
    let a = |s: &u8| s as *const u8 as u64;
    // SAFETY: taking the address of an extern static does not read it.
    unsafe {
        KernelLayout {
            text: (a(&__text_start), a(&__text_end)),
            rodata: (a(&__rodata_start), a(&__rodata_end)),
            data: (a(&__data_start), a(&__data_end)),
            stack_guard: a(&__stack_guard),
            stack: (a(&__stack_bottom), a(&__stack_top)),
        }
    }
}

/// Builds the kernel's own page tables (image with per-section permissions, guard page left out,
/// all of physical memory up to `phys_end` at [`PHYS_MAP_BASE`]) and switches to them.
pub fn init(phys_end: u64) -> Result<(), PagingError> {
    let p4 = FRAMES.lock().alloc().ok_or(PagingError::OutOfFrames)?;
    let p4_virt = phys_to_virt(p4);
    // SAFETY: p4 is a fresh frame below 1 GiB, reachable through the boot alias; it is zeroed
    // before use as a page table and not referenced anywhere else.
    let table: &'static mut PageTable = unsafe {
        core::ptr::write_bytes(p4_virt.as_mut_ptr::<u8>(), 0, FRAME as usize);
        &mut *p4_virt.as_mut_ptr::<PageTable>()
    };
    // SAFETY: the boot tables map all frames the allocator hands out (it is limited to 1 GiB)
    // at KERNEL_VMA + phys, which is the offset given.
    let mut m = unsafe { OffsetPageTable::new(table, VirtAddr::new(KERNEL_VMA)) };
    let l = kernel_layout();
    let mut map_range = |(s, e): (u64, u64), perms: Perms| -> Result<(), PagingError> {
        for v in (s..e).step_by(PAGE as usize) {
            map_in(&mut m, v, v - KERNEL_VMA, perms, false)?;
        }
        Ok(())
    };
    map_range(l.text, Perms::ReadExec)?;
    map_range(l.rodata, Perms::Read)?;
    map_range(l.data, Perms::ReadWrite)?;
    map_range(l.stack, Perms::ReadWrite)?;
    let huge = 2 << 20;
    for p in (0..phys_end.div_ceil(huge) * huge).step_by(huge as usize) {
        let page = Page::<Size2MiB>::containing_address(VirtAddr::new(PHYS_MAP_BASE + p));
        let frame = PhysFrame::<Size2MiB>::containing_address(PhysAddr::new(p));
        // SAFETY: the physical map aliases RAM as data only (NX), in a region nothing else uses.
        unsafe { m.map_to(page, frame, F::PRESENT | F::WRITABLE | F::NO_EXECUTE | F::GLOBAL, &mut GlobalFrames) }
            .map_err(|_| PagingError::OutOfFrames)?
            .ignore();
    }
    // SAFETY: the new tables map everything the kernel touches from here on (its image, stack,
    // and physical memory); the identity map of low memory is dropped on purpose.
    unsafe { Cr3::write(PhysFrame::containing_address(PhysAddr::new(p4)), Cr3Flags::empty()) };
    PHYS_OFFSET.store(PHYS_MAP_BASE, Ordering::Relaxed);
    // SAFETY: the active tables now map all physical memory at PHYS_MAP_BASE.
    let table: &'static mut PageTable = unsafe { &mut *phys_to_virt(p4).as_mut_ptr::<PageTable>() };
    // SAFETY: as above; this is the only OffsetPageTable over the active P4.
    *MAPPER.lock() = Some(unsafe { OffsetPageTable::new(table, VirtAddr::new(PHYS_MAP_BASE)) });
    FRAMES.lock().lift_limit();
    Ok(())
}
