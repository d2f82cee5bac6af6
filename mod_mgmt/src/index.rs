//! The address index: any address to the section that contains it, in O(log n).
//!
//! A sorted array of non-overlapping `[start, end)` ranges, searched by binary search: one
//! contiguous allocation, so a lookup touches about log2(n) cache lines and nothing else.
//! Loading a crate adds all its ranges in one merge ([`AddressIndex::insert_batch`], O(n + m log
//! m)) instead of m single insertions; unloading removes them in one pass. Overlapping ranges
//! are refused, which is what makes a single probe correct.

use crate::ids::SectionId;
use alloc::vec::Vec;

/// Sorted, non-overlapping `[start, end)` ranges.
///
/// The start addresses are kept in an array of their own, so the binary search walks a dense
/// array of `u64`s (8 per cache line) and touches the ends and ids only once, at the end.
#[derive(Debug, Default)]
pub struct AddressIndex {
    ranges: Vec<(u64, u64, SectionId)>,
    starts: Vec<u64>,
}

impl AddressIndex {
    /// Adds `[start, start+len)` for `section`. Empty ranges are ignored. Returns `false` if it
    /// would overlap an existing range (nothing is changed then).
    pub fn insert(&mut self, start: u64, len: u64, section: SectionId) -> bool {
        self.insert_batch(alloc::vec![(start, len, section)])
    }

    /// Adds many ranges at once; all or nothing (`false` if any overlaps another or wraps).
    pub fn insert_batch(&mut self, mut new: Vec<(u64, u64, SectionId)>) -> bool {
        new.retain(|r| r.1 != 0);
        if new.is_empty() {
            return true;
        }
        let mut add = Vec::with_capacity(new.len());
        for (s, len, id) in new {
            let Some(e) = s.checked_add(len) else { return false };
            add.push((s, e, id));
        }
        add.sort_unstable_by_key(|r| r.0);
        if add.windows(2).any(|w| w[1].0 < w[0].1) {
            return false;
        }
        // A crate's sections lie in one fresh allocation, so they usually fall into a single gap
        // between the ranges already here (most often after the last): put them there, moving
        // only the ranges after the gap, instead of rebuilding both arrays (thousands of ranges
        // on a running kernel, at every load).
        let at = self.starts.partition_point(|&s| s < add[0].0);
        let after_prev = at == 0 || self.ranges[at - 1].1 <= add[0].0;
        let before_next = self.ranges.get(at).is_none_or(|next| add[add.len() - 1].1 <= next.0);
        if after_prev && before_next {
            self.starts.splice(at..at, add.iter().map(|r| r.0));
            self.ranges.splice(at..at, add);
            return true;
        }
        let mut merged = Vec::with_capacity(self.ranges.len() + add.len());
        let (mut i, mut j) = (0, 0);
        while i < self.ranges.len() || j < add.len() {
            let take_old = j >= add.len() || (i < self.ranges.len() && self.ranges[i].0 <= add[j].0);
            let r = if take_old {
                i += 1;
                self.ranges[i - 1]
            } else {
                j += 1;
                add[j - 1]
            };
            if let Some(&(_, last_end, _)) = merged.last()
                && r.0 < last_end
            {
                return false;
            }
            merged.push(r);
        }
        self.starts = merged.iter().map(|r| r.0).collect();
        self.ranges = merged;
        true
    }

    /// Removes the range starting at `start`.
    pub fn remove(&mut self, start: u64) -> Option<SectionId> {
        let i = self.starts.binary_search(&start).ok()?;
        self.starts.remove(i);
        Some(self.ranges.remove(i).2)
    }

    /// Gives the range starting at `start`, now owned by `from`, to section `to` (a new crate
    /// version adopted the memory). Returns whether it was found.
    pub fn reassign(&mut self, start: u64, from: SectionId, to: SectionId) -> bool {
        match self.starts.binary_search(&start) {
            Ok(i) if self.ranges[i].2 == from => {
                self.ranges[i].2 = to;
                true
            }
            _ => false,
        }
    }

