//! The dependency graph between loaded sections.
//!
//! Every relocation in section U that resolves to a section D of *another* crate adds a strong
//! edge U → D ("U uses D") and a weak edge D → U ("D is used by U"). The weak side is what
//! unloading and swapping consult: a crate whose sections have weak edges from other crates is
//! in use. Each cross-crate relocation is also kept as a [`RelocRecord`] under the section it
//! points into, so that `swap` can rewrite exactly those places to point into a new crate.

use crate::ids::SectionId;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

/// One relocation from one crate's section into another crate's section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelocRecord {
    /// The section holding the place.
    pub user: SectionId,
    /// Offset of the place in `user`.
    pub offset: u64,
    /// ELF relocation type.
    pub r_type: u32,
    /// Addend.
    pub addend: i64,
    /// Offset of the symbol's value within the used section (S - section start).
    pub target_offset: u64,
}

/// Strong and weak edges, with the relocations behind them.
///
/// Relocation records are bucketed by the used section and then by the user section, so that
/// forgetting a section costs O(log n) per edge it has — never a scan of every record pointing
/// into a popular section (`memcpy`, `core::fmt`), which is what made swap cleanup grow with
/// the size of the running system.
#[derive(Debug, Default)]
pub struct DepGraph {
    uses: BTreeMap<SectionId, BTreeSet<SectionId>>,
    used_by: BTreeMap<SectionId, BTreeSet<SectionId>>,
    relocs_into: BTreeMap<SectionId, BTreeMap<SectionId, Vec<RelocRecord>>>,
}

impl DepGraph {
    /// Records that `user` uses `used`.
    pub fn add(&mut self, user: SectionId, used: SectionId) {
        self.uses.entry(user).or_default().insert(used);
        self.used_by.entry(used).or_default().insert(user);
    }

    /// Records a relocation (and its edge) from `r.user` into `used`.
    pub fn add_reloc(&mut self, used: SectionId, r: RelocRecord) {
        self.add(r.user, used);
        self.relocs_into.entry(used).or_default().entry(r.user).or_default().push(r);
    }

    /// Records many relocations, each `(used, record)`, as [`DepGraph::add_reloc`] would one by
    /// one: sorted first, so that each (used, user) pair costs one lookup in the maps, not one
    /// per relocation (a load records thousands: cranelift_codegen's calls into core).
    pub fn add_relocs(&mut self, mut batch: Vec<(SectionId, RelocRecord)>) {
        // Stable: a pair's records keep their order of relocation.
        batch.sort_by_key(|(used, r)| (*used, r.user));
        for group in batch.chunk_by(|a, b| a.0 == b.0 && a.1.user == b.1.user) {
            let (used, user) = (group[0].0, group[0].1.user);
            self.add(user, used);
            self.relocs_into.entry(used).or_default().entry(user).or_default().extend(group.iter().map(|(_, r)| *r));
        }
    }

    /// Relocations that point into `used`.
    pub fn relocs_into(&self, used: SectionId) -> impl Iterator<Item = &RelocRecord> + '_ {
        self.relocs_into.get(&used).into_iter().flat_map(|m| m.values().flatten())
    }

    /// Sections `s` uses.
    pub fn uses(&self, s: SectionId) -> impl Iterator<Item = SectionId> + '_ {
        self.uses.get(&s).into_iter().flatten().copied()
    }

    /// Sections that use `s`.
    pub fn used_by(&self, s: SectionId) -> impl Iterator<Item = SectionId> + '_ {
        self.used_by.get(&s).into_iter().flatten().copied()
    }

    /// Removes every edge into `s` (and the relocation records behind them), keeping `s`'s own
    /// edges to what it uses: a swap moved `s`'s users to a new section.
    pub fn remove_incoming(&mut self, s: SectionId) {
        self.relocs_into.remove(&s);
        if let Some(users) = self.used_by.remove(&s) {
            for u in users {
                if let Some(set) = self.uses.get_mut(&u) {
                    set.remove(&s);
                    if set.is_empty() {
                        self.uses.remove(&u);
                    }
                }
            }
        }
    }

    /// Removes every edge touching `s`.
    pub fn remove_section(&mut self, s: SectionId) {
        if let Some(used) = self.uses.remove(&s) {
            for d in used {
                if let Some(m) = self.relocs_into.get_mut(&d) {
                    m.remove(&s);
                    if m.is_empty() {
                        self.relocs_into.remove(&d);
                    }
                }
                if let Some(set) = self.used_by.get_mut(&d) {
                    set.remove(&s);
                    if set.is_empty() {
                        self.used_by.remove(&d);
                    }
                }
            }
        }
        self.remove_incoming(s);
    }

    /// Number of strong edges.
    pub fn edge_count(&self) -> usize {
        self.uses.values().map(|s| s.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_both_ways() {
        let mut g = DepGraph::default();
        g.add(SectionId(1), SectionId(2));
        g.add(SectionId(3), SectionId(2));
        assert_eq!(g.used_by(SectionId(2)).count(), 2);
        assert_eq!(g.uses(SectionId(1)).collect::<alloc::vec::Vec<_>>(), [SectionId(2)]);
        g.remove_section(SectionId(1));
        assert_eq!(g.used_by(SectionId(2)).collect::<alloc::vec::Vec<_>>(), [SectionId(3)]);
        g.add_reloc(SectionId(2), RelocRecord { user: SectionId(3), offset: 8, r_type: 1, addend: 0, target_offset: 0 });
        assert_eq!(g.relocs_into(SectionId(2)).count(), 1);
        g.remove_incoming(SectionId(2));
        assert_eq!(g.relocs_into(SectionId(2)).count(), 0);
        assert_eq!(g.uses(SectionId(3)).count(), 0);
        g.add_reloc(SectionId(2), RelocRecord { user: SectionId(3), offset: 8, r_type: 1, addend: 0, target_offset: 0 });
        g.remove_section(SectionId(2));
        assert_eq!(g.edge_count(), 0);
        assert_eq!(g.uses(SectionId(3)).count(), 0);
    }
}
