//! The kernel heap: a linked-list allocator over a virtual region that grows on demand.
//!
//! It starts with [`INITIAL`] bytes mapped at `paging::HEAP_BASE`; when an allocation does not
//! fit, the heap maps more pages at its end (at least [`GROW_MIN`]) and retries.

use crate::paging::{self, HEAP_BASE, PAGE, Perms};
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};
use linked_list_allocator::Heap;
use spin::Mutex;

const INITIAL: u64 = 1 << 20;
const GROW_MIN: u64 = 1 << 20;
/// The heap never grows past this (1 TiB of address space is reserved for it).
const MAX: u64 = 1 << 40;

struct GrowingHeap {
    heap: Mutex<Heap>,
    mapped: AtomicU64,
}

#[global_allocator]
static HEAP: GrowingHeap = GrowingHeap { heap: Mutex::new(Heap::empty()), mapped: AtomicU64::new(0) };

/// Heap usage, for `mem` and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes mapped for the heap.
    pub mapped: u64,
    /// Bytes currently allocated.
    pub used: u64,
}

/// Why the heap could not be set up or grown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("kernel heap: {0}")]
pub struct HeapError(#[from] paging::PagingError);

fn map_more(heap: &mut Heap, mapped: &AtomicU64, bytes: u64) -> Result<(), HeapError> {
    let cur = mapped.load(Ordering::Relaxed);
    let bytes = bytes.div_ceil(PAGE) * PAGE;
    if cur + bytes > MAX {
        return Err(HeapError(paging::PagingError::OutOfAddressSpace));
    }
    for off in (0..bytes).step_by(PAGE as usize) {
        paging::map_new(HEAP_BASE + cur + off, Perms::ReadWrite)?;
    }
    mapped.store(cur + bytes, Ordering::Relaxed);
    if cur == 0 {
        // SAFETY: the range was just mapped RW and is used by nothing else.
        unsafe { heap.init(HEAP_BASE as *mut u8, bytes as usize) };
    } else {
        // SAFETY: the new pages directly follow the heap's current end.
        unsafe { heap.extend(bytes as usize) };
    }
    Ok(())
}

/// Maps the initial heap. Needs paging.
pub fn init() -> Result<(), HeapError> {
    x86_64::instructions::interrupts::without_interrupts(|| map_more(&mut HEAP.heap.lock(), &HEAP.mapped, INITIAL))
}

/// Current usage.
pub fn stats() -> HeapStats {
    x86_64::instructions::interrupts::without_interrupts(|| HeapStats {
        mapped: HEAP.mapped.load(Ordering::Relaxed),
        used: HEAP.heap.lock().used() as u64,
    })
}

// SAFETY: allocation and deallocation go through `linked_list_allocator::Heap`, which returns
// non-overlapping blocks of at least the requested layout; the lock serializes access, and
// interrupts are off while it is held so a handler on this CPU cannot deadlock on it.
unsafe impl GlobalAlloc for GrowingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        x86_64::instructions::interrupts::without_interrupts(|| {
            let mut heap = self.heap.lock();
            if let Ok(p) = heap.allocate_first_fit(layout) {
                return p.as_ptr();
            }
            let want = (layout.size() as u64 + layout.align() as u64 + PAGE).max(GROW_MIN);
            if map_more(&mut heap, &self.mapped, want).is_err() {
                return core::ptr::null_mut();
            }
            heap.allocate_first_fit(layout).map_or(core::ptr::null_mut(), |p| p.as_ptr())
        })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: `ptr` came from `alloc` with this layout (GlobalAlloc contract).
            x86_64::instructions::interrupts::without_interrupts(|| unsafe { self.heap.lock().deallocate(p, layout) })
        }
    }
}
