//! The kernel heaps: two `talc` allocators (binned free lists: allocation and free cost the same
//! however fragmented the heap is — the linked-list first-fit allocator used before spent 80% of
//! a large crate's swap walking its hole list) over virtual regions that grow on demand.
//!
//! - The **general heap** holds what tasks and crates allocate. A live swap reclaims an old
//!   crate version only when no word of this heap (and of stacks and data) points into it, so
//!   freed blocks are zeroed: a stale pointer in freed memory must not keep old code alive.
//! - The **metadata heap** holds the loader's own bookkeeping (sections, symbol maps, the
//!   address index, debug-info caches): descriptions of code, full of code addresses, that are
//!   never references anyone follows. Allocations made inside [`metadata`] (which
//!   `kernel::with_loader` uses) come from it, and the swap's reference scan skips it.
//!
//! Each starts with [`INITIAL`] bytes mapped; when an allocation does not fit, the heap maps
//! more pages at its end (at least [`GROW_MIN`]) and retries. Frees go to the heap the address
//! belongs to.

use crate::paging::{self, HEAP_BASE, PAGE, Perms};
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use spin::Mutex;
use talc::base::Talc;
use talc::base::binning::DefaultBinning;
use talc::source::Manual;

/// One heap's allocator and where its memory ends.
struct Heap {
    talc: Talc<Manual, DefaultBinning>,
    end: Option<NonNull<u8>>,
}

// SAFETY: the allocator's pointers refer to the heap's own mapped region; it is only used
// under its heap's lock.
unsafe impl Send for Heap {}

const INITIAL: u64 = 1 << 20;
const GROW_MIN: u64 = 1 << 20;
/// Neither heap grows past this (1 TiB of address space is reserved for each).
const MAX: u64 = 1 << 40;
/// Where the metadata heap starts (4 TiB above the general heap).
pub const METADATA_BASE: u64 = HEAP_BASE + (4 << 40);

struct GrowingHeap {
    base: u64,
    heap: Mutex<Heap>,
    mapped: AtomicU64,
    used: AtomicU64,
    /// The CPU whose code of this module holds `heap`, plus one; 0 while none does (see
    /// [`GrowingHeap::lock`]).
    held_by: AtomicUsize,
    /// Set while code of this module spins for `heap`.
    waiting: AtomicBool,
}

struct Heaps {
    general: GrowingHeap,
    metadata: GrowingHeap,
}

/// Per CPU index: nesting depth of [`metadata`] there (interrupts are off inside it, so the
/// task inside stays on that CPU). Every CPU that runs tasks may use the loader.
static METADATA_DEPTH: [AtomicUsize; crate::kernel::MAX_CPUS] = [const { AtomicUsize::new(0) }; crate::kernel::MAX_CPUS];
/// The sum of [`METADATA_DEPTH`]: while it is 0 — nearly always — an allocation need not ask
/// which CPU it runs on (an MSR read).
static METADATA_ANY: AtomicUsize = AtomicUsize::new(0);

#[global_allocator]
static HEAPS: Heaps = Heaps { general: GrowingHeap::new(HEAP_BASE), metadata: GrowingHeap::new(METADATA_BASE) };

/// Heap usage, for `mem` and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes mapped for both heaps.
    pub mapped: u64,
    /// Bytes currently allocated in both heaps.
    pub used: u64,
    /// Of `used`, bytes of loader bookkeeping (the metadata heap).
    pub metadata_used: u64,
}

