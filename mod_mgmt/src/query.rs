//! Read-only questions about the loaded system: symbol lookup and search, address to symbol,
//! dependencies, and listings.

use crate::crates::{LoadedCrate, LoadedSection};
use crate::error::LoadError;
use crate::ids::{CrateId, NamespaceId, SectionId};
use crate::loader::Loader;
use crate::namespace::CrateNamespace;
use crate::symbols::{SymbolRef, agnostic_of_exact, exact_key};
use crate::tls::TlsImage;
use alloc::collections::BTreeSet;

use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// What an address is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrInfo {
    /// Crate name.
    pub krate: String,
    /// Namespace name.
    pub namespace: String,
    /// Section name.
    pub section: String,
    /// Section id.
    pub section_id: SectionId,
    /// Offset into the section.
    pub section_offset: u64,
    /// The covering symbol's demangled name (without hashes), if any.
    pub symbol: Option<String>,
    /// The covering symbol's raw name.
    pub raw: Option<String>,
    /// Offset into the symbol.
    pub symbol_offset: u64,
}

/// What [`Loader::symbol_at`] finds: the section, the offset into it, and the covering symbol
/// with the offset into that symbol.
pub type SymbolAt<'a> = (&'a LoadedSection, u64, Option<(&'a crate::crates::SectionSymbol, u64)>);

impl Loader {
    /// Looks a symbol up for `ns` by any name a person or a linker may use: raw mangled, exact
    /// demangled key, or hash-agnostic demangled name.
    pub fn lookup(&self, ns: NamespaceId, name: &str) -> Result<SymbolRef, LoadError> {
        self.ns(ns)?;
        let key = exact_key(name);
        if let Some(s) = self.find(ns, &key)? {
            return Ok(s);
        }
        if key != name
            && let Some(s) = self.find(ns, name)?
        {
            return Ok(s);
        }
        Err(LoadError::NoSuchSymbol(agnostic_of_exact(&key)))
    }

    /// Symbols visible from `ns` whose hash-agnostic name starts with `prefix`, as
    /// (namespace, exact key, ref), nearest namespace first.
    pub fn search(&self, ns: NamespaceId, prefix: &str) -> Vec<(NamespaceId, String, SymbolRef)> {
        let mut out = Vec::new();
        for n in self.chain(ns) {
            for (k, r) in self.namespaces[n.0 as usize].symbols.prefix(prefix) {
                out.push((n, k, r));
            }
        }
        out
    }

    /// The section containing `addr` and the offset into it: the address index alone.
    pub fn locate(&self, addr: u64) -> Option<(SectionId, u64)> {
        self.index.lookup(addr).map(|(s, start)| (s, addr - start))
    }

    /// The section containing `addr`, the offset into it, and the covering symbol with the
    /// offset into that symbol — without allocating (what backtraces and benchmarks use).
    pub fn symbol_at(&self, addr: u64) -> Option<SymbolAt<'_>> {
        let (sid, start) = self.index.lookup(addr)?;
        let sec = self.sections.get(&sid)?;
        let off = addr - start;
        Some((sec, off, sec.symbol_at(off)))
    }

    /// Names any address in a loaded or registered section.
    pub fn addr2sym(&self, addr: u64) -> Option<AddrInfo> {
        let (sid, start) = self.index.lookup(addr)?;
        let sec = self.sections.get(&sid)?;
        let k = self.crates.get(&sec.krate)?;
        let off = addr - start;
        let (symbol, raw, symbol_offset) = match sec.symbol_at(off) {
            Some((s, o)) => (Some(String::from(s.demangled())), Some(s.raw.to_string()), o),
            None => (None, None, off),
        };
        Some(AddrInfo {
            krate: k.name.clone(),
            namespace: self.namespaces[k.namespace.0 as usize].name.clone(),
            section: sec.name.clone(),
            section_id: sid,
            section_offset: off,
            symbol,
            raw,
            symbol_offset,
        })
    }

    /// The address of symbol `name` (raw, or demangled without hash) defined in crate `id`,
    /// local symbols included unless `filter` says otherwise: what the namespace's map does not
    /// hold (a crate's private functions, a name another crate shadows), for tools that name
    /// them (fault injection, a C program's `main`, the unwinder's own `_Unwind_Resume`).
    pub fn find_symbol(&self, id: CrateId, name: &str, filter: SymbolFilter) -> Option<u64> {
        let k = self.crates.get(&id)?;
        k.sections
            .iter()
            .filter_map(|s| self.sections.get(s))
            .filter(|sec| filter == SymbolFilter::Any || sec.kind == crate::SectionKind::Text)
            .find_map(|sec| {
                sec.symbols
                    .iter()
                    .find(|y| (filter != SymbolFilter::ExportedCode || y.global) && (y.raw == name || y.demangled() == name))
                    .map(|y| sec.addr + y.offset)
            })
    }

    /// Crates whose sections `id`'s sections use.
    pub fn crate_dependencies(&self, id: CrateId) -> BTreeSet<CrateId> {
        self.crate_edges(id, true)
    }

    /// Crates whose sections use `id`'s sections.
    pub fn crate_dependents(&self, id: CrateId) -> BTreeSet<CrateId> {
        self.crate_edges(id, false)
    }

    fn crate_edges(&self, id: CrateId, uses: bool) -> BTreeSet<CrateId> {
        let mut out = BTreeSet::new();
        let Some(k) = self.crates.get(&id) else { return out };
        for s in &k.sections {
            let others: Vec<SectionId> = if uses { self.deps.uses(*s).collect() } else { self.deps.used_by(*s).collect() };
            for o in others {
                if let Some(sec) = self.sections.get(&o)
                    && sec.krate != id
                {
                    out.insert(sec.krate);
                }
            }
        }
        out
    }

    /// Sections `s` uses (strong edges).
    pub fn section_dependencies(&self, s: SectionId) -> Vec<SectionId> {
        self.deps.uses(s).collect()
    }

    /// Sections that use `s` (weak edges).
    pub fn section_dependents(&self, s: SectionId) -> Vec<SectionId> {
        self.deps.used_by(s).collect()
    }

    /// A crate by id.
    pub fn krate(&self, id: CrateId) -> Option<&LoadedCrate> {
        self.crates.get(&id)
    }

    /// A crate by name in `ns` or its parents.
    pub fn crate_by_name(&self, ns: NamespaceId, name: &str) -> Option<CrateId> {
        self.chain(ns).into_iter().find_map(|n| self.namespaces[n.0 as usize].crates.get(name).copied())
    }

    /// A section by id.
    pub fn section(&self, id: SectionId) -> Option<&LoadedSection> {
        self.sections.get(&id)
    }

    /// All live crates (not retired ones: see [`Loader::retired`]).
    pub fn crates(&self) -> impl Iterator<Item = &LoadedCrate> {
        self.crates.values().filter(|k| k.retired.is_none())
    }

    /// All namespaces.
    pub fn namespaces(&self) -> impl Iterator<Item = &CrateNamespace> {
        self.namespaces.iter().filter(|n| !n.dropped)
    }

    /// The namespace of the crate whose section holds `addr` (a function of a loaded crate
    /// asks where it runs: a command loaded into a namespace made at run time works there).
    pub fn namespace_of_addr(&self, addr: u64) -> Option<NamespaceId> {
        let (sec, _) = self.locate(addr)?;
        let k = self.section(sec)?.krate;
        self.krate(k).map(|k| k.namespace)
    }

    /// A namespace by name.
    pub fn namespace_by_name(&self, name: &str) -> Result<NamespaceId, LoadError> {
        self.namespaces().find(|n| n.name == name).map(|n| n.id).ok_or_else(|| LoadError::NoSuchNamespace(name.to_string()))
    }

    /// A namespace.
    pub fn namespace(&self, ns: NamespaceId) -> Option<&CrateNamespace> {
        self.namespaces.get(ns.0 as usize).filter(|n| !n.dropped)
    }

    /// The TLS layout.
    pub fn tls(&self) -> &TlsImage {
        &self.tls
    }

    /// How much the loader holds.
    pub fn totals(&self) -> Totals {
        Totals {
            crates: self.crates.len(),
            sections: self.sections.len(),
            symbols: self.namespaces.iter().map(|n| n.symbols.len()).sum(),
            dependency_edges: self.deps.edge_count(),
            index_ranges: self.index.len(),
        }
    }

    /// The address of `name` as crate `id` exports it: looked up in the crate's namespace map
    /// (no demangling), and only if that crate defines it — not a parent's or a sibling's
    /// symbol of the same name. How conventional per-crate entry points (`<crate>::swap_init`,
    /// `<crate>::after_swap`, `<crate>::main`) are found.
    pub fn export_of(&self, id: CrateId, name: &str) -> Option<u64> {
        let k = self.crates.get(&id)?;
        self.lookup(k.namespace, name).ok().filter(|s| s.krate == id).map(|s| s.addr)
    }
}

/// What [`Loader::totals`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Loaded crates (retired versions included).
    pub crates: usize,
    /// Their sections.
    pub sections: usize,
    /// Symbols in all namespaces' maps.
    pub symbols: usize,
    /// Section-to-section dependency edges.
    pub dependency_edges: usize,
    /// Ranges in the address index.
    pub index_ranges: usize,
}

/// Which symbols [`Loader::find_symbol`] considers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymbolFilter {
    /// Any symbol of any section.
    Any,
    /// Symbols in code.
    Code,
    /// Exported (global) symbols in code.
    ExportedCode,
}
