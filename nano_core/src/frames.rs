//! The physical frame allocator.
//!
//! Built from the boot memory map minus every reserved range (the kernel image, the boot
//! loader's structures, the boot modules, and the first MiB). Frames are handed out lowest
//! first from the available regions; freed frames go on an intrusive free list stored in the
//! frames themselves (through the physical-memory map), so the allocator never needs the heap.

use arrayvec::ArrayVec;
use core::fmt;
use spin::Mutex;
use x86_64::PhysAddr;
use x86_64::structures::paging::{FrameAllocator, FrameDeallocator, PhysFrame, Size4KiB};

/// Frame size.
pub const FRAME: u64 = 4096;
const MAX_RANGES: usize = 64;

/// Frame usage figures, for `mem` and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameStats {
    /// Frames the memory map offers after reservations.
    pub total: u64,
    /// Frames currently handed out.
    pub used: u64,
}

impl fmt::Display for FrameStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {} frames in use ({} KiB)", self.used, self.total, self.used * FRAME / 1024)
    }
}

/// The allocator state.
pub struct Frames {
    regions: ArrayVec<(u64, u64), MAX_RANGES>,
    reserved: ArrayVec<(u64, u64), MAX_RANGES>,
    region: usize,
    next: u64,
    free_list: u64,
    /// Frames at or above this address are not handed out (the boot page tables reach only the
    /// first GiB until paging::init switches to the full physical map).
    limit: u64,
    total: u64,
    used: u64,
}

/// The one frame allocator.
pub static FRAMES: Mutex<Frames> = Mutex::new(Frames {
    regions: ArrayVec::new_const(),
    reserved: ArrayVec::new_const(),
    region: 0,
    next: 0,
    free_list: 0,
    limit: 1 << 30,
    total: 0,
    used: 0,
});

/// Too many memory regions or reserved ranges for the fixed tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("more than {MAX_RANGES} memory or reserved ranges")]
pub struct TooManyRanges;

const NO_FRAME: u64 = u64::MAX;

impl Frames {
    /// Sets up from available regions and reserved ranges (both `[start, end)`).
    pub fn init(
        &mut self,
        available: impl Iterator<Item = (u64, u64)>,
        reserved: impl Iterator<Item = (u64, u64)>,
    ) -> Result<(), TooManyRanges> {
        self.regions.clear();
        self.reserved.clear();
        self.reserved.try_push((0, 0x10_0000)).map_err(|_| TooManyRanges)?;
        for r in reserved {
            let r = (r.0 & !(FRAME - 1), r.1.div_ceil(FRAME) * FRAME);
            self.reserved.try_push(r).map_err(|_| TooManyRanges)?;
        }
        for (s, e) in available {
            let (s, e) = (s.div_ceil(FRAME) * FRAME, e & !(FRAME - 1));
            if s < e {
                self.regions.try_push((s, e)).map_err(|_| TooManyRanges)?;
            }
        }
        self.regions.sort_unstable();
        self.reserved.sort_unstable();
        // Counted by range arithmetic, not frame by frame: 131,072 frames of 512 MiB, each
        // checked against every reserved range, took 4.6 ms of the boot under TCG.
        self.total = self.regions.iter().map(|&(s, e)| (e - s - self.reserved_bytes_in(s, e)) / FRAME).sum();
        self.region = 0;
        self.next = self.regions.first().map_or(0, |r| r.0);
        self.free_list = NO_FRAME;
        self.used = 0;
        Ok(())
    }

    /// Bytes of `[s, e)` inside reserved ranges (which are frame-aligned, sorted, and may
    /// overlap each other: each byte counts once).
    fn reserved_bytes_in(&self, s: u64, e: u64) -> u64 {
        let mut bytes = 0;
        // The end of what was counted so far: overlapping ranges count only past it.
        let mut counted_to = s;
        for &(rs, re) in &self.reserved {
            let (from, to) = (rs.max(counted_to), re.min(e));
            if from < to {
                bytes += to - from;
                counted_to = to;
            }
        }
        bytes
    }

    fn is_reserved(&self, frame: u64) -> bool {
        self.reserved.iter().any(|&(s, e)| frame < e && frame + FRAME > s)
    }

    /// Whether `frame` lies in a reserved range (for tests).
    pub fn reserved_contains(&self, frame: u64) -> bool {
        self.is_reserved(frame)
    }

    /// Allows frames anywhere (called once the full physical map is active).
    pub fn lift_limit(&mut self) {
        self.limit = u64::MAX;
    }

    /// Current usage.
    pub fn stats(&self) -> FrameStats {
        FrameStats { total: self.total, used: self.used }
    }

    /// Hands out one frame, or `None` when memory is exhausted.
    pub fn alloc(&mut self) -> Option<u64> {
        if self.free_list != NO_FRAME {
            let f = self.free_list;
            // SAFETY: frames on the free list are owned by the allocator and mapped in the
            // physical-memory map; the first word holds the next list entry (see `free`).
            self.free_list = unsafe { crate::paging::phys_to_virt(f).as_ptr::<u64>().read() };
            self.used += 1;
            return Some(f);
        }
        while let Some(&(_, end)) = self.regions.get(self.region) {
            if self.next >= end || self.next >= self.limit {
                self.region += 1;
                match self.regions.get(self.region) {
                    Some(&(s, _)) if s < self.limit => self.next = s,
                    _ => return None,
                }
                continue;
            }
            let f = self.next;
            self.next += FRAME;
            if !self.is_reserved(f) {
                self.used += 1;
                return Some(f);
            }
        }
        None
    }

    /// Returns a frame.
    ///
    /// # Safety
    /// `frame` must have come from [`Frames::alloc`], be unused, and not be freed twice.
    pub unsafe fn free(&mut self, frame: u64) {
        // SAFETY: the caller gives the frame back to us; it is mapped in the physical map.
        unsafe { crate::paging::phys_to_virt(frame).as_mut_ptr::<u64>().write(self.free_list) };
        self.free_list = frame;
        self.used -= 1;
    }
}

/// Adapter for the `x86_64` crate's page-table code.
pub struct GlobalFrames;

// SAFETY: every frame returned comes from `Frames::alloc`, which never hands out a frame twice.
unsafe impl FrameAllocator<Size4KiB> for GlobalFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let f = FRAMES.lock().alloc()?;
        // Page-table frames must start zeroed; the mapper zeroes the ones it uses for tables.
        Some(PhysFrame::containing_address(PhysAddr::new(f)))
    }
}

impl FrameDeallocator<Size4KiB> for GlobalFrames {
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame<Size4KiB>) {
        // SAFETY: forwarded from the caller's contract.
        unsafe { FRAMES.lock().free(frame.start_address().as_u64()) }
    }
}

/// Current frame usage (safe to call from any task).
pub fn stats() -> FrameStats {
    x86_64::instructions::interrupts::without_interrupts(|| FRAMES.lock().stats())
}