/// Why a heap could not be set up or grown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("kernel heap: {0}")]
pub struct HeapError(#[from] paging::PagingError);

impl GrowingHeap {
    const fn new(base: u64) -> GrowingHeap {
        GrowingHeap {
            base,
            heap: Mutex::new(Heap { talc: Talc::new(Manual), end: None }),
            mapped: AtomicU64::new(0),
            used: AtomicU64::new(0),
            held_by: AtomicUsize::new(0),
            waiting: AtomicBool::new(false),
        }
    }

    /// Takes the heap's lock, marking it held (and, while it spins, waited for): so that a lock
    /// whose word says held while no code holds it — overwritten by a wild store of damaged
    /// code, seen in the fault campaign — can be told from a real holder
    /// ([`release_if_overwritten`]).
    fn lock(&self) -> HeapGuard<'_> {
        loop {
            if let Some(guard) = self.heap.try_lock() {
                self.held_by.store(crate::jobs::this_cpu_index() + 1, Ordering::Relaxed);
                self.waiting.store(false, Ordering::Relaxed);
                return HeapGuard { heap: self, guard };
            }
            self.waiting.store(true, Ordering::Relaxed);
            core::hint::spin_loop();
        }
    }

    fn map_more(&self, heap: &mut Heap, bytes: u64) -> Result<(), HeapError> {
        let cur = self.mapped.load(Ordering::Relaxed);
        let bytes = bytes.div_ceil(PAGE) * PAGE;
        if cur + bytes > MAX {
            return Err(HeapError(paging::PagingError::OutOfAddressSpace));
        }
        for off in (0..bytes).step_by(PAGE as usize) {
            if let Err(e) = paging::map_new(self.base + cur + off, Perms::ReadWrite) {
                // Out of frames midway: give back what this growth mapped (the heap would
                // otherwise keep frames it never uses).
                for undo in (0..off).step_by(PAGE as usize) {
                    if let Ok(frame) = paging::unmap(self.base + cur + undo) {
                        // SAFETY: the frame was mapped just above and never handed out.
                        unsafe { crate::frames::FRAMES.lock().free(frame) };
                    }
                }
                return Err(e.into());
            }
        }
        self.mapped.store(cur + bytes, Ordering::Relaxed);
        let new_end = (self.base + cur + bytes) as *mut u8;
        heap.end = match heap.end {
            // SAFETY: the range was just mapped RW and is used by nothing else.
            None => unsafe { heap.talc.claim(self.base as *mut u8, bytes as usize) },
            // SAFETY: the new pages directly follow the heap's current end.
            Some(end) => Some(unsafe { heap.talc.extend(end, new_end) }),
        };
        heap.end.map(|_| ()).ok_or(HeapError(paging::PagingError::OutOfAddressSpace))
    }

    fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr < self.base + self.mapped.load(Ordering::Relaxed)
    }

    /// Whether `[addr, addr + size)` lies in this heap's mapped range, aligned as `layout` says:
    /// what every block this heap handed out satisfies.
    fn holds_block(&self, addr: u64, layout: Layout) -> bool {
        let end = self.base + self.mapped.load(Ordering::Relaxed);
        addr >= self.base && addr.is_multiple_of(layout.align() as u64) && addr.checked_add(layout.size() as u64).is_some_and(|e| e <= end)
    }

    fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut heap = self.lock();
        // SAFETY: `GlobalAlloc` callers never ask for zero bytes.
        let p = match unsafe { heap.talc.try_allocate(layout) } {
            Some(p) => p,
            None => {
                let want = (layout.size() as u64 + layout.align() as u64 + PAGE).max(GROW_MIN);
                if self.map_more(&mut heap, want).is_err() {
                    return core::ptr::null_mut();
                }
                // SAFETY: as above.
                match unsafe { heap.talc.try_allocate(layout) } {
                    Some(p) => p,
                    None => return core::ptr::null_mut(),
                }
            }
        };
        self.used.fetch_add(layout.size() as u64, Ordering::Relaxed);
        p.as_ptr()
    }

    /// Frees a block of this heap.
    ///
    /// # Safety
    /// `ptr` came from this heap's `alloc` with `layout` and is not used any more.
    unsafe fn free(&self, ptr: *mut u8, layout: Layout) {
        self.used.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: by this function's contract.
        unsafe { self.lock().talc.deallocate(ptr, layout) }
    }
}

/// Maps the initial heaps. Needs paging.
pub fn init() -> Result<(), HeapError> {
    x86_64::instructions::interrupts::without_interrupts(|| {
        for h in [&HEAPS.general, &HEAPS.metadata] {
            h.map_more(&mut h.lock(), INITIAL)?;
        }
        Ok(())
    })
}

