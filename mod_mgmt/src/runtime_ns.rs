//! Namespaces made and dropped at run time.
//!
//! A namespace created here is **private**: a child of an existing namespace, with a directory
//! of its own (possibly empty). Its crates resolve their symbols nearest first — the child's
//! loaded crates, then the child's directory, and only then the parent's loaded crates and
//! directories — so a crate already loaded in a parent is shared unless the child's directory
//! has its own version, and a program loaded into the child gets private statics. Dropping it
//! unloads everything it loaded and frees the slot for the next namespace.
//!
//! Parents are fixed at creation and must already exist, so a cycle of parents cannot be made.

use crate::error::LoadError;
use crate::ids::{CrateId, NamespaceId};
use crate::loader::Loader;
use crate::namespace::{CrateNamespace, ObjectBytes};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// What dropping a namespace freed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// The crates unloaded, by name.
    pub crates: Vec<String>,
    /// Bytes of crate memory they held.
    pub bytes: u64,
}

impl Loader {
    /// Creates namespace `name`, a child of `parent`, with directory `dir`. Refused (nothing
    /// changes) for an empty or malformed name, a name in use, or an unknown parent.
    pub fn create_namespace(
        &mut self,
        name: &str,
        parent: NamespaceId,
        dir: BTreeMap<String, ObjectBytes>,
    ) -> Result<NamespaceId, LoadError> {
        if name.is_empty() || name.len() > 32 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(LoadError::BadNamespaceName(name.to_string()));
        }
        if self.namespaces().any(|n| n.name == name) {
            return Err(LoadError::NamespaceExists(name.to_string()));
        }
        self.ns(parent)?;
        let fresh = |id| CrateNamespace::empty(id, name, Some(parent), dir, true);
        // Reuse a dropped slot: create/drop cycles leave nothing behind.
        if let Some(slot) = self.namespaces.iter().position(|n| n.dropped) {
            let id = NamespaceId(slot as u32);
            self.namespaces[slot] = fresh(id);
            return Ok(id);
        }
        let id = NamespaceId(self.namespaces.len() as u32);
        self.namespaces.push(fresh(id));
        Ok(id)
    }

    /// The crates loaded into `ns` (retired versions included).
    pub fn crates_of(&self, ns: NamespaceId) -> Vec<CrateId> {
        self.crates.values().filter(|k| k.namespace == ns).map(|k| k.id).collect()
    }

    /// The live namespaces whose parent is `ns`.
    pub fn children_of(&self, ns: NamespaceId) -> Vec<NamespaceId> {
        self.namespaces().filter(|n| n.parent == Some(ns)).map(|n| n.id).collect()
    }

    /// Whether [`Loader::drop_namespace`] would drop `ns`, and why not; on success, the empty
    /// swap scratch namespaces that go with it.
    pub fn check_drop(&self, ns: NamespaceId) -> Result<Vec<NamespaceId>, LoadError> {
        let n = self.ns(ns)?;
        let name = n.name.clone();
        let refuse = |reason: String| Err(LoadError::NamespaceInUse { name: name.clone(), reason });
        if !n.private {
            return refuse("it is one of the boot namespaces".to_string());
        }
        let scratch_name = format!("swap:{name}");
        let mut scratch = Vec::new();
        for c in self.children_of(ns) {
            let child = &self.namespaces[c.0 as usize];
            if child.name == scratch_name && self.crates_of(c).is_empty() {
                scratch.push(c);
            } else {
                return refuse(format!("namespace {} is its child", child.name));
            }
        }
        let mine = self.crates_of(ns);
        if let Some(k) = mine.iter().filter_map(|id| self.crates.get(id)).find(|k| k.is_retired()) {
            return refuse(format!("a retired version of {} awaits reclaiming", k.name));
        }
        for id in &mine {
            for user in self.crate_dependents(*id) {
                if let Some(u) = self.crates.get(&user)
                    && u.namespace != ns
                {
                    let used = self.crates.get(id).map(|k| k.name.clone()).unwrap_or_default();
                    let theirs = self.namespaces[u.namespace.0 as usize].name.clone();
                    return refuse(format!("crate {} of namespace {theirs} uses its crate {used}", u.name));
                }
            }
        }
        Ok(scratch)
    }

    /// Drops private namespace `ns`: unloads every crate it loaded and frees the slot. Refused
    /// (nothing changes), with the reason, for a boot namespace, one with child namespaces
    /// (other than its empty swap scratch space), one whose crates a crate of another namespace
    /// uses, or one holding retired versions not yet reclaimed. Whether a task still runs in
    /// it is the caller's to check (the loader does not know tasks).
    pub fn drop_namespace(&mut self, ns: NamespaceId) -> Result<Dropped, LoadError> {
        let scratch = self.check_drop(ns)?;
        let mine = self.crates_of(ns);
        let mut dropped = Dropped { crates: Vec::new(), bytes: 0 };
        for id in mine {
            if let Some(k) = self.crates.get(&id) {
                dropped.crates.push(k.name.clone());
                dropped.bytes += k.regions().map(|r| r.1 as u64).sum::<u64>();
            }
            self.remove_crate(id);
        }
        dropped.crates.sort();
        for c in scratch.into_iter().chain([ns]) {
            let slot = &mut self.namespaces[c.0 as usize];
            *slot = CrateNamespace { dropped: true, ..CrateNamespace::empty(c, "", None, BTreeMap::new(), false) };
        }
        self.generation += 1;
        Ok(dropped)
    }

    /// Loads the object of crate `name` — the nearest file in `ns`'s chain whose crate name it
    /// is (updates first, then the directory, in each namespace) — into `ns` itself, unless a
    /// crate of that name is already loaded there. Runs a command or program privately in a
    /// namespace: its statics are its own, and its dependencies resolve child-first.
    pub fn load_crate_into(&mut self, ns: NamespaceId, name: &str) -> Result<CrateId, LoadError> {
        self.ns(ns)?;
        if let Some(&id) = self.namespaces[ns.0 as usize].crates.get(name) {
            return Ok(id);
        }
        let Some((file, bytes)) = self.nearest_object(ns, |f| crate::namespace::crate_name_of(f) == name) else {
            return Err(LoadError::NoSuchProgram { file: format!("{name}.o"), namespace: self.namespaces[ns.0 as usize].name.clone() });
        };
        self.load(ns, &file, bytes)
    }

    /// The crate `name` as `ns` sees it (loaded in `ns` or a parent), or else loaded into `ns`
    /// from `ns`'s own directory (not its updates: those are for swaps and explicit loads).
    /// How the shell finds a command and captain the shell.
    pub fn load_crate(&mut self, ns: NamespaceId, name: &str) -> Result<CrateId, LoadError> {
        self.ns(ns)?;
        if let Some(id) = self.crate_by_name(ns, name) {
            return Ok(id);
        }
        let n = &self.namespaces[ns.0 as usize];
        let Some(file) = n.files().map(|(f, _)| f).find(|f| crate::namespace::crate_name_of(f) == name).cloned() else {
            return Err(LoadError::NoSuchProgram { file: format!("{name}.o"), namespace: n.name.clone() });
        };
        self.load_from_dir(ns, &file)
    }
}
