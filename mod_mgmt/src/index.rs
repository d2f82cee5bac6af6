//! The address index: any address to the section that contains it, in O(log n).
//!
//! Ranges are kept in a B-tree keyed by start address; a lookup takes the last range starting
//! at or below the address and checks its end. Ranges never overlap (inserting an overlapping
//! range is refused), which is what makes that single probe correct.

use crate::ids::SectionId;
use alloc::collections::BTreeMap;

/// Sorted, non-overlapping `[start, end)` ranges.
#[derive(Debug, Default)]
pub struct AddressIndex {
    ranges: BTreeMap<u64, (u64, SectionId)>,
}

impl AddressIndex {
    /// Adds `[start, start+len)` for `section`. Empty ranges are ignored. Returns `false` if it
    /// would overlap an existing range (nothing is changed then).
    pub fn insert(&mut self, start: u64, len: u64, section: SectionId) -> bool {
        if len == 0 {
            return true;
        }
        let Some(end) = start.checked_add(len) else { return false };
        if let Some((_, (pend, _))) = self.ranges.range(..=start).next_back()
            && *pend > start
        {
            return false;
        }
        if let Some((nstart, _)) = self.ranges.range(start..).next()
            && *nstart < end
        {
            return false;
        }
        self.ranges.insert(start, (end, section));
        true
    }

    /// Removes the range starting at `start`.
    pub fn remove(&mut self, start: u64) -> Option<SectionId> {
        self.ranges.remove(&start).map(|(_, s)| s)
    }

    /// The section containing `addr`, with the range's start.
    pub fn lookup(&self, addr: u64) -> Option<(SectionId, u64)> {
        let (start, (end, s)) = self.ranges.range(..=addr).next_back()?;
        (addr < *end).then_some((*s, *start))
    }

    /// Number of ranges.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_insert_remove() {
        let mut ix = AddressIndex::default();
        assert!(ix.insert(0x1000, 0x100, SectionId(1)));
        assert!(ix.insert(0x1100, 0x10, SectionId(2)));
        assert!(!ix.insert(0x10ff, 2, SectionId(3)));
        assert!(!ix.insert(0x0fff, 2, SectionId(3)));
        assert!(!ix.insert(u64::MAX, 2, SectionId(3)));
        assert_eq!(ix.lookup(0x1000), Some((SectionId(1), 0x1000)));
        assert_eq!(ix.lookup(0x10ff), Some((SectionId(1), 0x1000)));
        assert_eq!(ix.lookup(0x1100), Some((SectionId(2), 0x1100)));
        assert_eq!(ix.lookup(0x1110), None);
        assert_eq!(ix.lookup(0xfff), None);
        assert_eq!(ix.remove(0x1000), Some(SectionId(1)));
        assert_eq!(ix.lookup(0x1000), None);
    }
}