    /// Removes every range of the given sections (sorted or not) in one pass.
    pub fn remove_sections(&mut self, ids: &[SectionId]) {
        if ids.is_empty() {
            return;
        }
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        self.ranges.retain(|r| sorted.binary_search(&r.2).is_err());
        self.starts = self.ranges.iter().map(|r| r.0).collect();
    }

    /// The section containing `addr`, with the range's start.
    pub fn lookup(&self, addr: u64) -> Option<(SectionId, u64)> {
        let i = self.starts.partition_point(|&s| s <= addr);
        let r = self.ranges.get(i.checked_sub(1)?)?;
        (addr < r.1).then_some((r.2, r.0))
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
        assert!(ix.reassign(0x1100, SectionId(2), SectionId(7)));
        assert!(!ix.reassign(0x1100, SectionId(2), SectionId(8)), "only the current owner gives it away");
        assert_eq!(ix.lookup(0x1101), Some((SectionId(7), 0x1100)));
        assert_eq!(ix.lookup(0xfff), None);
        assert_eq!(ix.remove(0x1000), Some(SectionId(1)));
        assert_eq!(ix.lookup(0x1000), None);
    }

    #[test]
    fn batches_are_all_or_nothing() {
        let mut ix = AddressIndex::default();
        assert!(ix.insert_batch(alloc::vec![(0x3000, 0x10, SectionId(3)), (0x1000, 0x10, SectionId(1)), (0x2000, 0, SectionId(9))]));
        assert_eq!(ix.len(), 2);
        assert!(!ix.insert_batch(alloc::vec![(0x5000, 0x10, SectionId(5)), (0x3008, 0x10, SectionId(4))]));
        assert_eq!(ix.len(), 2);
        assert_eq!(ix.lookup(0x5000), None);
        assert!(!ix.insert_batch(alloc::vec![(0x6000, 0x10, SectionId(6)), (0x6008, 0x10, SectionId(7))]));
        ix.remove_sections(&[SectionId(3)]);
        assert_eq!(ix.lookup(0x3000), None);
        assert_eq!(ix.lookup(0x1001), Some((SectionId(1), 0x1000)));
    }

    /// Batches that fit one gap (the fast path) and batches around existing ranges (the merge)
    /// against a plain list of ranges, at random.
    #[test]
    fn batches_agree_with_a_plain_list() {
        let mut ix = AddressIndex::default();
        let mut plain: Vec<(u64, u64, SectionId)> = Vec::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut id = 0;
        for round in 0..2000 {
            let base = next(64) * 0x100;
            let batch: Vec<(u64, u64, SectionId)> = (0..1 + next(4))
                .map(|i| {
                    id += 1;
                    (base + i * 0x40 + next(0x20), 1 + next(0x30), SectionId(id))
                })
                .collect();
            let mut all: Vec<(u64, u64)> = plain.iter().map(|r| (r.0, r.0 + r.1)).collect();
            all.extend(batch.iter().map(|r| (r.0, r.0 + r.1)));
            all.sort_unstable();
            let fits = all.windows(2).all(|w| w[0].1 <= w[1].0);
            assert_eq!(ix.insert_batch(batch.clone()), fits, "round {round}: {batch:x?}");
            if fits {
                plain.extend(batch);
            }
            if round % 7 == 0 && !plain.is_empty() {
                let gone = plain.remove(next(plain.len() as u64) as usize);
                ix.remove_sections(&[gone.2]);
            }
            for probe in 0..0x41 {
                let addr = probe * 0x100 + next(0x100);
                let want = plain.iter().find(|r| r.0 <= addr && addr < r.0 + r.1).map(|r| (r.2, r.0));
                assert_eq!(ix.lookup(addr), want, "round {round}, address {addr:#x}");
            }
        }
    }
}