/// Runs `f` with interrupts off, allocating from the metadata heap (see the module docs): for
/// the loader's bookkeeping and caches derived from it, never for anything code follows.
pub fn metadata<T>(f: impl FnOnce() -> T) -> T {
    /// Leaves the metadata heap even when `f` panics and unwinds.
    struct Depth(usize);
    impl Drop for Depth {
        fn drop(&mut self) {
            METADATA_DEPTH[self.0].fetch_sub(1, Ordering::Relaxed);
            METADATA_ANY.fetch_sub(1, Ordering::Relaxed);
        }
    }
    x86_64::instructions::interrupts::without_interrupts(|| {
        let me = crate::jobs::this_cpu_index();
        METADATA_ANY.fetch_add(1, Ordering::Relaxed);
        METADATA_DEPTH[me].fetch_add(1, Ordering::Relaxed);
        let _depth = Depth(me);
        f()
    })
}

/// Called when a task ends: no task can be switched away inside [`metadata`] (interrupts are
/// off there), so a non-zero depth means a task died inside it without unwinding. Resets it
/// and says whether it had to.
pub fn leave_metadata_if_dead() -> bool {
    // This CPU's depth only: a task on another CPU may be inside `metadata` right now (before
    // 2026-12-07 a task ending on an AP reset the boot CPU's depth under its loader call).
    let left = METADATA_DEPTH[crate::jobs::this_cpu_index()].swap(0, Ordering::Relaxed);
    METADATA_ANY.fetch_sub(left, Ordering::Relaxed);
    left != 0
}

/// A heap's lock as [`GrowingHeap::lock`] took it: clears the held mark before the lock goes.
struct HeapGuard<'h> {
    heap: &'h GrowingHeap,
    guard: spin::MutexGuard<'h, Heap>,
}

impl core::ops::Deref for HeapGuard<'_> {
    type Target = Heap;
    fn deref(&self) -> &Heap {
        &self.guard
    }
}

impl core::ops::DerefMut for HeapGuard<'_> {
    fn deref_mut(&mut self) -> &mut Heap {
        &mut self.guard
    }
}

impl Drop for HeapGuard<'_> {
    fn drop(&mut self) {
        // Before the field `guard` unlocks, after this.
        self.heap.held_by.store(0, Ordering::Relaxed);
    }
}

/// For the watchdog's hang handler, which interrupted code that spins for a heap's lock: if the
/// lock's word says held but no code of this module holds it, the word was overwritten (a wild
/// store of damaged code: the fault campaign saw one turn every later allocation into a hang,
/// and the kernel halted); it is unlocked, and the spinning code goes on. Returns whether it
/// did. On one CPU with interrupts off around every use of a heap, code spinning for a lock
/// that a holder took through [`GrowingHeap::lock`] can only be nested above that holder (it
/// never gets the lock; the held mark tells the two apart), and nothing is between taking the
/// lock and marking it held but straight-line code that does not spin.
pub fn release_if_overwritten() -> bool {
    let mut released = false;
    for h in [&HEAPS.general, &HEAPS.metadata] {
        if h.heap.is_locked() && h.waiting.load(Ordering::Relaxed) && h.held_by.load(Ordering::Relaxed) == 0 {
            // SAFETY: no code holds the lock (see above): its word was overwritten, and no guard
            // of it exists to be dropped later.
            unsafe { h.heap.force_unlock() };
            released = true;
        }
    }
    released
}

/// For `crash heap-lock`: leaves the general heap's lock held by no code, as a wild store over
/// its word would. The next allocation spins until the watchdog releases it.
pub fn inject_overwritten_lock() {
    core::mem::forget(HEAPS.general.heap.lock());
}

