//! A namespace's symbol map, keyed by demangled name.
//!
//! The rule, decided once:
//! - **Key**: the full demangled name, `format!("{}", rustc_demangle::demangle(raw))`. For v0
//!   names this keeps the crate disambiguators (`core[2ed2323deb31a795]::fmt::write`), for
//!   legacy names the `::h<hash>` suffix; non-Rust names (`memcpy`) are their own key. Two
//!   different raw names never share a key in one build, and a key still tells which build a
//!   symbol came from.
//! - **Hash-agnostic key**: the alternate form `{:#}`, which drops the hashes
//!   (`core::fmt::write`). `swap` matches old and new crates by it, and the linker falls back to
//!   it when an exact lookup fails — only if exactly one symbol has that agnostic key, otherwise
//!   the lookup is [`Lookup::Ambiguous`].
//! - **Duplicates**: the first definition loaded into a namespace wins. A later crate defining
//!   the same key keeps its own copy for its own references (ELF resolves those inside the
//!   object) but does not replace the map entry; the loader counts such shadowed symbols.
//! - **Prefix search** runs over hash-agnostic keys, which is what a person types.
//! - **The base layer**: a namespace whose first crate is a prelinked one with a prepared table
//!   (nano_core, [`crate::symtab`]) answers that crate's keys from the table in place; the maps
//!   hold only what was added after it. The table came first, so its keys win; it is permanent
//!   (nano_core is never unloaded or swapped) until its crate is removed as a whole.

use crate::ids::{CrateId, SectionId};
use crate::symtab::{SymbolTable, TableSymbol};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use hashbrown::HashMap;

/// The exact key of a raw symbol name.
pub fn exact_key(raw: &str) -> String {
    demangled(raw, false)
}

/// `raw` demangled (`alternate`: without hashes) into a string sized once: a demangled name is
/// seldom longer than twice its mangled form, and `format!` grows its string step by step.
fn demangled(raw: &str, alternate: bool) -> String {
    use core::fmt::Write;
    let d = rustc_demangle::demangle(raw);
    let mut out = String::with_capacity(raw.len() * 2);
    let _ = if alternate { write!(out, "{d:#}") } else { write!(out, "{d}") };
    out
}

/// The hash-agnostic key of a raw symbol name.
pub fn agnostic_key(raw: &str) -> String {
    demangled(raw, true)
}

/// The hash-agnostic form of an exact key (demangled names keep their hashes in `[...]` after
/// crate names and in a trailing `::h<16 hex>`): strips both.
pub fn agnostic_of_exact(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut rest = key;
    while let Some(i) = rest.find('[') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after.find(']') {
            Some(j) if j > 0 && after[..j].bytes().all(|b| b.is_ascii_hexdigit()) => rest = &after[j + 1..],
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    if let Some(i) = out.rfind("::h")
        && out.len() - i == 19
        && out[i + 3..].bytes().all(|b| b.is_ascii_hexdigit())
    {
        out.truncate(i);
    }
    out
}

/// What a symbol map entry points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymbolRef {
    /// Address (or, for TLS symbols, thread-pointer offset as two's complement).
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// The section defining it.
    pub section: SectionId,
    /// The crate defining it.
    pub krate: CrateId,
    /// Whether `addr` is a TLS offset.
    pub tls: bool,
}

/// Result of a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Found one definition.
    Found(SymbolRef),
    /// The hash-agnostic fallback matched several different symbols (their exact keys).
    Ambiguous(Vec<String>),
    /// Nothing.
    Missing,
}

/// The exact keys sharing one hash-agnostic key, sorted: almost always one (a `Vec`, not a
/// `BTreeSet`, whose first node alone allocates ten slots; the boot's import builds 3,000).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct KeySet(Vec<String>);

impl KeySet {
    fn one(k: String) -> KeySet {
        KeySet(alloc::vec![k])
    }
    fn insert(&mut self, k: String) {
        if let Err(i) = self.0.binary_search(&k) {
            self.0.insert(i, k);
        }
    }
    fn remove(&mut self, k: &str) {
        if let Ok(i) = self.0.binary_search_by(|x| x.as_str().cmp(k)) {
            self.0.remove(i);
        }
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn iter(&self) -> core::slice::Iter<'_, String> {
        self.0.iter()
    }
}

/// A prepared table answering for one crate's exports (see the module docs).
#[derive(Debug, Clone, Copy)]
struct Base {
    table: SymbolTable,
    krate: CrateId,
    /// The id of the table's section 0; the others follow in table order.
    first_section: u32,
}

