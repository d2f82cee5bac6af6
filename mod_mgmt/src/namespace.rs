//! A `CrateNamespace`: a symbol map, the crates loaded into it, a parent, and a directory of
//! object files that can be loaded on demand.

use crate::ids::{CrateId, NamespaceId};
use crate::symbols::SymbolMap;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use core::ops::Deref;

/// Bytes of an object file: borrowed for the kernel's lifetime (boot modules) or shared.
#[derive(Debug, Clone)]
pub enum ObjectBytes {
    /// Lives forever (boot modules in the kernel).
    Static(&'static [u8]),
    /// Owned, cheaply cloned.
    Shared(Arc<[u8]>),
}

impl Deref for ObjectBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            ObjectBytes::Static(b) => b,
            ObjectBytes::Shared(b) => b,
        }
    }
}

impl From<alloc::vec::Vec<u8>> for ObjectBytes {
    fn from(v: alloc::vec::Vec<u8>) -> Self {
        ObjectBytes::Shared(v.into())
    }
}

/// Where the load-on-demand index says a symbol is defined.
#[derive(Debug)]
pub(crate) struct DirIndex {
    /// Raw name → file.
    pub raw: crate::dirindex::RawIndex,
    /// Hash-agnostic key → file (first file wins); built on first need.
    pub agnostic: Option<BTreeMap<String, String>>,
}

/// One namespace.
#[derive(Debug)]
pub struct CrateNamespace {
    /// Its id.
    pub id: NamespaceId,
    /// Its name (`kernel`, `applications`, ...).
    pub name: String,
    /// Where lookups continue when this namespace has no definition.
    pub parent: Option<NamespaceId>,
    /// Symbols exported by its crates.
    pub symbols: SymbolMap,
    /// Its crates by name.
    pub crates: BTreeMap<String, CrateId>,
    /// Object files available for loading, by file name.
    pub(crate) dir: BTreeMap<String, ObjectBytes>,
    /// New versions of crates (for `swap`), by file name; never loaded on demand.
    pub(crate) updates: BTreeMap<String, ObjectBytes>,
    /// Built on the first miss; dropped when the directory changes.
    pub(crate) dir_index: Option<DirIndex>,
    /// Made at run time ([`crate::Loader::create_namespace`]): resolves against its own crates
    /// and directory *before* its parents' (a private version shadows a shared one), and can
    /// be dropped. The boot namespaces resolve parent-first... no: nearest loaded symbol first,
    /// then directories, as they always did.
    pub private: bool,
    /// Dropped: the slot waits to be reused by the next namespace created.
    pub(crate) dropped: bool,
}

impl CrateNamespace {
    /// A namespace with no crates and no updates.
    pub(crate) fn empty(
        id: NamespaceId,
        name: &str,
        parent: Option<NamespaceId>,
        dir: BTreeMap<String, ObjectBytes>,
        private: bool,
    ) -> CrateNamespace {
        CrateNamespace {
            id,
            name: String::from(name),
            parent,
            symbols: Default::default(),
            crates: BTreeMap::new(),
            dir,
            updates: BTreeMap::new(),
            dir_index: None,
            private,
            dropped: false,
        }
    }

    /// File names in the object directory.
    pub fn files(&self) -> impl Iterator<Item = (&String, usize)> {
        self.dir.iter().map(|(n, b)| (n, b.len()))
    }

    /// The bytes of an object file in the directory or among the updates.
    pub fn file_bytes(&self, name: &str) -> Option<ObjectBytes> {
        self.dir.get(name).or_else(|| self.updates.get(name)).cloned()
    }

    /// File names among the updates.
    pub fn update_files(&self) -> impl Iterator<Item = (&String, usize)> {
        self.updates.iter().map(|(n, b)| (n, b.len()))
    }
}

/// The crate name of an object file name: `foo-0123abcd.o` → `foo`, `foo.o` → `foo`.
pub fn crate_name_of(file: &str) -> &str {
    let base = file.rsplit('/').next().unwrap_or(file);
    let stem = base.strip_suffix(".o").unwrap_or(base);
    match stem.rsplit_once('-') {
        Some((name, hash)) if !hash.is_empty() && hash.bytes().all(|b| b.is_ascii_hexdigit()) => name,
        _ => stem,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn crate_names() {
        assert_eq!(super::crate_name_of("core-2ed2323deb31a795.o"), "core");
        assert_eq!(super::crate_name_of("dir/fx_a-01.o"), "fx_a");
        assert_eq!(super::crate_name_of("plain.o"), "plain");
        assert_eq!(super::crate_name_of("my-crate.o"), "my-crate");
    }
}