/// Whether either heap's lock is held by code this CPU interrupted: code that interrupts
/// anything (an NMI, a fault handler) must not allocate then — it would wait for ever. A lock
/// held with no holder recorded counts as held here (the interrupted code may be between
/// taking it and recording itself, or the word was overwritten). A heap held by another CPU is
/// simply waited for.
pub fn held_here() -> bool {
    let me = crate::jobs::this_cpu_index() + 1;
    [&HEAPS.general, &HEAPS.metadata].iter().any(|h| {
        let by = h.held_by.load(Ordering::Relaxed);
        h.heap.is_locked() && (by == 0 || by == me)
    })
}

/// Frees refused because the pointer was no block of either heap (see [`refuse_free`]).
static REFUSED_FREES: AtomicU64 = AtomicU64::new(0);

/// A free of something that is no heap block — outside both heaps' mapped ranges, or not
/// aligned as its layout says — is refused, and reported: only damaged code frees such a
/// pointer (the fault campaign: a flipped `ret` ran on into the next function, which dropped a
/// string made of garbage), and handing it to the allocator wrote its free-list links into
/// whatever the pointer named; the heap's own bookkeeping broke, the next allocation faulted
/// with the heap's lock held, and the kernel halted. Refused, the block (if it was one) leaks.
fn refuse_free(addr: u64, layout: Layout) {
    let n = REFUSED_FREES.fetch_add(1, Ordering::Relaxed) + 1;
    crate::serial::emergency_write(format_args!(
        "\n!!! heap: a free of {addr:#x} ({} bytes, align {}) is no block of the kernel's heaps: refused ({n} since boot)\n",
        layout.size(),
        layout.align()
    ));
}

/// Frees refused since boot (see [`refuse_free`]).
pub fn refused_frees() -> u64 {
    REFUSED_FREES.load(Ordering::Relaxed)
}

/// Current usage.
pub fn stats() -> HeapStats {
    let meta = HEAPS.metadata.used.load(Ordering::Relaxed);
    HeapStats {
        mapped: HEAPS.general.mapped.load(Ordering::Relaxed) + HEAPS.metadata.mapped.load(Ordering::Relaxed),
        used: HEAPS.general.used.load(Ordering::Relaxed) + meta,
        metadata_used: meta,
    }
}

/// The general heap's mapped range `[start, end)` (what a reference scan reads).
pub fn general_range() -> (u64, u64) {
    (HEAP_BASE, HEAP_BASE + HEAPS.general.mapped.load(Ordering::Relaxed))
}

// SAFETY: allocation and deallocation go through `linked_list_allocator::Heap`, which returns
// non-overlapping blocks of at least the requested layout; each heap's lock serializes access,
// and interrupts are off while it is held so a handler on this CPU cannot deadlock on it. A
// block is freed into the heap whose range contains it.
unsafe impl GlobalAlloc for Heaps {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        x86_64::instructions::interrupts::without_interrupts(|| {
            // The depth is per CPU: a job on another CPU that allocates meanwhile (a compile
            // helper) takes from the general heap. The CPU is asked only while some CPU is
            // inside `metadata`, where its cost does not matter.
            if METADATA_ANY.load(Ordering::Relaxed) > 0 && METADATA_DEPTH[crate::jobs::this_cpu_index()].load(Ordering::Relaxed) > 0 {
                self.metadata.alloc(layout)
            } else {
                self.general.alloc(layout)
            }
        })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ptr.is_null() {
            return;
        }
        if !self.metadata.holds_block(ptr as u64, layout) && !self.general.holds_block(ptr as u64, layout) {
            refuse_free(ptr as u64, layout);
            return;
        }
        x86_64::instructions::interrupts::without_interrupts(|| {
            if self.metadata.contains(ptr as u64) {
                // SAFETY: `ptr` came from this heap's `alloc` with this layout.
                unsafe { self.metadata.free(ptr, layout) }
            } else {
                // SAFETY: the block is ours until it is freed below; zeroing it keeps stale
                // pointers out of the memory the swap's reference scan reads.
                unsafe { ptr.write_bytes(0, layout.size()) };
                // SAFETY: `ptr` came from the general heap's `alloc` with this layout.
                unsafe { self.general.free(ptr, layout) }
            }
        })
    }
}