impl Base {
    fn symbol_ref(&self, s: TableSymbol) -> SymbolRef {
        SymbolRef { addr: s.addr, size: s.size, section: SectionId(self.first_section + s.section), krate: self.krate, tls: false }
    }

    fn get(&self, exact: &str) -> Option<SymbolRef> {
        self.table.find_export(exact).map(|s| self.symbol_ref(s))
    }

    fn matches(self, agnostic: &str, prefix: bool) -> impl Iterator<Item = (&'static str, SymbolRef)> + '_ {
        self.table.agnostic_matches(agnostic, prefix).map(move |(k, s)| (k, self.symbol_ref(s)))
    }
}

/// One namespace's symbols.
#[derive(Debug, Default)]
pub struct SymbolMap {
    base: Option<Base>,
    /// Hash maps, not trees: a tree insert compared the long mangled keys along a path of
    /// nodes three times per symbol (the lookup, the agnostic entry, the insert), 19 us a
    /// symbol under TCG (wasmparser's 767 exports took 14.8 of its 18 ms register phase).
    exact: HashMap<String, SymbolRef>,
    agnostic: HashMap<String, KeySet>,
}

impl SymbolMap {
    /// Makes `table` the map's base layer, answering for `krate`'s exports whose sections are
    /// numbered from `first_section` in table order. Only into an empty map (its keys must win):
    /// returns `false` otherwise, and the caller inserts them one by one.
    pub fn set_base(&mut self, table: SymbolTable, krate: CrateId, first_section: SectionId) -> bool {
        if self.base.is_some() || !self.exact.is_empty() {
            return false;
        }
        self.base = Some(Base { table, krate, first_section: first_section.0 });
        true
    }

    /// Removes the base layer if `krate` owns it (its crate is being removed).
    pub fn remove_base_if_owned(&mut self, krate: CrateId) {
        if self.base.is_some_and(|b| b.krate == krate) {
            self.base = None;
        }
    }

    /// Adds many definitions at once (a prelinked crate's thousands of symbols at boot); the
    /// same result as [`SymbolMap::insert`] in order — the first definition of a key wins — and
    /// returns, per entry, whether it was added. Into an empty map the trees are built from
    /// sorted runs instead of one insertion at a time.
    pub fn insert_many(&mut self, entries: Vec<(String, SymbolRef)>) -> Vec<bool> {
        if !self.is_empty() {
            return entries.into_iter().map(|(k, r)| self.insert(k, r)).collect();
        }
        let n = entries.len();
        // Stable: among equal keys the first entry comes first and wins.
        let mut order: Vec<(String, SymbolRef, usize)> = entries.into_iter().enumerate().map(|(i, (k, r))| (k, r, i)).collect();
        order.sort_by(|a, b| a.0.cmp(&b.0));
        let mut added = alloc::vec![false; n];
        let mut exact: Vec<(String, SymbolRef)> = Vec::with_capacity(n);
        for (k, r, i) in order {
            if exact.last().is_some_and(|(last, _)| *last == k) {
                continue;
            }
            added[i] = true;
            exact.push((k, r));
        }
        // Sorted by (agnostic key, exact key): exact keys are already in order, so a stable
        // sort by the agnostic key alone keeps each group's keys sorted.
        let mut agnostic: Vec<(String, &String)> = exact.iter().map(|(k, _)| (agnostic_of_exact(k), k)).collect();
        agnostic.sort_by(|a, b| a.0.cmp(&b.0));
        let mut grouped: Vec<(String, KeySet)> = Vec::with_capacity(agnostic.len());
        for (ag, k) in agnostic {
            match grouped.last_mut() {
                Some((g, set)) if *g == ag => set.0.push(k.clone()),
                _ => grouped.push((ag, KeySet::one(k.clone()))),
            }
        }
        // Sorted and unique: collecting builds each tree in one pass.
        self.exact = exact.into_iter().collect();
        self.agnostic = grouped.into_iter().collect();
        added
    }

    /// Adds a definition under its exact key. Returns `false` (and changes nothing) if the key
    /// is already defined: the first definition wins.
    pub fn insert(&mut self, exact: String, sym: SymbolRef) -> bool {
        if self.exact.contains_key(&exact) || self.base.is_some_and(|b| b.get(&exact).is_some()) {
            return false;
        }
        self.agnostic.entry(agnostic_of_exact(&exact)).or_default().insert(exact.clone());
        self.exact.insert(exact, sym);
        true
    }

