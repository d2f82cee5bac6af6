//! The dependency graph between loaded sections.
//!
//! Every relocation in section U that resolves to a section D of *another* crate adds a strong
//! edge U → D ("U uses D") and a weak edge D → U ("D is used by U"). The weak side is what
//! unloading and swapping consult: a crate whose sections have weak edges from other crates is
//! in use.

use crate::ids::SectionId;
use alloc::collections::{BTreeMap, BTreeSet};

/// Strong and weak edges.
#[derive(Debug, Default)]
pub struct DepGraph {
    uses: BTreeMap<SectionId, BTreeSet<SectionId>>,
    used_by: BTreeMap<SectionId, BTreeSet<SectionId>>,
}

impl DepGraph {
    /// Records that `user` uses `used`.
    pub fn add(&mut self, user: SectionId, used: SectionId) {
        self.uses.entry(user).or_default().insert(used);
        self.used_by.entry(used).or_default().insert(user);
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
        if let Some(used) = self.uses.remove(&s) {
            for d in used {
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
