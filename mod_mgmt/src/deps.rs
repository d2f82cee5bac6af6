//! The dependency graph between loaded sections.
//!
//! Every relocation in section U that resolves to a section D of *another* crate adds a strong
//! edge U → D ("U uses D") and a weak edge D → U ("D is used by U"). The weak side is what
//! unloading and swapping consult: a crate whose sections have weak edges from other crates is
//! in use. Each cross-crate relocation is also kept as a [`RelocRecord`] under the section it
//! points into, so that `swap` can rewrite exactly those places to point into a new crate.

use crate::ids::SectionId;
use alloc::collections::{BTreeMap, BTreeSet};

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
#[derive(Debug, Default)]
pub struct DepGraph {
    uses: BTreeMap<SectionId, BTreeSet<SectionId>>,
    used_by: BTreeMap<SectionId, BTreeSet<SectionId>>,
    relocs_into: BTreeMap<SectionId, alloc::vec::Vec<RelocRecord>>,
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
        self.relocs_into.entry(used).or_default().push(r);
    }

    /// Relocations that point into `used`.
    pub fn relocs_into(&self, used: SectionId) -> &[RelocRecord] {
        self.relocs_into.get(&used).map_or(&[], |v| v.as_slice())
    }

    /// Sections `s` uses.
    pub fn uses(&self, s: SectionId) -> impl Iterator<Item = SectionId> + '_ {
        self.uses.get(&s).into_iter().flatten().copied()
    }

    /// Sections that use `s`.
    pub fn used_by(&self, s: SectionId) -> impl Iterator<Item = SectionId> + '_ {
        self.used_by.get(&s).into_iter().flatten().copied()
    }

    /// Removes every edge touching `s`.
    pub fn remove_section(&mut self, s: SectionId) {
        self.relocs_into.remove(&s);
        if let Some(used) = self.uses.remove(&s) {
            for d in used {
                if let Some(v) = self.relocs_into.get_mut(&d) {
                    v.retain(|r| r.user != s);
                    if v.is_empty() {
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
        g.remove_section(SectionId(2));
        assert_eq!(g.edge_count(), 0);
        assert_eq!(g.uses(SectionId(3)).count(), 0);
    }
}