    /// Removes a definition if it belongs to `krate` (never one of the base layer's).
    pub fn remove_if_owned(&mut self, exact: &str, krate: CrateId) -> bool {
        if self.exact.get(exact).is_none_or(|s| s.krate != krate) {
            return false;
        }
        self.exact.remove(exact);
        let ag = agnostic_of_exact(exact);
        if let Some(set) = self.agnostic.get_mut(&ag) {
            set.remove(exact);
            if set.is_empty() {
                self.agnostic.remove(&ag);
            }
        }
        true
    }

    /// Points an existing key owned by `krate` at `sym` instead (a new version of the crate took
    /// over the very same symbol). Returns `false` (and changes nothing) otherwise.
    pub fn replace_if_owned(&mut self, exact: &str, krate: CrateId, sym: SymbolRef) -> bool {
        match self.exact.get_mut(exact) {
            Some(s) if s.krate == krate => {
                *s = sym;
                true
            }
            _ => false,
        }
    }

    /// Exact lookup.
    pub fn get_exact(&self, exact: &str) -> Option<SymbolRef> {
        self.exact.get(exact).copied().or_else(|| self.base.and_then(|b| b.get(exact)))
    }

    /// The definitions whose hash-agnostic key is `agnostic`, sorted by exact key.
    fn agnostic_defs(&self, agnostic: &str) -> Vec<(String, SymbolRef)> {
        let mut out: Vec<(String, SymbolRef)> = self
            .agnostic
            .get(agnostic)
            .into_iter()
            .flat_map(|set| set.iter())
            .filter_map(|k| Some((k.clone(), *self.exact.get(k)?)))
            .collect();
        if let Some(b) = self.base {
            out.extend(b.matches(agnostic, false).map(|(k, r)| (k.to_string(), r)));
            out.sort_by(|a, b| a.0.cmp(&b.0));
        }
        out
    }

    /// Hash-agnostic lookup.
    pub fn get_agnostic(&self, agnostic: &str) -> Lookup {
        let mut defs = self.agnostic_defs(agnostic);
        match defs.len() {
            0 => Lookup::Missing,
            1 => Lookup::Found(defs.remove(0).1),
            _ => Lookup::Ambiguous(defs.into_iter().map(|(k, _)| k).collect()),
        }
    }

    /// Exact keys whose hash-agnostic form is `agnostic`.
    pub fn exact_keys_for(&self, agnostic: &str) -> Vec<String> {
        self.agnostic_defs(agnostic).into_iter().map(|(k, _)| k).collect()
    }

