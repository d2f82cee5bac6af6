//! The TLS image: where each loaded crate's thread-local sections live relative to the thread
//! pointer.
//!
//! x86_64 uses TLS variant II: a thread's TLS block sits just below the thread pointer (`fs`
//! base), so local-exec offsets are negative. Crates are loaded one at a time while threads
//! already exist, so offsets must never move: each new TLS section is placed *below* everything
//! placed so far (`offset = -align_up(total + size, align)`). The image is one per loader (one
//! thread pointer serves every namespace); space of unloaded crates is not reused.

use crate::ids::SectionId;
use alloc::vec;
use alloc::vec::Vec;

/// One TLS section's place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPart {
    /// The section.
    pub section: SectionId,
    /// Offset from the thread pointer (negative).
    pub offset: i64,
    /// Size in bytes.
    pub size: u64,
    /// Initial contents (`size` bytes; zeros for `.tbss`).
    pub init: Vec<u8>,
}

/// The layout of all TLS sections.
#[derive(Debug, Default)]
pub struct TlsImage {
    total: u64,
    align: u64,
    parts: Vec<TlsPart>,
}

/// Rounds `v` up to a multiple of `align` (a power of two).
fn align_up(v: u64, align: u64) -> Option<u64> {
    v.checked_add(align - 1).map(|x| x & !(align - 1))
}

impl TlsImage {
    /// The offset a section of `size`/`align` would get if placed now, and the new total.
    pub fn plan(&self, total: u64, size: u64, align: u64) -> Option<(i64, u64)> {
        let align = align.max(1);
        let new_total = align_up(total.checked_add(size)?, align)?;
        let off = i64::try_from(new_total).ok()?;
        Some((-off, new_total))
    }

    /// Current total size of the block below the thread pointer.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Largest alignment of any part (the thread pointer must be aligned to it).
    pub fn align(&self) -> u64 {
        self.align.max(1)
    }

    /// Places a section; returns its offset, or `None` if the block would overflow.
    pub fn place(&mut self, section: SectionId, size: u64, align: u64, init: &[u8]) -> Option<i64> {
        let (offset, total) = self.plan(self.total, size, align)?;
        let mut bytes = vec![0u8; usize::try_from(size).ok()?];
        let n = init.len().min(bytes.len());
        bytes[..n].copy_from_slice(&init[..n]);
        self.parts.push(TlsPart { section, offset, size, init: bytes });
        self.total = total;
        self.align = self.align.max(align);
        Some(offset)
    }

    /// Gives the place of section `from` to section `to` (a new crate version adopted it), with
    /// `init` as the initial contents for tasks made from now on.
    pub fn reassign(&mut self, from: SectionId, to: SectionId, init: Option<&[u8]>) {
        for p in self.parts.iter_mut().filter(|p| p.section == from) {
            p.section = to;
            if let Some(init) = init {
                let n = init.len().min(p.init.len());
                p.init[..n].copy_from_slice(&init[..n]);
                p.init[n..].fill(0);
            }
        }
    }

    /// The offset of a placed section.
    pub fn offset_of(&self, section: SectionId) -> Option<i64> {
        self.parts.iter().find(|p| p.section == section).map(|p| p.offset)
    }

    /// Forgets a section (its space is not reused).
    pub fn remove(&mut self, section: SectionId) {
        self.parts.retain(|p| p.section != section);
    }

    /// The parts in placement order.
    pub fn parts(&self) -> &[TlsPart] {
        &self.parts
    }

    /// The initial image of the whole block: byte `i` belongs at `tp - total + i`.
    pub fn image(&self) -> Vec<u8> {
        let mut img = vec![0u8; self.total as usize];
        for p in &self.parts {
            let start = (self.total as i64 + p.offset) as usize;
            img[start..start + p.init.len()].copy_from_slice(&p.init);
        }
        img
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_stable_and_aligned() {
        let mut t = TlsImage::default();
        let a = t.place(SectionId(1), 4, 4, &[1, 2, 3, 4]).unwrap();
        assert_eq!(a, -4);
        let b = t.place(SectionId(2), 8, 16, &[]).unwrap();
        assert_eq!(b, -16);
        assert_eq!(b % 16, 0);
        let c = t.place(SectionId(3), 1, 1, &[9]).unwrap();
        assert_eq!(c, -17);
        assert_eq!(t.total(), 17);
        assert_eq!(t.align(), 16);
        let img = t.image();
        assert_eq!(&img[13..17], &[1, 2, 3, 4]);
        assert_eq!(img[0], 9);
        t.remove(SectionId(1));
        assert_eq!(t.place(SectionId(4), 4, 4, &[]).unwrap(), -24);
    }
}