    /// Symbols whose hash-agnostic key starts with `prefix`, as (exact key, ref), in key order.
    pub fn prefix(&self, prefix: &str) -> Vec<(String, SymbolRef)> {
        let mut out = Vec::new();
        for (ag, set) in self.agnostic.iter().filter(|(ag, _)| ag.starts_with(prefix)) {
            for k in set.iter() {
                if let Some(s) = self.exact.get(k) {
                    out.push((ag.clone(), k.clone(), *s));
                }
            }
        }
        if let Some(b) = self.base {
            out.extend(b.matches(prefix, true).map(|(k, r)| (agnostic_of_exact(k), k.to_string(), r)));
        }
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out.into_iter().map(|(_, k, r)| (k, r)).collect()
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.exact.len() + self.base.map_or(0, |b| b.table.export_count())
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(addr: u64) -> SymbolRef {
        SymbolRef { addr, size: 1, section: SectionId(0), krate: CrateId(0), tls: false }
    }

    #[test]
    fn insert_many_is_insert_in_order() {
        let keys = [
            "a::f::h0123456789abcdef",
            "a::f::hfedcba9876543210",
            "b[1234]::g",
            "b[abcd]::g",
            "memcpy",
            "a::f::h0123456789abcdef",
            "c",
            "memcpy",
            "b[1234]::g",
        ];
        let entries: Vec<(String, SymbolRef)> = keys.iter().enumerate().map(|(i, k)| (k.to_string(), r(i as u64))).collect();
        let mut one = SymbolMap::default();
        let flags_one: Vec<bool> = entries.iter().map(|(k, v)| one.insert(k.clone(), *v)).collect();
        let mut many = SymbolMap::default();
        let flags_many = many.insert_many(entries.clone());
        assert_eq!(flags_one, flags_many);
        assert_eq!(flags_many, [true, true, true, true, true, false, true, false, false]);
        assert_eq!(one.exact, many.exact);
        assert_eq!(one.agnostic, many.agnostic);
        // Into a map that is not empty, one at a time (same answers).
        let more = alloc::vec![("c".to_string(), r(99)), ("d".to_string(), r(100))];
        assert_eq!(many.insert_many(more), [false, true]);
        assert_eq!(many.get_exact("c"), Some(r(6)));
    }

    #[test]
    fn keys_for_v0_and_legacy() {
        let v0 = "_RNvNtCs1234_5hello3foo3bar";
        assert_eq!(agnostic_key(v0), "hello::foo::bar");
        assert_eq!(agnostic_of_exact(&exact_key(v0)), "hello::foo::bar");
        let legacy = "_ZN5hello3foo17h0123456789abcdefE";
        assert_eq!(exact_key(legacy), "hello::foo::h0123456789abcdef");
        assert_eq!(agnostic_key(legacy), "hello::foo");
        assert_eq!(agnostic_of_exact(&exact_key(legacy)), "hello::foo");
        assert_eq!(exact_key("memcpy"), "memcpy");
        assert_eq!(agnostic_of_exact("a[xyz]::b"), "a[xyz]::b");
        // Disambiguators anywhere, several, next to other brackets; what is not one stays.
        assert_eq!(agnostic_of_exact("<a[1f]::S as b[2e]::T>::f"), "<a::S as b::T>::f");
        assert_eq!(agnostic_of_exact("[[abc]x"), "[x");
        assert_eq!(agnostic_of_exact("f[]::g[12"), "f[]::g[12");
        assert_eq!(agnostic_of_exact("[0]"), "");
        assert_eq!(agnostic_of_exact("é[ab]ü::h0123456789abcdef"), "éü");
        assert_eq!(agnostic_of_exact("x::h0123456789abcdeg"), "x::h0123456789abcdeg");
    }

    #[test]
    fn first_definition_wins_and_agnostic_lookup() {
        let mut m = SymbolMap::default();
        assert!(m.insert("a[11]::f".into(), r(1)));
        assert!(!m.insert("a[11]::f".into(), r(2)));
        assert_eq!(m.get_exact("a[11]::f"), Some(r(1)));
        assert_eq!(m.get_agnostic("a::f"), Lookup::Found(r(1)));
        m.insert("a[22]::f".into(), r(3));
        assert!(matches!(m.get_agnostic("a::f"), Lookup::Ambiguous(v) if v.len() == 2));
        assert_eq!(m.prefix("a::").len(), 2);
        assert!(m.remove_if_owned("a[22]::f", CrateId(0)));
        assert_eq!(m.get_agnostic("a::f"), Lookup::Found(r(1)));
        assert!(!m.remove_if_owned("a[11]::f", CrateId(9)));
    }

    #[test]
    fn base_layer_comes_first_and_stays() {
        use crate::loader::{PrelinkedSection, PrelinkedSymbol};
        let secs = alloc::vec![PrelinkedSection { name: ".text".into(), addr: 0x1000, size: 0x100, kind: crate::SectionKind::Text }];
        let sym = |raw: &str, addr: u64, key: &str| PrelinkedSymbol { raw: raw.into(), addr, size: 8, global: true, key: Some(key.into()) };
        let bytes = crate::symtab::build(&secs, &[sym("_RNvCs11_1a1f", 0x1000, "a[11]::f"), sym("_RNvCs11_1a1g", 0x1010, "a[11]::g")]);
        let table = SymbolTable::new("t", alloc::vec::Vec::leak(bytes)).unwrap();
        let mut m = SymbolMap::default();
        assert!(m.set_base(table, CrateId(7), SectionId(40)));
        assert!(!m.set_base(table, CrateId(8), SectionId(50)), "a second base would shadow the first");
        assert_eq!(m.len(), 2);
        let f = m.get_exact("a[11]::f").unwrap();
        assert_eq!((f.addr, f.section, f.krate), (0x1000, SectionId(40), CrateId(7)));
        // The base's keys win over later definitions and are not removed by another crate.
        assert!(!m.insert("a[11]::f".into(), r(5)));
        assert!(!m.remove_if_owned("a[11]::f", CrateId(0)));
        assert!(m.insert("a[22]::f".into(), r(6)));
        assert!(matches!(m.get_agnostic("a::f"), Lookup::Ambiguous(v) if v == ["a[11]::f", "a[22]::f"]));
        assert_eq!(m.get_agnostic("a::g"), Lookup::Found(m.get_exact("a[11]::g").unwrap()));
        let keys: Vec<String> = m.prefix("a::").into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a[11]::f", "a[22]::f", "a[11]::g"]);
        assert_eq!(m.len(), 3);
        // Into a map that already has symbols, the base is refused (the caller inserts instead).
        let mut other = SymbolMap::default();
        other.insert("x".into(), r(1));
        assert!(!other.set_base(table, CrateId(7), SectionId(40)));
        m.remove_base_if_owned(CrateId(7));
        assert_eq!(m.get_exact("a[11]::f"), None);
        assert_eq!(m.len(), 1);
    }
}
